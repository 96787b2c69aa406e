//! The first-bytes classifier (src/server/sniff.rs): any bytes, no panic; a
//! decision, once made, stays whatever bytes come after; and the 8 bytes
//! `sniff` peeks at always decide.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::server::sniff::classify;

/// How many bytes `sniff` peeks at (its `PEEK`).
const PEEK: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut decided = None;
    for end in 0..=data.len() {
        let kind = classify(&data[..end]);
        if decided.is_some() {
            assert_eq!(kind, decided, "{:?} changed the decision", &data[..end]);
        }
        if end >= PEEK {
            assert!(kind.is_some(), "{:?} undecided", &data[..end]);
            break;
        }
        decided = kind;
    }
    let _ = classify(data);
});
