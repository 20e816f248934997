//! Splitting a syslog byte stream into frames, with the framing detected per frame (as rsyslog
//! does): a frame that starts with a digit is octet-counted (`LEN SP MSG`, RFC 6587 / 5425),
//! anything else ends at `\n` (Docker's and most senders' framing).
//!
//! Memory stays bounded whatever arrives: a frame longer than `max_frame` is cut there (the head
//! is passed on, flagged) and the rest is discarded as it streams in, never buffered.

use bytes::{Bytes, BytesMut};

/// Why a frame was not what it should have been (each is counted with this `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than `max_frame`: the head was kept, the rest discarded.
    TooLarge,
    /// A digit run that is not a valid octet count (no space after it, too long, or zero); the
    /// bytes are read as a newline-framed frame instead.
    BadOctetCount,
    /// The stream ended inside a frame.
    Incomplete,
}

impl FrameError {
    pub fn kind(self) -> &'static str {
        match self {
            FrameError::TooLarge => "frame_too_large",
            FrameError::BadOctetCount => "bad_octet_count",
            FrameError::Incomplete => "incomplete_frame",
        }
    }
}

/// One frame out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Bytes,
    /// Cut at `max_frame` (or incomplete at the end of the stream).
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Start,
    /// In a newline-framed frame (after a bad octet count: the count cannot start another).
    Line,
    /// In an octet-counted frame of this many bytes (≤ max_frame).
    Counted(usize),
    /// Discarding up to the next `\n` (the tail of an over-long line).
    DiscardLine,
    /// Discarding this many more bytes (the tail of an over-long counted frame).
    DiscardCount(usize),
}

/// The per-connection frame splitter.
#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    state: State,
    /// Bytes of an over-long counted frame to discard after its head.
    pending_discard: usize,
}

/// Digits an octet count may have (max_frame is at most 64 MiB: 8 digits).
const MAX_COUNT_DIGITS: usize = 9;

impl Framer {
    pub fn new(max_frame: usize) -> Framer {
        Framer {
            max_frame,
            state: State::Start,
            pending_discard: 0,
        }
    }

    /// True when the stream is inside a frame (so a stalled peer is holding one open).
    pub fn in_frame(&self, buf: &BytesMut) -> bool {
        self.state != State::Start || !buf.is_empty()
    }

