//! What a command's function answers when it fails: the status, and whether the connection
//! closes. Shared by the client commands (`ops`), the peer commands (`replica`) and trunk mode.

use crate::protocol::Status;

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

pub type OpResult<T> = Result<T, OpError>;

/// An error after which the connection closes (content may be left unread).
pub(crate) fn closing(status: Status) -> OpError {
    OpError { status, close: true }
}

/// The status an IO error is answered with.
pub(crate) fn io(e: std::io::Error) -> Status {
    Status::from_io(&e)
}
