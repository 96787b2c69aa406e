//! Splitting a byte stream into lines, with a length limit; no I/O here.
//!
//! Two phases, as in mini-redis's `connection.rs`: [`LineFramer::next`] looks
//! for a whole line in what has been read and returns `None` (read more) when
//! there is none yet. A line over the limit is reported once as
//! [`Frame::TooLong`] and its bytes are dropped up to its newline, so a peer
//! that never sends a newline cannot grow the buffer.

use bytes::BytesMut;

/// One unit of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line, without its `\n` (and without a `\r` before it).
    Line(BytesMut),
    /// A line longer than the limit; its bytes were dropped.
    TooLong,
}

/// Finds lines in a read buffer.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    /// Dropping the rest of an over-long line until its newline.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            discarding: false,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes the next frame out of `buffer`; `None` when more bytes are needed.
    pub fn next(&mut self, buffer: &mut BytesMut) -> Option<Frame> {
        loop {
            let Some(end) = memchr::memchr(b'\n', buffer) else {
                // One byte of slack for a `\r` still waiting for its `\n`.
                if buffer.len() <= self.max + 1 {
                    return None;
                }
                buffer.clear();
                let first_report = !self.discarding;
                self.discarding = true;
                return first_report.then_some(Frame::TooLong);
            };
            let mut line = buffer.split_to(end + 1);
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            return Some(if line.len() > self.max {
                Frame::TooLong
            } else {
                Frame::Line(line)
            });
        }
    }

    /// At end of stream: the last line, when it had no newline.
    pub fn finish(&mut self, buffer: &mut BytesMut) -> Option<Frame> {
        if buffer.is_empty() || std::mem::take(&mut self.discarding) {
            buffer.clear();
            return None;
        }
        buffer.extend_from_slice(b"\n");
        self.next(buffer)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut framer = LineFramer::new(max);
        let mut buffer = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(frame) = framer.next(&mut buffer) {
                out.push(frame);
            }
        }
        out.extend(framer.finish(&mut buffer));
        out
    }

    fn line(text: &str) -> Frame {
        Frame::Line(BytesMut::from(text))
    }

    #[test]
    fn lines_split_across_reads_and_lose_their_crlf() {
        assert_eq!(
            frames(100, &[b"he", b"llo\r\nwor", b"ld\n\n"]),
            [line("hello"), line("world"), line("")]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_kept() {
        assert_eq!(frames(100, &[b"one\ntwo"]), [line("one"), line("two")]);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_the_next_line_survives() {
        let long = vec![b'x'; 50];
        assert_eq!(
            frames(10, &[&long, &long, b"tail\nnext\n"]),
            [Frame::TooLong, line("next")]
        );
        assert_eq!(
            frames(10, &[b"0123456789AB\nok\n"]),
            [Frame::TooLong, line("ok")]
        );
        assert_eq!(frames(10, &[b"0123456789\r\n"]), [line("0123456789")]);
    }

    /// The frames of `stream` by definition: split at each `\n`, drop one `\r`
    /// before it, a line over `max` is `TooLong`, and a last line without
    /// newline counts when it is not empty.
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

    /// Bytes rich in newlines, carriage returns and runs of one byte.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            3 => Just(b'\n'),
            2 => Just(b'\r'),
            4 => Just(b'a'),
            1 => any::<u8>(),
        ];
        let run = (byte, 1..24_usize).prop_map(|(byte, len)| vec![byte; len]);
        proptest::collection::vec(run, 0..24).prop_map(|runs| runs.concat())
    }

    /// `stream` cut at the given points (in any order, repeats allowed).
    fn split(stream: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        cuts.iter_mut().for_each(|cut| *cut %= stream.len() + 1);
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            pieces.push(&stream[from..cut]);
            from = cut;
        }
        pieces
    }

    proptest! {
        /// Any bytes in any reads give the frames of the definition: the same
        /// as one read, each over-long line reported once; and once the
        /// framer wants more, the buffer holds at most `max + 1` bytes.
        #[test]
        fn any_split_gives_the_frames_of_the_whole(
            max in 0..20_usize,
            stream in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut framer = LineFramer::new(max);
            let mut buffer = BytesMut::new();
            let mut out = Vec::new();
            for piece in split(&stream, cuts) {
                buffer.extend_from_slice(piece);
                while let Some(frame) = framer.next(&mut buffer) {
                    out.push(frame);
                }
                prop_assert!(buffer.len() <= max + 1, "{} bytes held", buffer.len());
            }
            out.extend(framer.finish(&mut buffer));
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(out, model(max, &stream));
        }
    }
}
