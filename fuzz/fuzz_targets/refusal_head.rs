//! The request head of a refused connection (src/server/refuse.rs
//! `parse_head`): any bytes, no panic; a decision, once made, stays
//! whatever bytes come after; `MAX_HEAD` bytes always decide.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::server::refuse::{Head, MAX_HEAD, parse_head};

/// How many cuts of each input are parsed besides the whole.
const CUTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let whole = parse_head(data);
    if data.len() >= MAX_HEAD {
        assert_ne!(whole, Head::Partial, "{} bytes undecided", data.len());
    }
    for n in 0..CUTS {
        let cut = parse_head(&data[..data.len() * n / CUTS]);
        if cut != Head::Partial {
            assert_eq!(cut, whole, "more bytes changed the decision");
        }
    }
});
