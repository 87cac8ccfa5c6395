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

/// How long a connection may wait for its next request.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// Before the first request: a connection that never sends one is closed after this, with
    /// a warning (C: "you must send a request before %ds timeout").
    pub first_request: Duration,
    /// Within a request: the rest of a header once its first byte came.
    pub network: Duration,
}

impl Waits {
    /// Both waits from `network_timeout` (at least a second).
    pub fn from_network_timeout(t: Duration) -> Self {
        let t = t.max(Duration::from_secs(1));
        Self { first_request: t, network: t }
    }
}

/// Reads the next request header. `first_byte` bounds the wait for its first byte (`None`: no
/// bound), `rest` the wait for the others.
async fn read_header(
    r: &mut (impl AsyncRead + Unpin),
    first_byte: Option<Duration>,
    rest: Duration,
    max_body: u64,
) -> Result<Header, FrameError> {
    let mut raw = [0u8; HEADER_LEN];
    let first = r.read(&mut raw);
    let n = match first_byte {
        Some(limit) => tokio::time::timeout(limit, first).await.map_err(|_| FrameError::Timeout)?,
        None => first.await,
    };
    let n = match n {
        Err(e) => return Err(FrameError::Io(e)),
        Ok(0) => return Err(FrameError::Closed),
        Ok(n) => n,
    };
    if n < HEADER_LEN {
        match tokio::time::timeout(rest, r.read_exact(&mut raw[n..])).await {
            Err(_) => return Err(FrameError::Timeout),
            Ok(Err(e)) => return Err(FrameError::Io(e)),
            Ok(Ok(_)) => {}
        }
    }
    Header::decode(&raw, max_body).map_err(|_| FrameError::BadHeader)
}

/// The next request header of a connection, or `None` when the connection should end:
/// shutdown, the peer left, a header that is unusable (answered EINVAL first), or no first
/// request within `waits.first_request`.
///
/// A connection that has served a request (`served > 0`) waits for its next one without a
/// limit, as the C daemons do: pooled clients (libfdfsclient with `use_connection_pool`, the
/// PHP extension, the Java pool) and C storages' sync connections keep connections idle for
/// minutes and fail their next call if the server closed it meanwhile. What bounds them is
/// `max_connections` and the per-address limit, and TCP keepalive for peers that vanished.
pub async fn next_header<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    peer: std::net::SocketAddr,
    shutdown: &mut crate::server::Shutdown,
    waits: Waits,
    served: u64,
    max_body: u64,
) -> Option<Header> {
    let first_byte = (served == 0).then_some(waits.first_request);
    let r = tokio::select! {
        _ = shutdown.wait() => return None,
        r = read_header(sock, first_byte, waits.network, max_body) => r,
    };
    match r {
        Ok(h) => Some(h),
        Err(FrameError::BadHeader) => {
            let _ = write_answer(sock, Status::EINVAL, &[]).await;
            None
        }
        Err(FrameError::Timeout) if served == 0 => {
            tracing::warn!(
                "{peer}: recv timeout: a connection must send a request within {}s of being established",
                waits.first_request.as_secs()
            );
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
