//! What both daemons share: accept loop, access control, request framing.

pub mod answer;
pub mod frame;
pub mod http;
pub mod listener;
pub mod stream;
pub mod threads;

pub use listener::{serve, shutdown_pair, ConnCounts, ConnectionLimits, Shutdown, ShutdownTrigger};
pub use stream::PeerStream;
pub use threads::ConnectionThreads;
