//! What a command of either daemon answers, and the one place an answer is written: a body
//! (status 0), an error status (the connection closing after it when the request was malformed
//! or left content unread), nothing more (written already), or the end of the connection.

use std::net::SocketAddr;

use super::frame::write_answer;
use super::PeerStream;
use crate::protocol::{DecodeError, Status};

/// A command's answer when it succeeds.
#[derive(Debug)]
pub enum Reply {
    /// A body, sent with status 0.
    Body(Vec<u8>),
    /// Written already: `n` bytes of content (downloads, listings).
    Sent(u64),
    /// The connection ends here: QUIT, an answer that ends with the connection, or one cut
    /// short after its header.
    Close,
}

/// A failed command: the status to answer, and whether the connection must close (after
/// EINVAL, or when unread content is still on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpError {
    pub status: Status,
    pub close: bool,
}

impl From<Status> for OpError {
    fn from(status: Status) -> Self {
        Self { status, close: status == Status::EINVAL }
    }
}

impl From<std::io::Error> for OpError {
    fn from(e: std::io::Error) -> Self {
        Status::from_io(&e).into()
    }
}

/// A request that does not parse: EINVAL, and the connection closes, as FastDFS does.
impl From<DecodeError> for OpError {
    fn from(e: DecodeError) -> Self {
        tracing::debug!("malformed request: {e}");
        closing(Status::EINVAL)
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// An error after which the connection closes (content may be left unread).
pub fn closing(status: Status) -> OpError {
    OpError { status, close: true }
}

/// Writes `answer` to the command `cmd` of `peer`; false when the connection ends here.
pub async fn send(sock: &mut PeerStream, peer: SocketAddr, cmd: u8, answer: OpResult<Reply>) -> bool {
    let written = match answer {
        Ok(Reply::Body(body)) => write_answer(sock, Status::OK, &body).await,
        Ok(Reply::Sent(_)) => Ok(()),
        Ok(Reply::Close) => return false,
        Err(e) => {
            if e.status != Status::ENOENT {
                tracing::debug!("{peer}: command {cmd} failed: {}", e.status);
            }
            let written = write_answer(sock, e.status, &[]).await;
            if e.close {
                if written.is_ok() {
                    linger_close(sock).await;
                }
                return false;
            }
            written
        }
    };
    written.is_ok()
}

/// Closes after an error answer while the client may still be sending the body: closing with
/// unread bytes would reset the connection and the client could lose the answer (ENOSPC seen
/// as "connection reset"). The write side is shut, then what still arrives is read and
/// dropped for a short, bounded while.
async fn linger_close(sock: &mut PeerStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = sock.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut left: usize = 64 << 20;
    while left > 0 {
        match tokio::time::timeout_at(until, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}
