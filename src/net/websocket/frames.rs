//! Following the frames in the bytes handed to tungstenite, to tell when
//! they end on a message boundary: every frame whole, no message half
//! received. At such a point tungstenite holds nothing but buffers, and
//! [`super::ServerSocket`] can trade its state for a fresh one.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;

/// The longest frame header (RFC 6455 §5.2): 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Where the byte stream stands, frame by frame.
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// The header of the next frame, as far as it has come.
    header: [u8; MAX_HEADER],
    header_len: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data frame without FIN came and its message's last frame not yet.
    in_message: bool,
    /// A header did not parse: the stream is broken, and never at a boundary.
    broken: bool,
    /// Bytes came since [`Self::passed_boundary`] last said so.
    seen: bool,
}

impl FrameTracker {
    /// Follows `bytes`, the next ones handed over.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        self.seen |= !bytes.is_empty();
        while !bytes.is_empty() && !self.broken {
            if self.payload_left > 0 {
                let skipped = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= skipped as u64;
                bytes = &bytes[skipped..];
                continue;
            }
            let have = usize::from(self.header_len);
            let wanted = header_size(&self.header[..have]).unwrap_or(2);
            let taken = (wanted - have).min(bytes.len());
            self.header[have..have + taken].copy_from_slice(&bytes[..taken]);
            self.header_len += taken as u8;
            bytes = &bytes[taken..];
            let have = have + taken;
            if header_size(&self.header[..have]) == Some(have) {
                self.start_frame(have);
            }
        }
    }

    /// Whether everything observed so far is whole frames and whole messages.
    pub fn at_message_boundary(&self) -> bool {
        !self.broken && self.header_len == 0 && self.payload_left == 0 && !self.in_message
    }

    /// Whether bytes came since the last time this said so, and everything
    /// observed is whole frames and whole messages.
    pub fn passed_boundary(&mut self) -> bool {
        let passed = self.seen && self.at_message_boundary();
        self.seen &= !passed;
        passed
    }

    /// Parses the complete header of `len` bytes and starts its frame.
    fn start_frame(&mut self, len: usize) {
        self.header_len = 0;
        match FrameHeader::parse(&mut Cursor::new(&self.header[..len])) {
            Ok(Some((header, payload_len))) => {
                if let OpCode::Data(_) = header.opcode {
                    self.in_message = !header.is_final;
                }
                self.payload_left = payload_len;
            }
            Ok(None) | Err(_) => self.broken = true,
        }
    }
}

/// The size of the header that starts with `start`, once its first two
/// bytes (flags and opcode, mask bit and length) are there.
fn header_size(start: &[u8]) -> Option<usize> {
    let second = *start.get(1)?;
    let length_bytes = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second & 0x80 == 0 { 0 } else { 4 };
    Some(2 + length_bytes + mask_bytes)
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;

    use super::*;

    /// `frame` as a client sends it (masked), in bytes.
    fn wire(mut frame: Frame) -> Vec<u8> {
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        let mut bytes = Vec::new();
        frame.format(&mut bytes).unwrap();
        bytes
    }

    fn text(payload_len: usize, is_final: bool) -> Vec<u8> {
        wire(Frame::message(
            vec![b'a'; payload_len],
            OpCode::Data(Data::Text),
            is_final,
        ))
    }

    #[test]
    fn whole_frames_end_on_a_boundary_whatever_the_chunking() {
        for payload_len in [0, 5, 125, 126, 65_535, 65_536, 70_000] {
            let bytes = [text(payload_len, true), wire(Frame::ping(vec![1, 2]))].concat();
            for chunk in [1, 3, 14, 1000, bytes.len()] {
                let mut tracker = FrameTracker::default();
                for (at, piece) in bytes.chunks(chunk).enumerate() {
                    tracker.observe(piece);
                    let done = (at + 1) * chunk >= bytes.len();
                    let whole_text = (at + 1) * chunk == bytes.len() - 8;
                    if !done && !whole_text {
                        assert!(!tracker.at_message_boundary(), "{payload_len} {chunk} {at}");
                    }
                }
                assert!(tracker.at_message_boundary(), "{payload_len} in {chunk}s");
            }
        }
    }

    #[test]
    fn a_fragmented_message_ends_with_its_final_frame_not_a_ping_between() {
        let mut tracker = FrameTracker::default();
        tracker.observe(&text(10, false));
        assert!(!tracker.at_message_boundary());
        tracker.observe(&wire(Frame::ping(vec![])));
        assert!(!tracker.at_message_boundary());
        let last = Frame::message(vec![b'z'; 3], OpCode::Data(Data::Continue), true);
        tracker.observe(&wire(last));
        assert!(tracker.at_message_boundary());
        assert!(tracker.passed_boundary());
        assert!(!tracker.passed_boundary(), "nothing new since");
    }

    #[test]
    fn a_header_that_does_not_parse_is_never_a_boundary() {
        let mut tracker = FrameTracker::default();
        tracker.observe(&[0x83, 0x80, 1, 2, 3, 4]);
        assert!(!tracker.at_message_boundary());
        tracker.observe(&text(1, true));
        assert!(!tracker.at_message_boundary());
    }
}
