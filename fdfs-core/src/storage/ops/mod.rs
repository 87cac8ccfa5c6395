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

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::binlog::{Op, Record};
use super::StorageServer;
use crate::file_id::RemoteFilename;
use crate::protocol::Status;

mod links;
mod meta;
mod names;
mod range;
mod remove;
mod upload;

pub(super) use super::answer::{closing, io};
pub use super::answer::{OpError, OpResult};
pub(super) use super::body::Body;

pub use links::create_link;
pub(super) use meta::crc_of;
pub use meta::{file_info, get_metadata, meta_path, set_metadata};
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

    /// Parses a remote filename against our store paths and returns it with its local path.
    pub fn resolve(&self, filename: &str) -> Result<(RemoteFilename, PathBuf), Status> {
        let name = RemoteFilename::parse(filename, Some(self.paths.paths.len())).map_err(|_| Status::EINVAL)?;
        let path = self.paths.local_path(&name).ok_or(Status::EINVAL)?;
        Ok((name, path))
    }

    /// The remote filename of a file's path in one of our store paths (`<root>/data/HH/LL/x`).
    pub fn remote_name_of(&self, path: &Path) -> Option<String> {
        self.paths.remote_name_of(path)
    }

    /// The store path a name lives under (`resolve` checked its index).
    pub fn store_root(&self, name: &RemoteFilename) -> PathBuf {
        self.paths.paths[name.store_path_index as usize].root.clone()
    }

    /// `filename` as a trunk name with its store path, when it names a file kept in a trunk
    /// slot; `None` for regular files and `-m` metadata names.
    pub(super) fn trunk_name(&self, filename: &str) -> Option<(RemoteFilename, PathBuf)> {
        let name = RemoteFilename::parse(filename, Some(self.paths.paths.len())).ok()?;
        crate::trunk::is_trunk_name(&name).then(|| {
            let root = self.store_root(&name);
            (name, root)
        })
    }

    /// What a trunk name reads as here: its slot, a link slot followed to the file it names.
    pub(super) fn open_trunk_content(&self, name: &RemoteFilename) -> Result<Option<crate::trunk::Slot>, Status> {
        let root_of = |i: u8| self.paths.paths.get(i as usize).map(|p| p.root.clone());
        crate::trunk::open_followed(name, self.paths.paths.len(), root_of).map_err(io)
    }

    /// A change made here, as the binlog records it.
    pub(super) fn own_change(&self, timestamp: i64, op: Op, filename: &str, extra: String) -> Record {
        Record { timestamp, op, replica: false, filename: filename.to_owned(), extra }
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

pub(super) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(super) fn at(ts: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64)
}

/// Whether the file a name names is stored here: its regular file, or for a trunk name its slot
/// (a link slot's with the file it names).
fn stored(srv: &StorageServer, name: &RemoteFilename, path: &Path) -> Result<bool, Status> {
    if crate::trunk::is_trunk_name(name) {
        return Ok(srv.open_trunk_content(name)?.is_some());
    }
    Ok(path.is_file())
}
