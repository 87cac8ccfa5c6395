//! Server-side framing shared by the daemons: read one request header, read a whole body when
//! it is small enough to buffer, write answers. Streaming bodies (uploads) are read by the
//! storage itself.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{Header, Status, HEADER_LEN};

/// Why a connection ends.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed between requests: a normal end.
    Closed,
    Io(std::io::Error),
    /// Idle or too slow for `network_timeout`.
    Timeout,
    /// The header itself is unusable (negative or absurd length): answer EINVAL and close.
    BadHeader,
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads the next request header. `idle` bounds the wait for its first byte, `timeout` the rest.
pub async fn read_header(
    r: &mut (impl AsyncRead + Unpin),
    idle: Duration,
    max_body: u64,
) -> Result<Header, FrameError> {
    let mut raw = [0u8; HEADER_LEN];
    let n = match tokio::time::timeout(idle, r.read(&mut raw)).await {
        Err(_) => return Err(FrameError::Timeout),
        Ok(Err(e)) => return Err(FrameError::Io(e)),
        Ok(Ok(0)) => return Err(FrameError::Closed),
        Ok(Ok(n)) => n,
    };
    if n < HEADER_LEN {
        match tokio::time::timeout(idle, r.read_exact(&mut raw[n..])).await {
            Err(_) => return Err(FrameError::Timeout),
            Ok(Err(e)) => return Err(FrameError::Io(e)),
            Ok(Ok(_)) => {}
        }
    }
    Header::decode(&raw, max_body).map_err(|_| FrameError::BadHeader)
}

/// The next request header of a connection, or `None` when the connection should end:
/// shutdown, the peer left or went idle, or a header that is unusable (answered EINVAL first).
pub async fn next_header<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    shutdown: &mut crate::server::Shutdown,
    idle: Duration,
    max_body: u64,
) -> Option<Header> {
    let r = tokio::select! {
        _ = shutdown.wait() => return None,
        r = read_header(sock, idle, max_body) => r,
    };
    match r {
        Ok(h) => Some(h),
        Err(FrameError::BadHeader) => {
            let _ = write_answer(sock, Status::EINVAL, &[]).await;
            None
        }
        Err(_) => None,
    }
}

/// Reads a body of `len` bytes (the caller checked `len` against its limit).
pub async fn read_body(r: &mut (impl AsyncRead + Unpin), len: u64, timeout: Duration) -> Result<Vec<u8>, FrameError> {
    let mut body = vec![0u8; len as usize];
    match tokio::time::timeout(timeout, r.read_exact(&mut body)).await {
        Err(_) => Err(FrameError::Timeout),
        Ok(Err(e)) => Err(FrameError::Io(e)),
        Ok(Ok(_)) => Ok(body),
    }
}

/// Writes an answer: header and body in one write.
pub async fn write_answer(w: &mut (impl AsyncWrite + Unpin), status: Status, body: &[u8]) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body.len());
    Header::response(status, body.len()).put(&mut buf);
    buf.extend_from_slice(body);
    w.write_all(&buf).await
}
