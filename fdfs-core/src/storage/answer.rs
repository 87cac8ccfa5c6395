//! What a command's function answers: the answer type both daemons share
//! ([`crate::server::answer`]), and the status an IO error is answered with.

use crate::protocol::Status;

pub use crate::server::answer::{closing, OpError, OpResult};

/// The status an IO error is answered with.
pub(crate) fn io(e: std::io::Error) -> Status {
    Status::from_io(&e)
}
