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
        if self.pending.is_empty() {
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
}
