//! problem+json for the errors hyper answers by itself.
//!
//! hyper answers a request it cannot take before any service code runs: 400
//! for a malformed request line or header, 414 for a request target longer
//! than 64 KiB, 431 for more than 100 headers or a head beyond its read
//! buffer (about 400 KiB). Those answers have an empty body, while every
//! other error of the platform is RFC 9457 problem+json. hyper has no hook
//! for them, so [`ProblemListener`] wraps each accepted connection in
//! [`ProblemIo`], which recognises such an automatic answer on its way out
//! (a 400, 414 or 431 head with `content-length: 0`, no content type and no
//! body, written in one piece) and writes the same status with a
//! problem+json body instead. hyper closes the connection after those
//! answers, so nothing follows them on the wire. Anything else passes
//! through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::convert::Infallible;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::error::Problem;

/// A TCP listener whose connections carry [`ProblemIo`].
#[derive(Debug)]
pub struct ProblemListener(pub TcpListener);

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (ProblemIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The make-service for [`ProblemListener`]: `app` per connection, with the
/// peer's address in every request as `ConnectInfo<SocketAddr>` (what
/// `into_make_service_with_connect_info` does for a plain `TcpListener`).
#[derive(Clone)]
pub struct WithConnectInfo(pub Router);

impl<'a> tower::Service<IncomingStream<'a, ProblemListener>> for WithConnectInfo {
    type Response = WithPeer;
    type Error = Infallible;
    type Future = std::future::Ready<Result<WithPeer, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'a, ProblemListener>) -> Self::Future {
        std::future::ready(Ok(WithPeer {
            app: self.0.clone(),
            peer: *incoming.remote_addr(),
        }))
    }
}

/// One connection's service: the app, with the peer's address added to each request.
#[derive(Clone)]
pub struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl tower::Service<Request> for WithPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as tower::Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.call(req)
    }
}

/// A connection whose automatic empty error answers become problem+json.
#[derive(Debug)]
pub struct ProblemIo<T> {
    io: T,
    /// The replacement being written, how much of it is out, and how many
    /// bytes of hyper's answer it stands for (reported once it is all out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(io: T) -> ProblemIo<T> {
        ProblemIo { io, pending: None }
    }
}

/// The problem+json answer that replaces hyper's empty `head`, if it is one.
pub fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let (status, detail, slug) = match rest.get(..4)? {
        "400 " => (
            StatusCode::BAD_REQUEST,
            "the request is not valid HTTP/1.1 (request line or a header could not be parsed)",
            "malformed-request",
        ),
        "414 " => (
            StatusCode::URI_TOO_LONG,
            "the request target (path and query) is longer than this server accepts (64 KiB)",
            "uri-too-long",
        ),
        "431 " => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request's headers are more or larger than this server accepts (at most 100 headers, about 400 KiB)",
            "headers-too-large",
        ),
        _ => return None,
    };
    let lower = text.to_ascii_lowercase();
    if !lower.ends_with("\r\n\r\n")
        || !lower.contains("\r\ncontent-length: 0\r\n")
        || lower.contains("\r\ncontent-type:")
    {
        return None;
    }
    let body = serde_json::to_vec(&Problem::with_detail(status, detail).kind(slug)).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        problem::PROBLEM_JSON,
        body.len()
    )
    .into_bytes();
    // Keep hyper's other headers (date).
    for line in text.split("\r\n").skip(1) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !line.is_empty() && name != "content-length" && name != "connection" {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a replacement; `Ready(Ok(n))` with the bytes
    /// of hyper's answer it stood for once it is all out.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.pending {
            if *written == bytes.len() {
                let (_, _, stands_for) = self.pending.take().expect("checked above");
                return Poll::Ready(Ok(stands_for));
            }
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }

    fn start(&mut self, buf: &[u8]) -> bool {
        match replacement(buf) {
            Some(bytes) => {
                tracing::debug!("hyper's automatic error answer sent as problem+json");
                self.pending = Some((bytes, 0, buf.len()));
                true
            }
            None => false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_some() || this.start(buf) {
            return this.drive(cx);
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return this.drive(cx);
        }
        // An automatic answer is a head alone: one non-empty slice.
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next())
            && this.start(only)
        {
            return this.drive(cx);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            std::task::ready!(this.drive(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            std::task::ready!(this.drive(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's empty 414/431/400 heads become problem+json with the same status; anything
    /// else (a body, a content type, other statuses) is left alone.
    #[test]
    fn rewrites_only_hypers_automatic_answers() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(head).unwrap()).unwrap();
        let (head_out, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head_out.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
            "{out}"
        );
        assert!(head_out.contains("content-type: application/problem+json"));
        assert!(head_out.contains(&format!("content-length: {}", body.len())));
        assert!(head_out.contains("date: Mon, 07 Dec 2026"));
        let p: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(p["status"], 414);
        let out = replacement(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\"status\":431"));
        for kept in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
            b"\xff\xfe",
        ] {
            assert!(replacement(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }
}
