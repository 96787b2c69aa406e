//! The echo replies (src/echo/reply.rs): any bytes in any reads, no panic;
//! line mode writes every line once with the prefix before it, one reply
//! per line (the last at the half-close), whatever the reads, long lines
//! included (the first byte may put one of about `MAX_PENDING_LINE` bytes
//! first); chunk mode answers each read with the prefix and the read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::echo::reply::{Echoer, MAX_PENDING_LINE, ReplyStyle};

fuzz_target!(|data: &[u8]| {
    let [flags, read_size, rest @ ..] = data else {
        return;
    };
    let prefix = ["", "> ", "Echo: ", "\n"][usize::from(flags & 3)];
    let long_line = flags & 4 != 0;
    // Reads of a byte through a long line would take most of the time.
    let read_size = usize::from(*read_size).max(1) * if long_line { 256 } else { 1 };
    let stream = if long_line {
        let mut stream = vec![b'x'; MAX_PENDING_LINE - 8 + usize::from(flags >> 4)];
        stream.extend_from_slice(rest);
        stream
    } else {
        rest.to_vec()
    };
    let style = ReplyStyle {
        prefix: prefix.to_string(),
        lines: flags & 8 == 0,
    };
    if style.lines {
        let lines: Vec<&[u8]> = stream.split_inclusive(|&b| b == b'\n').collect();
        let mut expected = Vec::with_capacity(stream.len() + lines.len() * prefix.len());
        for line in &lines {
            expected.extend_from_slice(prefix.as_bytes());
            expected.extend_from_slice(line);
        }
        for reads in [stream.chunks(stream.len().max(1)), stream.chunks(read_size)] {
            let mut echoer = Echoer::new(&style);
            let (mut out, mut replies) = (Vec::new(), 0);
            for read in reads {
                replies += echoer.feed(read, &mut out);
            }
            replies += echoer.finish(&mut out);
            assert!(
                out == expected,
                "{} bytes out, {} expected",
                out.len(),
                expected.len()
            );
            assert_eq!(replies, lines.len());
        }
    } else {
        let mut echoer = Echoer::new(&style);
        for read in stream.chunks(read_size) {
            let mut out = Vec::new();
            assert_eq!(echoer.feed(read, &mut out), 1);
            assert_eq!(out, [prefix.as_bytes(), read].concat());
        }
        assert_eq!(echoer.finish(&mut Vec::new()), 0);
    }
});
