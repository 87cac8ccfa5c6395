use thiserror::Error;

use crate::file_id::FileIdError;
use crate::protocol::{DecodeError, Status};

/// What a client operation can fail with. `Status` carries the server's errno.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr}: timed out")]
    Timeout { addr: String },
    #[error("server answered {status}")]
    Status { status: Status },
    #[error("bad answer from {addr}: {source}")]
    Decode { addr: String, source: DecodeError },
    #[error("bad answer from {addr}: {why}")]
    Protocol { addr: String, why: String },
    #[error(transparent)]
    FileId(#[from] FileIdError),
    #[error("no tracker reachable (last error: {last})")]
    NoTracker { last: Box<ClientError> },
    #[error("local file: {0}")]
    Local(std::io::Error),
}

impl ClientError {
    /// The errno a tool exits with or a server would answer with.
    pub fn status(&self) -> Status {
        match self {
            ClientError::Status { status } => *status,
            ClientError::Io { source, .. } | ClientError::Local(source) => Status::from_io(source),
            ClientError::Timeout { .. } => Status::ETIMEDOUT,
            ClientError::NoTracker { last } => last.status(),
            ClientError::Decode { .. } | ClientError::Protocol { .. } | ClientError::FileId(_) => Status::EINVAL,
        }
    }

    /// A transport failure (try another server), as opposed to an answer.
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Io { .. } | ClientError::Timeout { .. } | ClientError::Protocol { .. })
    }
}

pub type ClientResult<T> = Result<T, ClientError>;
