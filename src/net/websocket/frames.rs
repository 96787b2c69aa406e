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
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data};

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

    /// A frame a client may send: data (text, binary, continuation; final or
    /// not) of 0 to 70,000 bytes, or a control frame (final, at most 125).
    fn frame() -> impl Strategy<Value = (OpCode, bool, usize)> {
        let len = prop_oneof![0..130_usize, 65_530..65_540_usize, Just(70_000)];
        let data = prop_oneof![Just(Data::Text), Just(Data::Binary), Just(Data::Continue)];
        let control = prop_oneof![
            Just(Control::Ping),
            Just(Control::Pong),
            Just(Control::Close)
        ];
        prop_oneof![
            3 => (data, any::<bool>(), len).prop_map(|(d, fin, len)| (OpCode::Data(d), fin, len)),
            1 => (control, 0..126_usize).prop_map(|(c, len)| (OpCode::Control(c), true, len)),
        ]
    }

    /// Appends the frame of `len` bytes to `bytes`, as tungstenite writes it.
    fn encode(
        opcode: OpCode,
        is_final: bool,
        len: usize,
        mask: Option<[u8; 4]>,
        bytes: &mut Vec<u8>,
    ) -> Result<(), TestCaseError> {
        let header = FrameHeader {
            is_final,
            opcode,
            mask,
            ..FrameHeader::default()
        };
        Frame::from_payload(header, vec![b'x'; len].into())
            .format(bytes)
            .map_err(|e| TestCaseError::fail(e.to_string()))
    }

    /// What `tracker.at_message_boundary()` says after each byte of `bytes`
    /// handed over one at a time (and before the first).
    fn byte_by_byte(bytes: &[u8]) -> Vec<bool> {
        let mut tracker = FrameTracker::default();
        let mut boundaries = vec![tracker.at_message_boundary()];
        for byte in bytes {
            tracker.observe(std::slice::from_ref(byte));
            boundaries.push(tracker.at_message_boundary());
        }
        boundaries
    }

    proptest! {
        /// Encoded frames, followed byte by byte: a boundary exactly at the
        /// end of a frame that leaves no message half received (a control
        /// frame inside a fragmented message is not one), and nowhere else.
        #[test]
        fn boundaries_are_where_whole_messages_end(
            frames in proptest::collection::vec(frame(), 0..6),
            masked in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            let mut expected = vec![true];
            let mut in_message = false;
            for (opcode, is_final, len) in frames {
                let mask = masked.then_some([9, 8, 7, 6]);
                encode(opcode, is_final, len, mask, &mut bytes)?;
                if let OpCode::Data(_) = opcode {
                    in_message = !is_final;
                }
                expected.resize(bytes.len(), false);
                expected.push(!in_message);
            }
            prop_assert_eq!(byte_by_byte(&bytes), expected);
        }

        /// Any bytes (a valid stream with garbage after it), cut anywhere:
        /// no panic, the same answers as byte by byte at every cut, and
        /// `passed_boundary` true once for each boundary new bytes reach.
        #[test]
        fn any_split_gives_the_answers_of_byte_by_byte(
            frames in proptest::collection::vec(frame(), 0..3),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut bytes = Vec::new();
            for (opcode, is_final, len) in frames {
                encode(opcode, is_final, len, Some([1, 2, 3, 4]), &mut bytes)?;
            }
            bytes.extend(garbage);
            let reference = byte_by_byte(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut tracker = FrameTracker::default();
            let (mut from, mut unseen) = (0, false);
            for cut in cuts {
                tracker.observe(&bytes[from..cut]);
                unseen |= cut > from;
                from = cut;
                prop_assert_eq!(tracker.at_message_boundary(), reference[cut], "at {}", cut);
                let passed = unseen && reference[cut];
                prop_assert_eq!(tracker.passed_boundary(), passed, "at {}", cut);
                unseen &= !passed;
            }
        }
    }
}
