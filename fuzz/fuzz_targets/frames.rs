//! The WebSocket frame tracker (src/net/websocket/frames.rs): any bytes in
//! any reads, no panic; at the end of every read the same answers (message
//! boundary or not, boundary newly passed or not) as when the same bytes
//! come one at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::net::websocket::frames::FrameTracker;

fuzz_target!(|data: &[u8]| {
    let [read_size, stream @ ..] = data else {
        return;
    };
    let mut tracker = FrameTracker::default();
    let mut boundaries = vec![tracker.at_message_boundary()];
    for byte in stream {
        tracker.observe(std::slice::from_ref(byte));
        boundaries.push(tracker.at_message_boundary());
    }
    let mut tracker = FrameTracker::default();
    let mut at = 0;
    for read in stream.chunks(usize::from(*read_size).max(1)) {
        tracker.observe(read);
        at += read.len();
        assert_eq!(tracker.at_message_boundary(), boundaries[at], "at {at}");
        // Bytes came with this read: a boundary here is newly passed, once.
        assert_eq!(tracker.passed_boundary(), boundaries[at], "at {at}");
        assert!(!tracker.passed_boundary(), "at {at}, again");
    }
});
