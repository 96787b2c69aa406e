//! How an echo reply is formed from the bytes a peer sends; no I/O here.
//!
//! Chunk mode answers every chunk read with `PREFIX + chunk`, as the Node
//! tutorial's `socket.on('data')` handler does. Line mode answers every complete
//! line with `PREFIX + line`, holding a partial line until its end arrives (or
//! the peer half-closes). Raw mode is chunk mode with an empty prefix.

/// The most bytes of one unfinished line held back in line mode; a longer line
/// is echoed in pieces (the prefix only before the first) so a peer that never
/// sends a newline cannot grow the server's memory.
pub const MAX_PENDING_LINE: usize = 64 * 1024;

/// How replies are formed: the prefix and whether replies follow lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyStyle {
    /// Text written before each reply (empty for a raw echo).
    pub prefix: String,
    /// Whether to answer complete lines rather than chunks as they arrive.
    pub lines: bool,
}

/// Turns what one peer sends into echo replies, keeping the partial line.
#[derive(Debug)]
pub struct Echoer<'a> {
    style: &'a ReplyStyle,
    /// Bytes of the current line not yet echoed (line mode only).
    pending: Vec<u8>,
    /// Whether part of the current line was already echoed with its prefix.
    mid_line: bool,
}

impl<'a> Echoer<'a> {
    /// A fresh echoer for one connection or datagram.
    pub fn new(style: &'a ReplyStyle) -> Self {
        Self {
            style,
            pending: Vec::new(),
            mid_line: false,
        }
    }

