//! The load engine's HTTP/1.1 answer reader: just what the generator needs of an answer (its
//! status, whether it is problem+json, whether the connection stays open, where it ends) and,
//! when asked, its body. The head is parsed with `httparse`; the body is framed by
//! `Content-Length`, chunked encoding or the end of the connection, and read in place, with no
//! allocation per answer.
//!
//! A broken or hostile server gets a clear [`AnswerError`], never a panic or an endless read:
//! the head is bounded ([`MAX_HEAD`]), as are chunk-size lines and trailers, an answer cut
//! short by the end of the connection is an error, and the bytes after a complete answer are
//! left to the caller (for the engine, which sends one request at a time, they are an error).

use std::fmt;

/// Largest answer head (status line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in one answer.
const MAX_HEADERS: usize = 64;
/// Most body bytes kept for the caller (fallback detection, order numbers); the rest is read
/// and dropped.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The head is not HTTP/1.x.
    Head(String),
    /// The head is longer than [`MAX_HEAD`].
    HeadTooLarge,
    /// A `Content-Length` that is not one number.
    ContentLength(String),
    /// Chunked encoding that does not follow the grammar.
    Chunk(&'static str),
    /// The connection ended before the answer did.
    Eof,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Head(e) => write!(f, "malformed answer head: {e}"),
            AnswerError::HeadTooLarge => {
                write!(f, "answer head longer than {MAX_HEAD} bytes")
            }
            AnswerError::ContentLength(v) => write!(f, "bad Content-Length `{v}`"),
            AnswerError::Chunk(e) => write!(f, "bad chunked encoding: {e}"),
            AnswerError::Eof => write!(f, "connection closed before the answer ended"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// Where the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// At the end of the connection.
    UntilClose,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In the size's hex digits.
    Size { value: u64, digits: u8 },
    /// In a chunk extension, `len` bytes of the line so far.
    Extension { value: u64, len: usize },
    /// After the size line's `\r`.
    SizeLf { value: u64 },
    /// This many bytes of chunk data are left.
    Data(u64),
    /// After chunk data: its `\r`.
    DataCr,
    /// After chunk data: its `\n`.
    DataLf,
    /// In the trailer, at the start of a line (`at_start`) or within one, `len` bytes so far.
    Trailer { at_start: bool, len: usize },
    /// After the last line's `\r`.
    TrailerLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
    Done,
}

/// One answer being read; [`Answer::reset`] makes it ready for the next one.
#[derive(Debug)]
pub struct Answer {
    state: State,
    /// The final status (after any 1xx answers).
    pub status: u16,
    /// Whether `Content-Type` is `application/problem+json`.
    pub problem: bool,
    /// Whether the server closes the connection after this answer.
    pub close: bool,
    /// Keep the body of a `201` (an accepted order).
    keep_created: bool,
    /// Whether this answer's body is kept.
    keeping: bool,
    /// The kept body (at most [`MAX_KEPT_BODY`] bytes).
    pub body: Vec<u8>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            state: State::Head,
            status: 0,
            problem: false,
            close: false,
            keep_created: false,
            keeping: false,
            body: Vec::new(),
        }
    }
}

impl Answer {
    /// Ready for the next answer; `keep_created` keeps the body of a `201`. The bodies of
    /// `503` problem+json answers are always kept (fallback detection).
    pub fn reset(&mut self, keep_created: bool) {
        self.state = State::Head;
        self.status = 0;
        self.problem = false;
        self.close = false;
        self.keep_created = keep_created;
        self.keeping = false;
        self.body.clear();
    }

    /// Whether the answer is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether no byte of the answer has been taken yet.
    pub fn is_untouched(&self) -> bool {
        self.state == State::Head && self.status == 0
    }

