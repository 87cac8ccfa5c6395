//! What each client command does, one function per command: it takes the decoded request
//! (and the content that follows it, if any) and returns the answer. Every filesystem call
//! runs in the disk layer ([`super::disk`]): changes in writer jobs, which record them in the
//! binlog and are answered after the round that makes them durable; reads on the blocking pool.
//! Every change to an existing file holds that file's lock.
//!
//! An upload (11) walks `upload`: the content received, a name from `names`, the file
//! published in a writer job; with de-duplication on, `links` stores it as a link to the one
//! source that holds those bytes (in trunk mode `super::trunk` does it with slots). `remove`
//! undoes both, `meta` answers the metadata and file-info commands, `range` changes
//! appender files.

use std::sync::atomic::Ordering;

use super::StorageServer;
use crate::protocol::Status;

mod links;
mod meta;
mod names;
mod range;
mod remove;
mod upload;

use super::answer::{closing, io, OpResult};
use super::body::Body;

pub use links::create_link;
pub(super) use meta::crc_of;
pub use meta::{file_info, get_metadata, set_metadata};
pub use range::{append, append_or_modify, appender, modify, regenerate, truncate};
pub(super) use range::{write_range, RangeChange};
pub use remove::delete;
pub(super) use remove::Unlinked;
pub(super) use upload::receive;
pub use upload::{upload, upload_slave};

impl StorageServer {
    pub fn check_group(&self, group: &str) -> Result<(), Status> {
        if group == self.group {
            Ok(())
        } else {
            Err(Status::EINVAL)
        }
    }

    /// After a change made here is committed.
    pub(super) fn changed(&self, timestamp: i64) {
        self.stats.last_source_update.store(timestamp, Ordering::Relaxed);
    }

    /// The timer for a request body under this server's settings.
    pub fn body_timer(&self) -> super::content::BodyTimer {
        super::content::BodyTimer::new(self.config.network_timeout, self.config.min_body_rate)
    }
}
