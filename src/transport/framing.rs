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

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let chunk: Vec<u8> = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    [b'\n', b'\r', b'a', 0xff][(seed % 4) as usize]
                })
                .collect();
            for frame in frames(8, &[&chunk]) {
                if let Frame::Line(line) = frame {
                    assert!(line.len() <= 8 && !line.contains(&b'\n'));
                }
            }
        }
    }
}