    /// Takes every complete frame out of `buf`, calling `out` with each (and with each
    /// problem). Leaves an incomplete frame in `buf` (never more than `max_frame` bytes of it).
    pub fn decode(&mut self, buf: &mut BytesMut, out: &mut impl FnMut(Result<Frame, FrameError>)) {
        loop {
            match self.state {
                State::Start => {
                    let skip = buf
                        .iter()
                        .take_while(|&&b| matches!(b, b'\n' | b'\r' | b'\0' | b' '))
                        .count();
                    let _ = buf.split_to(skip);
                    let Some(&first) = buf.first() else { return };
                    if !first.is_ascii_digit() {
                        self.state = State::Line;
                        continue;
                    }
                    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits == buf.len() && digits <= MAX_COUNT_DIGITS {
                        return; // the count is still arriving
                    }
                    let count = std::str::from_utf8(&buf[..digits])
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                        .filter(|&n| n > 0);
                    match (digits <= MAX_COUNT_DIGITS, buf.get(digits), count) {
                        (true, Some(b' '), Some(n)) => {
                            let _ = buf.split_to(digits + 1);
                            if n > self.max_frame {
                                out(Err(FrameError::TooLarge));
                                self.state = State::Counted(self.max_frame);
                                // Remember the tail to discard once the head is out.
                                self.pending_discard = n - self.max_frame;
                            } else {
                                self.state = State::Counted(n);
                            }
                        }
                        _ => {
                            out(Err(FrameError::BadOctetCount));
                            self.state = State::Line;
                        }
                    }
                }
                State::Line => {
                    let limit = buf.len().min(self.max_frame + 1);
                    match memchr::memchr(b'\n', &buf[..limit]) {
                        Some(i) => {
                            let mut data = buf.split_to(i + 1);
                            data.truncate(i);
                            if data.last() == Some(&b'\r') {
                                data.truncate(i - 1);
                            }
                            self.state = State::Start;
                            out(Ok(Frame {
                                data: data.freeze(),
                                truncated: false,
                            }));
                        }
                        None if buf.len() > self.max_frame => {
                            out(Err(FrameError::TooLarge));
                            let data = buf.split_to(self.max_frame).freeze();
                            self.state = State::DiscardLine;
                            out(Ok(Frame {
                                data,
                                truncated: true,
                            }));
                        }
                        None => return,
                    }
                }
                State::Counted(n) => {
                    if buf.len() < n {
                        return;
                    }
                    let mut data = buf.split_to(n);
                    // Senders (Docker over TLS among them) count a trailing newline.
                    while matches!(data.last(), Some(b'\n' | b'\r')) {
                        data.truncate(data.len() - 1);
                    }
                    let truncated = self.pending_discard > 0;
                    self.state = if truncated {
                        State::DiscardCount(std::mem::take(&mut self.pending_discard))
                    } else {
                        State::Start
                    };
                    out(Ok(Frame {
                        data: data.freeze(),
                        truncated,
                    }));
                }
                State::DiscardLine => match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        let _ = buf.split_to(i + 1);
                        self.state = State::Start;
                    }
                    None => {
                        buf.clear();
                        return;
                    }
                },
                State::DiscardCount(n) => {
                    let k = n.min(buf.len());
                    let _ = buf.split_to(k);
                    if k == n {
                        self.state = State::Start;
                    } else {
                        self.state = State::DiscardCount(n - k);
                        return;
                    }
                }
            }
        }
    }

    /// The stream ended: what is left in `buf` becomes a last frame (a sender's final line
    /// often has no newline); an incomplete counted frame is passed on flagged and counted.
    pub fn finish(&mut self, buf: &mut BytesMut, out: &mut impl FnMut(Result<Frame, FrameError>)) {
        self.decode(buf, out);
        let state = std::mem::replace(&mut self.state, State::Start);
        self.pending_discard = 0;
        let rest = buf.split().freeze();
        match state {
            State::Start | State::Line if !rest.iter().all(u8::is_ascii_whitespace) => {
                out(Ok(Frame {
                    data: rest,
                    truncated: false,
                }))
            }
            State::Counted(_) => {
                out(Err(FrameError::Incomplete));
                if !rest.is_empty() {
                    out(Ok(Frame {
                        data: rest,
                        truncated: true,
                    }));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        r: Result<Frame, FrameError>,
        frames: &mut Vec<(String, bool)>,
        errors: &mut Vec<FrameError>,
    ) {
        match r {
            Ok(fr) => frames.push((String::from_utf8_lossy(&fr.data).into_owned(), fr.truncated)),
            Err(e) => errors.push(e),
        }
    }

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<(String, bool)>, Vec<FrameError>) {
        let mut f = Framer::new(max);
        let mut buf = BytesMut::new();
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        for c in chunks {
            buf.extend_from_slice(c);
            f.decode(&mut buf, &mut |r| collect(r, &mut frames, &mut errors));
            assert!(buf.len() <= max + 16, "buffer grew to {}", buf.len());
        }
        f.finish(&mut buf, &mut |r| collect(r, &mut frames, &mut errors));
        (frames, errors)
    }

    fn texts(v: &[(String, bool)]) -> Vec<&str> {
        v.iter().map(|(s, _)| s.as_str()).collect()
    }

    #[test]
    fn newline_frames_across_reads() {
        let (f, e) = run(100, &[b"<13>a\n<1", b"4>b\r\n", b"\n<15>c"]);
        assert_eq!(texts(&f), ["<13>a", "<14>b", "<15>c"]);
        assert!(e.is_empty());
    }

    #[test]
    fn octet_counted_frames_mixed_with_newline_frames() {
        let (f, e) = run(
            100,
            &[b"5 <1>a", b"b6 <2>cd\n", b"<3>e\n1", b"0 <4>ghijklm"],
        );
        assert_eq!(texts(&f), ["<1>ab", "<2>cd", "<3>e", "<4>ghijklm"]);
        assert_eq!(e, []);
    }

    #[test]
    fn docker_tls_frames_count_the_newline() {
        let (f, _) = run(100, &[b"10 <22>1 x y\n10 <19>1 x z\n"]);
        assert_eq!(texts(&f), ["<22>1 x y", "<19>1 x z"]);
    }

    #[test]
    fn bad_octet_counts_fall_back_to_lines() {
        let (f, e) = run(100, &[b"12x <1>a\n", b"0 <2>b\n", b"1234567890123 <3>c\n"]);
        assert_eq!(texts(&f), ["12x <1>a", "0 <2>b", "1234567890123 <3>c"]);
        assert_eq!(e, [FrameError::BadOctetCount; 3]);
    }

    #[test]
    fn over_long_lines_are_cut_and_the_rest_discarded() {
        let big = vec![b'x'; 1000];
        let (f, e) = run(100, &[b"<1>", &big, &big, b"tail\n<2>ok\n"]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0.len(), 100);
        assert!(f[0].1);
        assert_eq!(f[1], ("<2>ok".to_string(), false));
        assert_eq!(e, [FrameError::TooLarge]);
    }

    #[test]
    fn over_long_counted_frames_are_cut_and_skipped() {
        let body = vec![b'y'; 500];
        let (f, e) = run(100, &[b"500 ", &body[..250], &body[250..], b"4 <1>z"]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0.len(), 100);
        assert!(f[0].1);
        assert_eq!(f[1].0, "<1>z");
        assert_eq!(e, [FrameError::TooLarge]);
    }

    #[test]
    fn incomplete_counted_frame_at_the_end() {
        let (f, e) = run(100, &[b"50 <1>abc"]);
        assert_eq!(f, [("<1>abc".to_string(), true)]);
        assert_eq!(e, [FrameError::Incomplete]);
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let mut seed = 0x1234_5678u64;
        for round in 0..300 {
            let mut data = Vec::new();
            for _ in 0..(round * 7 % 500) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let b = (seed >> 24) as u8;
                data.push(match b % 6 {
                    0 => b'\n',
                    1 => b'0' + b % 10,
                    2 => b' ',
                    _ => b,
                });
            }
            let chunks: Vec<&[u8]> = data.chunks(1 + round % 13).collect();
            let _ = run(64, &chunks);
        }
    }
}
