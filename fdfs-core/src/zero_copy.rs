//! Sending file bytes straight from the page cache with sendfile(2): downloads (to clients)
//! and replication (to peers) share this one loop.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A socket sendfile can write to from async code.
pub trait ZeroCopyTarget: AsFd {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl ZeroCopyTarget for TcpStream {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        TcpStream::writable(self)
    }
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        TcpStream::try_io(self, interest, f)
    }
}

/// Sends `head` (an answer's header), then `len` bytes of `file` from `offset`. A small file
/// whose pages are cached goes with its header in one `send` ([`FROM_MEMORY_MAX`]); otherwise
/// the head goes with `MSG_MORE`, so a small file leaves in the same packet as its header (the
/// client wakes once, not twice), and the file with sendfile.
pub async fn send_head_and_file(
    sock: &impl ZeroCopyTarget,
    head: &[u8],
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    use nix::sys::socket::MsgFlags;
    if let Some(answer) = cached_answer(head, file, offset, len) {
        return send_all(sock, &answer, MsgFlags::MSG_NOSIGNAL, timeout).await;
    }
    send_all(sock, head, MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL, timeout).await?;
    send_file(sock, file, offset, len, timeout).await
}

/// Sends all of `bytes` with `send(2)` and `flags`, each step waiting at most `timeout`.
async fn send_all(
    sock: &impl ZeroCopyTarget,
    bytes: &[u8],
    flags: nix::sys::socket::MsgFlags,
    timeout: Duration,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        sent += write_step(sock, timeout, || {
            nix::sys::socket::send(sock.as_fd().as_raw_fd(), &bytes[sent..], flags).map_err(io::Error::from)
        })
        .await?;
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset`. Each step waits at most `timeout` for room on the
/// socket. Fails with `UnexpectedEof` if the file ends first (it shrank), `TimedOut` if the peer
/// stopped reading.
pub async fn send_file(
    sock: &impl ZeroCopyTarget,
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    let mut pos = offset as i64;
    let end = (offset + len) as i64;
    while pos < end {
        let want = ((end - pos) as usize).min(1 << 30);
        let sent = write_step(sock, timeout, || {
            nix::sys::sendfile::sendfile(sock.as_fd(), file.as_fd(), Some(&mut pos), want).map_err(io::Error::from)
        })
        .await?;
        if sent == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Answers whose file part is at most this long are sent from memory when their bytes are in
/// the page cache: read with `RWF_NOWAIT` (never waiting on the disk on this thread) and sent
/// with the header in one `send`, cheaper than sendfile's splice for a few pages.
const FROM_MEMORY_MAX: u64 = 64 << 10;

/// The answer (`head`, then `len` bytes of `file` from `offset`) in one buffer, if those bytes
/// are all in the page cache; `None` if not (or the file is shorter now, or the kernel or file
/// system has no `RWF_NOWAIT`, or the read failed: sendfile reads it then, and reports).
fn cached_answer(head: &[u8], file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    use rustix::io::{preadv2, ReadWriteFlags};
    if len > FROM_MEMORY_MAX {
        return None;
    }
    let mut buf = Vec::with_capacity(head.len() + len as usize);
    buf.extend_from_slice(head);
    buf.resize(head.len() + len as usize, 0);
    let read = preadv2(file, &mut [io::IoSliceMut::new(&mut buf[head.len()..])], offset, ReadWriteFlags::NOWAIT);
    (read.ok()? as u64 == len).then_some(buf)
}

/// One non-blocking write (`write` returns how many bytes it took) once the socket has room,
/// waiting at most `timeout` for it (`TimedOut` then). Tried at once first: most writes find
/// room, and need no timer.
async fn write_step(
    sock: &impl ZeroCopyTarget,
    timeout: Duration,
    mut write: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    match sock.try_io(Interest::WRITABLE, &mut write) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r,
    }
    let step = async {
        loop {
            sock.writable().await?;
            match sock.try_io(Interest::WRITABLE, &mut write) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    };
    tokio::time::timeout(timeout, step).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}
