//! Upstream connections that let an early answer through.
//!
//! An upstream may answer before it has read the whole request body: a 413
//! for a body over its own limit, a 401 for a bad token on an upload. Its
//! HTTP server then closes the connection with the rest of the body unread,
//! and the kernel answers our next write with a reset. hyper's client reads
//! and writes the connection in turns; when the write fails first, it
//! drops the connection with a "broken pipe" error although the upstream's
//! complete answer is already waiting in the socket, and the gateway would
//! answer 502 "closed the connection before answering" (and charge the
//! instance a connection failure) where the upstream had answered 413.
//!
//! [`Connector`] wraps hyper-util's `HttpConnector` so that, once the peer
//! has reset or shut the connection (`BrokenPipe`, `ConnectionReset` on a
//! write), further writes are accepted and dropped instead of failing. hyper
//! then goes on to read, finds the answer and returns it; the rest of the
//! request body is drained into nothing (at most the route's `max_body`).
//! When no answer was sent, the read fails as before and the call is a
//! broken connection. Such a connection is never reused: its reads end in
//! the reset, which closes it before the pool hands it out again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `HttpConnector` whose connections tolerate a peer that stops reading (see the module docs).
#[derive(Debug, Clone)]
pub struct Connector {
    inner: HttpConnector,
}

impl Connector {
    pub fn new(inner: HttpConnector) -> Connector {
        Connector { inner }
    }
}

type ConnectResult =
    Result<EarlyAnswerIo<TokioIo<TcpStream>>, <HttpConnector as tower::Service<Uri>>::Error>;

impl tower::Service<Uri> for Connector {
    type Response = EarlyAnswerIo<TokioIo<TcpStream>>;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = ConnectResult> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            connecting.await.map(|io| EarlyAnswerIo {
                io,
                peer_gone: false,
            })
        })
    }
}

/// A connection whose writes succeed (and are dropped) once the peer is gone.
#[derive(Debug)]
pub struct EarlyAnswerIo<T> {
    io: T,
    /// Set by the first write that found the peer gone; from then on writes are dropped.
    /// Only this connection's task touches it.
    peer_gone: bool,
}

/// Whether a write error means the peer closed or reset the connection.
fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl<T> EarlyAnswerIo<T> {
    /// Turns a peer-gone write error into success for `n` bytes, once and for all.
    fn absorb(&mut self, polled: Poll<io::Result<usize>>, n: usize) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Err(e)) if is_peer_gone(&e) => {
                tracing::debug!(error = %e, "upstream stopped reading; dropping the rest of the request to read its answer");
                self.peer_gone = true;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

impl<T: Read + Unpin> Read for EarlyAnswerIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for EarlyAnswerIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.peer_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.absorb(polled, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        if this.peer_gone {
            return Poll::Ready(Ok(total));
        }
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.absorb(polled, total)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peer_gone {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.absorb(polled.map_ok(|()| 0), 0).map_ok(|_| ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peer_gone {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for EarlyAnswerIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every write with the given error kind.
    struct Failing(io::ErrorKind, usize);

    impl Write for Failing {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.1 += 1;
            Poll::Ready(Err(io::Error::from(this.0)))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::from(self.0)))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(io: &mut EarlyAnswerIo<Failing>, n: usize) -> Poll<io::Result<usize>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        Pin::new(io).poll_write(&mut cx, &vec![0u8; n])
    }

    /// A reset or broken pipe turns writes into no-ops from then on; other errors pass.
    #[test]
    fn writes_after_the_peer_left_are_dropped() {
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::ConnectionReset] {
            let mut io = EarlyAnswerIo {
                io: Failing(kind, 0),
                peer_gone: false,
            };
            assert!(matches!(write(&mut io, 10), Poll::Ready(Ok(10))));
            assert!(matches!(write(&mut io, 7), Poll::Ready(Ok(7))));
            assert_eq!(io.io.1, 1, "the socket is not written again");
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(matches!(
                Pin::new(&mut io).poll_flush(&mut cx),
                Poll::Ready(Ok(()))
            ));
        }
        let mut io = EarlyAnswerIo {
            io: Failing(io::ErrorKind::TimedOut, 0),
            peer_gone: false,
        };
        assert!(matches!(write(&mut io, 10), Poll::Ready(Err(_))));
        assert!(!io.peer_gone);
    }
}