    /// Reads what it can of `data` (the bytes received and not yet taken); returns how many it
    /// took. Fewer than all of them while the head is incomplete: the caller keeps the rest
    /// and calls again with more. Once the answer is complete ([`Answer::is_done`]) nothing
    /// more is taken.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, AnswerError> {
        let mut at = 0;
        loop {
            match self.state {
                State::Done => return Ok(at),
                State::Head => {
                    let rest = &data[at..];
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    match self.head(rest)? {
                        Some(n) => at += n,
                        None if rest.len() >= MAX_HEAD => return Err(AnswerError::HeadTooLarge),
                        None => return Ok(at),
                    }
                }
                State::Body(body) => {
                    let rest = &data[at..];
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    at += self.body(body, rest)?;
                }
            }
        }
    }

    /// The connection ended: completes an answer that runs until the end of the connection,
    /// else the answer was cut short (unless it was complete).
    pub fn eof(&mut self) -> Result<(), AnswerError> {
        match self.state {
            State::Done => Ok(()),
            State::Body(Body::UntilClose) => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(AnswerError::Eof),
        }
    }

    /// Parses a head at the start of `data`: its length, or `None` while it is incomplete.
    fn head(&mut self, data: &[u8]) -> Result<Option<usize>, AnswerError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        let n = match res.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(AnswerError::Head(e.to_string())),
        };
        if n > MAX_HEAD {
            return Err(AnswerError::HeadTooLarge);
        }
        let status = res.code.unwrap_or(0);
        let mut close = res.version == Some(0);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut problem = false;
        for h in res.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        AnswerError::ContentLength(String::from_utf8_lossy(h.value).into_owned())
                    })?;
                if length.is_some_and(|l| l != v) {
                    return Err(AnswerError::ContentLength(format!(
                        "{} and {v}",
                        length.unwrap_or(0)
                    )));
                }
                length = Some(v);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            } else if name.eq_ignore_ascii_case("content-type") {
                problem = h
                    .value
                    .get(..24)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"application/problem+json"));
            }
        }
        if (100..200).contains(&status) {
            // An interim answer (100 Continue, 103 Early Hints): the final one follows.
            return Ok(Some(n));
        }
        self.status = status;
        self.problem = problem;
        self.close = close;
        self.keeping = (status == 503 && problem) || (status == 201 && self.keep_created);
        self.state = if status == 204 || status == 304 {
            State::Done
        } else if chunked {
            State::Body(Body::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            }))
        } else if let Some(l) = length {
            if l == 0 {
                State::Done
            } else {
                State::Body(Body::Length(l))
            }
        } else {
            self.close = true;
            State::Body(Body::UntilClose)
        };
        Ok(Some(n))
    }

    fn keep(&mut self, data: &[u8]) {
        if self.keeping {
            let room = MAX_KEPT_BODY.saturating_sub(self.body.len());
            self.body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// Takes body bytes from `data` (not empty); returns how many.
    fn body(&mut self, body: Body, data: &[u8]) -> Result<usize, AnswerError> {
        match body {
            Body::UntilClose => {
                self.keep(data);
                Ok(data.len())
            }
            Body::Length(left) => {
                let n = (data.len() as u64).min(left) as usize;
                self.keep(&data[..n]);
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Body(Body::Length(left))
                };
                Ok(n)
            }
            Body::Chunked(chunk) => self.chunk(chunk, data),
        }
    }

    /// Takes chunked-body bytes from `data` (not empty); returns how many.
    fn chunk(&mut self, mut c: Chunk, data: &[u8]) -> Result<usize, AnswerError> {
        let mut at = 0;
        while at < data.len() {
            if let Chunk::Data(left) = c {
                let n = ((data.len() - at) as u64).min(left) as usize;
                self.keep(&data[at..at + n]);
                at += n;
                c = if left == n as u64 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - n as u64)
                };
                continue;
            }
            let b = data[at];
            at += 1;
            c = match c {
                Chunk::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err(AnswerError::Chunk("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        Chunk::Size {
                            value: value * 16 + d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(AnswerError::Chunk("no chunk size")),
                    b';' | b' ' | b'\t' => Chunk::Extension { value, len: 0 },
                    b'\r' => Chunk::SizeLf { value },
                    b'\n' => end_of_size(value),
                    _ => return Err(AnswerError::Chunk("bad byte in the chunk size")),
                },
                Chunk::Extension { value, len } => match b {
                    b'\n' => end_of_size(value),
                    _ if len >= MAX_CHUNK_LINE => {
                        return Err(AnswerError::Chunk("chunk-size line too long"));
                    }
                    _ => Chunk::Extension {
                        value,
                        len: len + 1,
                    },
                },
                Chunk::SizeLf { value } => match b {
                    b'\n' => end_of_size(value),
                    _ => return Err(AnswerError::Chunk("no LF after the chunk size")),
                },
                Chunk::Data(_) => unreachable!("handled above"),
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(AnswerError::Chunk("no CRLF after chunk data")),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(AnswerError::Chunk("no LF after chunk data")),
                },
                Chunk::Trailer { at_start, len } => match b {
                    b'\r' if at_start => Chunk::TrailerLf,
                    b'\n' if at_start => {
                        self.state = State::Done;
                        return Ok(at);
                    }
                    b'\n' => Chunk::Trailer {
                        at_start: true,
                        len: len + 1,
                    },
                    _ if len >= MAX_HEAD => return Err(AnswerError::Chunk("trailer too long")),
                    _ => Chunk::Trailer {
                        at_start: false,
                        len: len + 1,
                    },
                },
                Chunk::TrailerLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(at);
                    }
                    _ => return Err(AnswerError::Chunk("no LF after the last chunk")),
                },
            };
        }
        self.state = State::Body(Body::Chunked(c));
        Ok(at)
    }
}

