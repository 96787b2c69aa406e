//! The line framer (src/transport/framing.rs): any bytes in any reads, no
//! panic; the frames of the definition (split at `\n`, one `\r` before it
//! dropped, a line over the limit reported once as `TooLong`), the same as
//! in one read; and once the framer wants more, at most `max + 1` bytes held.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::transport::framing::{Frame, LineFramer};

fuzz_target!(|data: &[u8]| {
    let [limit, read_size, stream @ ..] = data else {
        return;
    };
    let max = usize::from(limit % 32);
    let read_size = usize::from(*read_size).max(1);
    let expected = model(max, stream);
    assert_eq!(frames(max, stream.chunks(stream.len().max(1))), expected);
    assert_eq!(frames(max, stream.chunks(read_size)), expected);
});

/// The frames of `reads`, in order, then those at the end of the stream.
fn frames<'a>(max: usize, reads: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut framer = LineFramer::new(max);
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for read in reads {
        buffer.extend_from_slice(read);
        while let Some(frame) = framer.next(&mut buffer) {
            out.push(frame);
        }
        assert!(buffer.len() <= max + 1, "{} bytes held", buffer.len());
    }
    out.extend(framer.finish(&mut buffer));
    assert!(buffer.is_empty());
    out
}

/// The frames of `stream` by definition.
fn model(max: usize, stream: &[u8]) -> Vec<Frame> {
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|last| last.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .map(|piece| {
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            if piece.len() > max {
                Frame::TooLong
            } else {
                Frame::Line(BytesMut::from(piece))
            }
        })
        .collect()
}
