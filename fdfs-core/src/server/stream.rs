//! The server side of an accepted connection, with the C servers' TCP manners.
//!
//! Many clients (the Java client among them) leave Nagle on and write a request's header and
//! its body separately: their second write waits until the first is acknowledged. A server in
//! delayed-ACK mode acknowledges only after ~40 ms, so every such request would stall that long.
//! libserverframe re-arms `TCP_QUICKACK` after every receive (`tcp_quick_ack`); Linux clears the
//! flag by itself after a while, so it is set again after each read that returned data, which
//! also sends the pending ACK at once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// An accepted connection: `TCP_NODELAY` on, `TCP_QUICKACK` re-armed after every read.
///
/// It deliberately does not deref to `TcpStream`: a read through the inner stream would skip the
/// re-arm.
#[derive(Debug)]
pub struct PeerStream {
    inner: TcpStream,
}

impl PeerStream {
    pub fn new(inner: TcpStream) -> Self {
        // Answers are written whole (header and body in one write); Nagle would only delay them.
        let _ = inner.set_nodelay(true);
        let s = PeerStream { inner };
        s.quick_ack();
        s
    }

    fn quick_ack(&self) {
        // Best effort, as in C: a socket that refuses it still works, only slower.
        let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Waits until the socket can take more bytes (for zero-copy writes with [`Self::try_io`]).
    pub async fn writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }

    /// Runs a non-blocking syscall on the socket (sendfile, splice), as `TcpStream::try_io`.
    pub fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.inner.try_io(interest, f)
    }
}

impl AsFd for PeerStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.quick_ack();
        }
        r
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl crate::zero_copy::ZeroCopyTarget for PeerStream {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        PeerStream::writable(self)
    }

    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        PeerStream::try_io(self, interest, f)
    }
}