/// After a chunk-size line: the chunk's data, or the trailer after the last chunk.
fn end_of_size(value: u64) -> Chunk {
    if value == 0 {
        Chunk::Trailer {
            at_start: true,
            len: 0,
        }
    } else {
        Chunk::Data(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step` bytes as a connection would deliver them (keeping what
    /// the reader did not take), then the end of the connection when `eof`; the answer and any
    /// bytes left after it.
    fn read(
        data: &[u8],
        step: usize,
        keep_created: bool,
        eof: bool,
    ) -> (Answer, Result<usize, AnswerError>) {
        let mut a = Answer::default();
        a.reset(keep_created);
        let mut pending: Vec<u8> = Vec::new();
        for piece in data.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            match a.feed(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) => return (a, Err(e)),
            }
            if a.is_done() {
                break;
            }
        }
        if eof
            && !a.is_done()
            && let Err(e) = a.eof()
        {
            return (a, Err(e));
        }
        (a, Ok(pending.len()))
    }

    const PLAIN: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nUP";

    #[test]
    fn reads_a_plain_answer_in_any_pieces() {
        for step in [1, 2, 3, 7, 64, 4096] {
            let (a, left) = read(PLAIN, step, false, false);
            assert!(a.is_done(), "step {step}");
            assert_eq!(left, Ok(0));
            assert_eq!(a.status, 200);
            assert!(!a.close && !a.problem);
            assert!(a.body.is_empty(), "bodies are not kept unless asked");
        }
    }

    #[test]
    fn keeps_fallback_and_created_bodies() {
        let fallback = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nContent-Length: 20\r\n\r\n{\"detail\":\"x\",\"a\":1}";
        let (a, left) = read(fallback, 5, false, false);
        assert_eq!(left, Ok(0));
        assert!(a.is_done() && a.problem);
        assert_eq!(a.body, b"{\"detail\":\"x\",\"a\":1}");
        let created = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}{}";
        assert_eq!(read(created, 3, true, false).0.body, b"{}{}");
        assert!(read(created, 3, false, false).0.body.is_empty());
    }

    #[test]
    fn reads_chunked_answers_in_any_pieces() {
        let data = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 5, 13, 4096] {
            let (a, left) = read(data, step, true, false);
            assert!(a.is_done(), "step {step}");
            assert_eq!(left, Ok(0));
            assert_eq!(a.body, b"abcd0123456789");
        }
        // Bare LFs, as some servers write them.
        let lf = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nhi\n0\n\n";
        let (a, left) = read(lf, 1, false, false);
        assert!(a.is_done());
        assert_eq!(left, Ok(0));
    }

    #[test]
    fn bad_chunks_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX",
        ] {
            for step in [1, 4096] {
                let (_, r) = read(bad, step, false, false);
                assert!(
                    matches!(r, Err(AnswerError::Chunk(_))),
                    "{:?}: {r:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        // An endless extension is cut off, not read forever.
        let mut long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', 2 * MAX_CHUNK_LINE));
        assert!(matches!(
            read(&long, 100, false, false).1,
            Err(AnswerError::Chunk(_))
        ));
    }

    #[test]
    fn answers_without_a_length_run_to_the_end_of_the_connection() {
        let data = b"HTTP/1.1 200 OK\r\n\r\nsome body";
        let (a, left) = read(data, 4, false, true);
        assert!(a.is_done() && a.close);
        assert_eq!(left, Ok(0));
        // HTTP/1.0 closes unless told otherwise; no-body statuses end at the head.
        let (a, _) = read(b"HTTP/1.0 204 No Content\r\n\r\n", 1, false, false);
        assert!(a.is_done() && a.close && a.status == 204);
        let (a, _) = read(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            1,
            false,
            false,
        );
        assert!(a.is_done() && a.close);
    }

    #[test]
    fn interim_answers_are_skipped() {
        let data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        for step in [1, 4096] {
            let (a, left) = read(data, step, false, false);
            assert!(a.is_done());
            assert_eq!(a.status, 200);
            assert_eq!(left, Ok(0));
        }
    }

    #[test]
    fn a_short_answer_is_an_error_at_the_end_of_the_connection() {
        let (_, r) = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            2,
            false,
            true,
        );
        assert_eq!(r, Err(AnswerError::Eof));
        let (_, r) = read(b"HTTP/1.1 200 O", 2, false, true);
        assert_eq!(r, Err(AnswerError::Eof));
        let mut a = Answer::default();
        assert!(a.is_untouched());
        assert_eq!(a.eof(), Err(AnswerError::Eof));
    }

    #[test]
    fn bytes_after_the_answer_are_left_for_the_caller() {
        // One answer per request: the caller treats what is left as an error.
        let mut data = PLAIN.to_vec();
        data.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\ngarbage");
        let mut a = Answer::default();
        a.reset(false);
        let n = a.feed(&data).unwrap();
        assert!(a.is_done());
        assert_eq!(n, PLAIN.len());
        assert_eq!(a.feed(&data[n..]), Ok(0), "a complete answer takes no more");
    }

    #[test]
    fn garbage_and_bad_heads_are_errors() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"\x00\x01\x02\x03",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let (_, r) = read(bad, 4096, false, false);
            assert!(
                matches!(r, Err(AnswerError::Head(_) | AnswerError::ContentLength(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(!r.unwrap_err().to_string().is_empty());
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            read(&many, 4096, false, false).1,
            Err(AnswerError::Head(_))
        ));
    }

    #[test]
    fn an_endless_head_is_cut_off() {
        let mut huge = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 2 * MAX_HEAD));
        for step in [1000, MAX_HEAD, 4 * MAX_HEAD] {
            let (_, r) = read(&huge, step, false, false);
            assert_eq!(r, Err(AnswerError::HeadTooLarge), "step {step}");
        }
    }

    #[test]
    fn kept_bodies_are_bounded() {
        let mut data = format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
            2 * MAX_KEPT_BODY
        )
        .into_bytes();
        data.extend(std::iter::repeat_n(b'x', 2 * MAX_KEPT_BODY));
        let (a, left) = read(&data, 10_000, true, false);
        assert!(a.is_done());
        assert_eq!(left, Ok(0));
        assert_eq!(a.body.len(), MAX_KEPT_BODY);
    }
}