    /// Appends the replies to `data` to `out` and returns how many complete
    /// replies that was (a line-mode chunk without a newline completes none).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        if !self.style.lines {
            out.extend_from_slice(self.style.prefix.as_bytes());
            out.extend_from_slice(data);
            return 1;
        }
        let mut replies = 0;
        let mut rest = data;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(newline + 1);
            self.emit(line, out);
            self.mid_line = false;
            replies += 1;
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() >= MAX_PENDING_LINE {
            let held = std::mem::take(&mut self.pending);
            self.emit(&held, out);
            self.mid_line = true;
        }
        replies
    }

    /// Appends the reply to an unterminated last line (the peer half-closed)
    /// and returns how many replies that was (0 or 1).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> usize {
        // A line already echoed in pieces is finished by the half-close too.
        if self.pending.is_empty() && !self.mid_line {
            return 0;
        }
        let held = std::mem::take(&mut self.pending);
        self.emit(&held, out);
        self.mid_line = false;
        1
    }

    /// Writes held bytes plus `tail` to `out`, prefixed unless mid-line.
    fn emit(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        if !self.mid_line {
            out.extend_from_slice(self.style.prefix.as_bytes());
        }
        out.extend_from_slice(&self.pending);
        out.extend_from_slice(tail);
        // Release rather than clear: an idle connection should hold no buffer.
        self.pending = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn style(prefix: &str, lines: bool) -> ReplyStyle {
        ReplyStyle {
            prefix: prefix.to_string(),
            lines,
        }
    }

    fn run(style: &ReplyStyle, chunks: &[&[u8]], finish: bool) -> (Vec<u8>, usize) {
        let mut echoer = Echoer::new(style);
        let mut out = Vec::new();
        let mut replies = 0;
        for chunk in chunks {
            replies += echoer.feed(chunk, &mut out);
        }
        if finish {
            replies += echoer.finish(&mut out);
        }
        (out, replies)
    }

    #[test]
    fn chunk_mode_prefixes_each_chunk_like_the_node_tutorial() {
        let echo = style("Echo: ", false);
        let (out, replies) = run(&echo, &[b"Hello from client!", b"a\nb"], true);
        assert_eq!(out, b"Echo: Hello from client!Echo: a\nb");
        assert_eq!(replies, 2);
    }

    #[test]
    fn raw_mode_returns_bytes_untouched() {
        let (out, _) = run(&ReplyStyle::default(), &[b"\x00\xffabc"], true);
        assert_eq!(out, b"\x00\xffabc");
    }

    #[test]
    fn line_mode_prefixes_complete_lines_across_chunks() {
        let echo = style("> ", true);
        let (out, replies) = run(&echo, &[b"one\ntw", b"o\n", b"thr", b"ee"], false);
        assert_eq!(out, b"> one\n> two\n");
        assert_eq!(replies, 2);
    }

    #[test]
    fn line_mode_echoes_the_last_unterminated_line_on_half_close() {
        let echo = style("> ", true);
        let (out, replies) = run(&echo, &[b"one\nlast"], true);
        assert_eq!(out, b"> one\n> last");
        assert_eq!(replies, 2);
    }

    #[test]
    fn line_mode_bounds_a_line_without_newline() {
        let echo = style("> ", true);
        let long = vec![b'x'; MAX_PENDING_LINE];
        let mut echoer = Echoer::new(&echo);
        let mut out = Vec::new();
        assert_eq!(echoer.feed(&long, &mut out), 0);
        assert_eq!(
            out.len(),
            2 + MAX_PENDING_LINE,
            "held line flushed at the limit"
        );
        assert_eq!(echoer.pending.capacity(), 0, "nothing held once flushed");
        out.clear();
        assert_eq!(echoer.feed(b"end\nnext\n", &mut out), 2);
        assert_eq!(
            out, b"end\n> next\n",
            "the rest of the long line has no prefix"
        );
    }

    #[test]
    fn finishing_with_nothing_held_replies_nothing() {
        let (out, replies) = run(&style("> ", true), &[b"a\n"], true);
        assert_eq!((out.as_slice(), replies), (b"> a\n".as_slice(), 1));
    }

    #[test]
    fn a_line_echoed_in_pieces_counts_once_at_half_close_however_it_was_read() {
        let echo = style("> ", true);
        let long = vec![b'x'; MAX_PENDING_LINE + 10];
        assert_eq!(run(&echo, &[&long], true).1, 1, "one read");
        let (head, tail) = long.split_at(MAX_PENDING_LINE);
        assert_eq!(run(&echo, &[head, tail], true).1, 1, "two reads");
        assert_eq!(run(&echo, &[head], true).1, 1, "ending at the limit");
    }

    /// Bytes rich in newlines, sometimes a line longer than [`MAX_PENDING_LINE`].
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![2 => Just(b'\n'), 3 => Just(b'a'), 1 => any::<u8>()];
        let len = prop_oneof![20 => 1..24_usize, 1 => MAX_PENDING_LINE - 8..MAX_PENDING_LINE + 8];
        let run = (byte, len).prop_map(|(byte, len)| vec![byte; len]);
        proptest::collection::vec(run, 0..16).prop_map(|runs| runs.concat())
    }

    /// `stream` cut at the given points into reads (none empty: an empty read
    /// is the end of the stream).
    fn reads(stream: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut from = 0;
        let mut pieces = Vec::new();
        for cut in cuts {
            if cut > from {
                pieces.push(&stream[from..cut]);
            }
            from = cut;
        }
        pieces
    }

    proptest! {
        /// Line mode, any reads of any bytes: every line once, the prefix
        /// before each and nowhere else, one reply per line (the last counted
        /// at the half-close), and never a whole long line held.
        #[test]
        fn line_mode_answers_the_lines_however_they_are_read(
            prefix in "[a-z> ]{0,4}",
            stream in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let echo = style(&prefix, true);
            let mut echoer = Echoer::new(&echo);
            let (mut out, mut replies) = (Vec::new(), 0);
            for read in reads(&stream, cuts) {
                replies += echoer.feed(read, &mut out);
                prop_assert!(echoer.pending.len() < MAX_PENDING_LINE);
            }
            replies += echoer.finish(&mut out);
            let lines: Vec<&[u8]> = stream.split_inclusive(|&b| b == b'\n').collect();
            let expected: Vec<u8> = lines
                .iter()
                .flat_map(|line| [prefix.as_bytes(), line].concat())
                .collect();
            prop_assert!(out == expected, "{} bytes out, {} expected", out.len(), expected.len());
            prop_assert_eq!(replies, lines.len());
        }

        /// Chunk and raw mode: each read answered at once, prefix and bytes.
        #[test]
        fn chunk_mode_answers_each_read(
            prefix in "[a-z> ]{0,4}",
            stream in proptest::collection::vec(any::<u8>(), 0..256),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let echo = style(&prefix, false);
            let mut echoer = Echoer::new(&echo);
            let reads = reads(&stream, cuts);
            for read in &reads {
                let mut out = Vec::new();
                prop_assert_eq!(echoer.feed(read, &mut out), 1);
                prop_assert_eq!(out, [prefix.as_bytes(), read].concat());
            }
            let mut out = Vec::new();
            prop_assert_eq!((echoer.finish(&mut out), out.len()), (0, 0));
        }
    }
}
