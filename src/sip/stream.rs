//! Framing SIP messages off a TCP stream (RFC 3261 §18.3), incrementally
//! and sans-IO: bytes in through `push`, whole messages out of `next_message`.
//!
//! Each byte is looked at a bounded number of times however the peer
//! slices its data: the search for the blank line resumes where the last
//! one stopped, and the header block is parsed once per message. Rescanning
//! the whole buffer per read let one peer dripping a 64 KiB header a byte
//! at a time cost us 2^31 byte comparisons.

use super::message::{stream_message_len, MAX_MESSAGE_LEN};

/// What `next` found at the front of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// One whole message (keep-alive CRLFs before it are dropped).
    Message(Vec<u8>),
    /// The stream cannot be framed (bad Content-Length, or a message or
    /// header block over the size cap): what was buffered, to answer 400
    /// if it can be parsed that far. The connection must then close.
    Invalid(Vec<u8>),
}

#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the unconsumed data in `buf` (compacted on `push`).
    start: usize,
    /// Offset (from `start`) where the search for the blank line resumes:
    /// no blank line begins before it.
    scanned: usize,
    /// Length of the message at the front, once its header block is read.
    total: Option<usize>,
    max: usize,
    /// Bytes compared while searching for blank lines (tests check that
    /// the work is linear in the bytes received).
    examined: u64,
    failed: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(MAX_MESSAGE_LEN)
    }
}

impl Framer {
    /// `max`: the largest message, header block included.
    pub fn new(max: usize) -> Self {
        Framer { buf: Vec::with_capacity(4096), start: 0, scanned: 0, total: None, max, examined: 0, failed: false }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if the buffered bytes hold one.
    pub fn next_message(&mut self) -> Option<Framed> {
        if self.failed {
            return None;
        }
        if self.total.is_none() {
            if self.scanned == 0 {
                // Keep-alives between messages (RFC 5626 §3.5.1 CRLF pings).
                let lead = self.buf[self.start..].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                self.start += lead;
            }
            let found = self.find_blank_line();
            let data = &self.buf[self.start..];
            match found {
                Some((head_len, body_start)) => match stream_message_len(&data[..head_len], body_start) {
                    Some(total) if total <= self.max => self.total = Some(total),
                    _ => return Some(self.fail()),
                },
                // A header block that never ends is cut off at the cap.
                None if data.len() > self.max => return Some(self.fail()),
                None => return None,
            }
        }
        let total = self.total?;
        if self.buf.len() - self.start < total {
            return None;
        }
        let msg = self.buf[self.start..self.start + total].to_vec();
        self.start += total;
        self.scanned = 0;
        self.total = None;
        Some(Framed::Message(msg))
    }

    /// Bytes held (for tests: never more than the cap plus one read).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn examined(&self) -> u64 {
        self.examined
    }

    fn fail(&mut self) -> Framed {
        self.failed = true;
        let rest = self.buf.split_off(self.start);
        self.buf = Vec::new();
        self.start = 0;
        Framed::Invalid(rest)
    }

    /// The end of the header block (bare LF tolerated as in `parse`):
    /// (header length, body start), searching only bytes not yet searched.
    fn find_blank_line(&mut self) -> Option<(usize, usize)> {
        let data = &self.buf[self.start..];
        let mut i = self.scanned;
        while i < data.len() {
            self.examined += 1;
            if data[i] == b'\n' {
                match (data.get(i + 1), data.get(i + 2)) {
                    (Some(b'\n'), _) => return Some((i, i + 2)),
                    (Some(b'\r'), Some(b'\n')) => return Some((i, i + 3)),
                    // Not decidable yet: resume here when more arrives.
                    (None, _) | (Some(b'\r'), None) => {
                        self.scanned = i;
                        return None;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = data.len();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";

    fn drain(f: &mut Framer) -> Vec<Framed> {
        std::iter::from_fn(|| f.next_message()).collect()
    }

    #[test]
    fn messages_split_anywhere_and_pipelined() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(OPTIONS);
        for cut in 1..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            f.push(&stream[..cut]);
            got.extend(drain(&mut f));
            f.push(&stream[cut..]);
            got.extend(drain(&mut f));
            assert_eq!(got, vec![Framed::Message(OPTIONS.to_vec()), Framed::Message(OPTIONS.to_vec())], "cut at {cut}");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn byte_at_a_time_is_linear_work() {
        // A 60 KiB header block, one byte per read: every byte is compared
        // a bounded number of times (a rescan per read would be ~1.8e9).
        let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        while msg.len() < 60_000 {
            msg.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        msg.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut f = Framer::default();
        let mut got = Vec::new();
        for b in &msg {
            f.push(std::slice::from_ref(b));
            got.extend(drain(&mut f));
        }
        assert_eq!(got, vec![Framed::Message(msg.clone())]);
        assert!(f.examined() <= 2 * msg.len() as u64, "examined {} for {}", f.examined(), msg.len());
    }

    #[test]
    fn header_that_never_ends_is_cut_off_at_the_cap() {
        let mut f = Framer::new(1_000);
        let line = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        f.push(b"INVITE sip:a@b SIP/2.0\r\n");
        let mut verdict = None;
        for _ in 0..1_000 {
            f.push(line);
            if let Some(v) = f.next_message() {
                verdict = Some(v);
                break;
            }
            assert!(f.buffered() <= 1_000 + line.len());
        }
        assert!(matches!(verdict, Some(Framed::Invalid(ref b)) if b.starts_with(b"INVITE")), "{verdict:?}");
        // Nothing more is buffered or framed afterwards.
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_message(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn content_length_bad_or_over_the_cap() {
        let mut f = Framer::new(1_000);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n");
        assert!(matches!(f.next_message(), Some(Framed::Invalid(_))));
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n");
        assert!(matches!(f.next_message(), Some(Framed::Invalid(_))));
        // A body still on its way is waited for.
        let mut f = Framer::default();
        f.push(&OPTIONS[..OPTIONS.len() - 2]);
        assert_eq!(f.next_message(), None);
        f.push(&OPTIONS[OPTIONS.len() - 2..]);
        assert_eq!(f.next_message(), Some(Framed::Message(OPTIONS.to_vec())));
    }

    #[test]
    fn bare_lf_header_end() {
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\n\nOPTIONS");
        assert_eq!(f.next_message(), Some(Framed::Message(b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\n\n".to_vec())));
        assert_eq!(f.next_message(), None);
    }
}
