//! The server side of an accepted connection, with the C servers' TCP manners.
//!
//! Many clients (the Java client among them) leave Nagle on and write a request's header and
//! its body separately: their second write waits until the first is acknowledged. A server in
//! delayed-ACK mode acknowledges only after ~40 ms, so every such request would stall that long.
//! libserverframe re-arms `TCP_QUICKACK` after every receive (`tcp_quick_ack`), which makes the
//! kernel acknowledge every request at once in a packet of its own. Here it is set only when a
//! read must wait in the middle of a request (data came since the last answer went out): that
//! sends the pending ACK at once, so the client's held-back write comes; a request that arrived
//! whole is acknowledged by its answer, one packet fewer each way per request.
//!
//! Small reads (a header, an upload's head, a small body) go through a read-ahead buffer: a 4 KiB
//! upload arrives as one receive instead of three (and one `TCP_QUICKACK` instead of three).
//! Reads of at least the buffer's size go straight to the caller's memory.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// An accepted connection: `TCP_NODELAY` on (from its listener), `TCP_QUICKACK` re-armed when a
/// read waits in the middle of a request.
///
/// It deliberately does not deref to `TcpStream`: a read through the inner stream would skip the
/// re-arm.
#[derive(Debug)]
pub struct PeerStream {
    inner: TcpStream,
    /// Read ahead and not yet taken: `ahead[taken..filled]` (allocated at the first small read).
    ahead: Vec<u8>,
    taken: usize,
    filled: usize,
    /// Nothing read since the last answer was written: a wait now is for the next request.
    /// (Atomic only because zero-copy writes go through `&self`.)
    between_requests: AtomicBool,
}

/// The read-ahead buffer's size: a header, an upload head and a 4 KiB body fit in it.
const READ_AHEAD: usize = 8 << 10;

impl PeerStream {
    /// A listening socket for daemons' connections, with what every connection it accepts must
    /// have set before it listens: Linux copies socket options into each accepted socket, so
    /// this costs a few calls per daemon instead of five per connection (a client that connects
    /// per request, as the Java client does when the tracker names a group's members in turn,
    /// pays them every upload).
    pub fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        // As tokio's and C's listeners: a restarted daemon binds while old connections linger.
        sock.set_reuse_address(true)?;
        // Answers are written whole (header and body in one write); Nagle would only delay them.
        sock.set_tcp_nodelay(true)?;
        // Idle connections that served a request are kept without limit (as C keeps them);
        // keepalive probes find the peers among them whose host went away without a FIN.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(120))
            .with_interval(std::time::Duration::from_secs(30))
            .with_retries(4);
        sock.set_tcp_keepalive(&keepalive)?;
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        sock.listen(1024)?;
        tokio::net::TcpListener::from_std(sock.into())
    }

    /// A connection accepted from a listener made by [`Self::listen`]. No quick ACK is
    /// asked here: the kernel acknowledges a connection's first data at once by itself, and a
    /// request that then waits in the middle gets one from [`Self::waiting`].
    pub fn new(inner: TcpStream) -> Self {
        PeerStream { inner, ahead: Vec::new(), taken: 0, filled: 0, between_requests: AtomicBool::new(true) }
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
        if interest.is_writable() {
            self.between_requests.store(true, Ordering::Relaxed);
        }
        self.inner.try_io(interest, f)
    }

    /// A read is about to wait: in the middle of a request, the peer may be holding its next
    /// bytes back until we acknowledge (Nagle), so acknowledge now.
    /// `true` if it acknowledged (the wait is in the middle of a request).
    fn waiting(&self) -> bool {
        let mid_request = !self.between_requests.load(Ordering::Relaxed);
        if mid_request {
            self.quick_ack();
        }
        mid_request
    }

    /// A small read is about to wait: acknowledge as [`Self::waiting`] does, then look once more
    /// into the read-ahead buffer's socket. On loopback and on a fast LAN the ACK brings the
    /// client's held-back write in before `setsockopt` returns (C's storage reads it right after
    /// its own quick ACK), so the request goes on without a turn through epoll: a Java-style
    /// upload costs that turn otherwise. `None`: nothing came, the waker is registered.
    ///
    /// The receive goes around tokio's readiness on purpose: tokio has just marked the socket
    /// not readable, so its `try_read` would not even ask the kernel. The edge the arriving bytes
    /// raise still wakes this task later, once; that poll then finds nothing and waits again.
    fn waiting_small(&mut self) -> Option<io::Result<usize>> {
        if !self.waiting() {
            return None;
        }
        let socket = socket2::SockRef::from(&self.inner);
        match io::Read::read(&mut &*socket, &mut self.ahead) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            done => Some(done),
        }
    }
}

impl AsFd for PeerStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken == this.filled && buf.remaining() < READ_AHEAD {
            if this.ahead.is_empty() {
                this.ahead = vec![0u8; READ_AHEAD];
            }
            let mut ahead = ReadBuf::new(&mut this.ahead);
            this.filled = match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
                Poll::Ready(Ok(())) => ahead.filled().len(),
                Poll::Pending => match this.waiting_small() {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return Poll::Ready(Err(e)),
                    None => return Poll::Pending,
                },
                other => return other,
            };
            this.taken = 0;
            if this.filled == 0 {
                return Poll::Ready(Ok(())); // the peer closed
            }
            this.between_requests.store(false, Ordering::Relaxed);
        }
        if this.taken < this.filled {
            let n = buf.remaining().min(this.filled - this.taken);
            buf.put_slice(&this.ahead[this.taken..this.taken + n]);
            this.taken += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        match r {
            Poll::Pending => {
                this.waiting();
            }
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.between_requests.store(false, Ordering::Relaxed),
            _ => {}
        }
        r
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.between_requests.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.between_requests.store(true, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn read_ahead_hands_out_every_byte_in_order_whatever_the_read_sizes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let data = sent.clone();
        let writer = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            // A small request in one write, then a large body in pieces.
            c.write_all(&data[..4121]).await.unwrap();
            c.write_all(&data[4121..]).await.unwrap();
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut s = PeerStream::new(sock);
        let mut got = Vec::new();
        // Header, head, a small body (through the buffer), then a large read (straight past it).
        for want in [10usize, 15, 4096, 20_000] {
            let mut part = vec![0u8; want];
            s.read_exact(&mut part).await.unwrap();
            got.extend_from_slice(&part);
        }
        s.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "bytes arrive in order, none twice, none lost");
        assert!(s.ahead.len() == READ_AHEAD, "the small reads went through the buffer");
    }
}
