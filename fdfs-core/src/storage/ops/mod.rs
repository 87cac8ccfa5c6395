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
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::binlog::{Op, Record};
use super::disk::Disk;
use super::StorageServer;
use crate::file_id::RemoteFilename;
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
        let at = self.locate(filename).ok().filter(|at| at.in_slot)?;
        let root = self.store_root(&at.name);
        Some((at.name, root))
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

/// A file name resolved once for a request: the name, its path in our store paths (where a
/// regular file is, and the metadata of any file), and whether its bytes are in a trunk slot.
#[derive(Debug, Clone)]
pub struct Located {
    pub name: RemoteFilename,
    pub path: PathBuf,
    pub in_slot: bool,
}

/// What a client reads of a file: the open file, where its content starts in it, its size
/// and its time (a slot's is its name's).
#[derive(Debug)]
pub struct Opened {
    pub file: std::fs::File,
    pub offset: u64,
    pub size: u64,
    pub mtime: i64,
}

impl StorageServer {
    /// Parses `filename` against our store paths and says where its bytes are.
    pub fn locate(&self, filename: &str) -> Result<Located, Status> {
        let (name, path) = self.resolve(filename)?;
        let in_slot = crate::trunk::is_trunk_name(&name);
        Ok(Located { name, path, in_slot })
    }

    /// Whether the file is stored here: its regular file, or its slot (a link slot with the
    /// file it names). Blocking.
    pub(super) fn is_stored(&self, at: &Located) -> Result<bool, Status> {
        if at.in_slot {
            return Ok(self.open_trunk_content(&at.name)?.is_some());
        }
        Ok(at.path.is_file())
    }

    /// Opens what a client reads: a slot (a link slot followed once) on the blocking pool, a
    /// regular file through [`Disk::open_for_read`] (one the kernel has cached opens on this
    /// thread). EISDIR for a directory, ENOENT for nothing.
    pub(in crate::storage) async fn open_located(self: &Arc<Self>, at: Located) -> Result<Opened, Status> {
        if at.in_slot {
            let s = self.clone();
            return Disk::read(move || {
                let slot = s.open_trunk_content(&at.name)?.ok_or(Status::ENOENT)?;
                Ok(Opened { file: slot.file, offset: slot.content_offset, size: slot.size, mtime: slot.mtime as i64 })
            })
            .await;
        }
        let file = Disk::open_for_read(at.path).await.map_err(io)?;
        // The inode is in memory once the file is open: no disk read.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Status::EISDIR);
        }
        let mtime = meta.modified().map(unix).unwrap_or(0);
        Ok(Opened { file, offset: 0, size: meta.len(), mtime })
    }
}
