//! Trunk mode on the storage (PROTOCOL.md §4.15, §5.7, §7.8): small uploads go into slots of
//! trunk files, in C's layout, so C and fastdfs-rs storages of one group can share them.
//!
//! The leader names one storage per group the trunk server; only it allocates. It keeps the
//! free blocks in memory ([`FreeSpace`]) and persists them in the trunk binlog
//! (`data/trunk/binlog`), which it pushes to the other members (30 TRUNK_SYNC_BINLOG) so any
//! of them can take over. Another member asks it for a slot (27), writes the file into its own
//! copy of the trunk file, and confirms (28); deletes free the slot (29).
//!
//! Never lose data: a slot is in use only once its confirmation (`D` line) is durable, and an
//! upload is answered only after that. Locally the confirmation is written before the writer's
//! round, which syncs the trunk binlog with the batch; a member's confirmation (28) is synced
//! by the trunk server before it answers, and the member sends it before its own round.
//!
//! An upload into a slot walks the rooms in this order: `remote` reserves a slot (the local
//! allocator below, or 27 to the trunk server), `slots` writes the content and the header in
//! a writer job and records the name, `remote` confirms a member's slot (28) and waits until
//! the members hold the trunk binlog, which `push` sends them. `links` is the same walk for
//! de-duplicated content (a link slot and a source slot). `handlers` answers the trunk
//! commands of the other members and the tracker; `super::trunk_log` is the trunk binlog on disk;
//! `schedule` and `reclaim` are the trunk server's background work.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::answer::io;
use super::StorageServer;
use crate::client::Pool;
use crate::file_id;
use crate::locked::{MutexExt, RwLockExt};
use crate::protocol::peer::TrunkInfo;
use crate::protocol::report::Brief;
use crate::timefmt::now_unix;
use crate::trunk::space::{Block, FreeSpace};

mod allocator;
mod handlers;
mod links;

mod push;
mod reclaim;
mod remote;
mod schedule;
mod slots;

pub use super::trunk_log::TrunkLog;
pub(super) use handlers::{alloc_space, binlog_size, delete_marks, receive_binlog, restart_binlog, slot_done};
pub(super) use links::{create_link_slot, upload_linked};
pub use push::push_loop;
pub(super) use reclaim::receive_removed;
pub use reclaim::reclaim_loop;
pub(super) use remote::{freed, reserve};
pub use schedule::schedule_loop;
pub(super) use slots::{fits_slot, upload};

/// Tries at a trunk file id that is not taken on disk yet.
const NEW_FILE_TRIES: u32 = 16;
/// Most slots handed out and not yet confirmed (uploads in flight, group-wide).
const MAX_HELD: usize = 2048;

/// The storage's trunk state: its binlog, the free space while it is the trunk server, and who
/// the trunk server is.
#[derive(Debug)]
pub struct Trunk {
    pub log: Arc<TrunkLog>,
    /// The trunk files retired (`delete_unused_trunk_files`), to remove on every member.
    removed: reclaim::Removed,
    space: Mutex<Option<FreeSpace>>,
    server: RwLock<Option<Brief>>,
    /// Woken when the binlog grows or the trunk server changes (the pusher waits on it).
    news: tokio::sync::Notify,
    /// Connections to the trunk server (27/28/29).
    pool: Pool,
    /// While trunk server: how much of the trunk binlog every reachable ACTIVE member holds.
    pushed: tokio::sync::watch::Sender<u64>,
    /// Bumped when the mark files are deleted (32, a compression): the pusher rereads them.
    marks_epoch: std::sync::atomic::AtomicU64,
}

impl Trunk {
    pub fn open(dir: &Path, config: &crate::config::StorageConfig) -> std::io::Result<Self> {
        let (connect_timeout, network_timeout) = (config.connect_timeout, config.network_timeout);
        Ok(Self {
            log: Arc::new(TrunkLog::open(dir)?),
            removed: reclaim::Removed::open(dir)?,
            space: Mutex::new(None),
            server: RwLock::new(None),
            news: tokio::sync::Notify::new(),
            pool: Pool::new(connect_timeout, network_timeout, Duration::from_secs(3600), true)
                .bound_to(config.client_bind_ip()),
            pushed: tokio::sync::watch::Sender::new(0),
            marks_epoch: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn space(&self) -> std::sync::MutexGuard<'_, Option<FreeSpace>> {
        self.space.locked()
    }

    /// The group's trunk server, as the leader last said.
    pub fn server(&self) -> Option<Brief> {
        self.server.read_locked().clone()
    }

    pub fn is_server(&self) -> bool {
        self.space().is_some()
    }
}

/// A slot reserved for an upload: by this storage (the trunk server) or by the trunk server
/// at `remote`.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub slot: Block,
    remote: Option<String>,
}

fn info_of(b: &Block) -> TrunkInfo {
    TrunkInfo {
        store_path_index: b.path,
        sub_path_high: b.high,
        sub_path_low: b.low,
        trunk_file_id: b.trunk_id as i32,
        offset: b.offset as i32,
        size: b.size as i32,
    }
}

fn block_of(i: &TrunkInfo) -> Option<Block> {
    Some(Block {
        path: i.store_path_index,
        high: i.sub_path_high,
        low: i.sub_path_low,
        trunk_id: u32::try_from(i.trunk_file_id).ok()?,
        offset: u32::try_from(i.offset).ok()?,
        size: u32::try_from(i.size).ok().filter(|&s| s > 0)?,
    })
}

/// The slot a trunk name says its file is in.
pub fn block_of_name(name: &file_id::RemoteFilename) -> Option<Block> {
    let loc = name.trunk_location()?;
    Some(Block {
        path: name.store_path_index,
        high: name.high,
        low: name.low,
        trunk_id: loc.trunk_id,
        offset: loc.offset,
        size: loc.size,
    })
}

impl StorageServer {
    /// The leader named `brief` the trunk server (all zero: none). Returns `true` when that
    /// makes this storage the trunk server (the caller then asks the tracker for the trunk id
    /// and calls [`StorageServer::become_trunk_server`]).
    pub fn set_trunk_server(&self, brief: Brief) -> bool {
        let named = (!brief.id.is_empty()).then_some(brief);
        let me = named.as_ref().is_some_and(|b| b.id == self.identity.my_id());
        let changed = {
            let mut cur = self.trunk.server.write_locked();
            let changed = *cur != named;
            *cur = named.clone();
            changed
        };
        if changed {
            match &named {
                Some(b) => tracing::info!("trunk server of {}: {} ({}:{})", self.group, b.id, b.ip, b.port),
                None => tracing::info!("{} has no trunk server", self.group),
            }
            self.trunk.news.notify_waiters();
        }
        if !me && self.trunk.space().take().is_some() {
            tracing::info!("no longer the trunk server");
        }
        me && !self.trunk.is_server()
    }

    /// Takes the trunk server's role: the free space is rebuilt from the trunk binlog, and
    /// trunk ids continue after `tracker_id` and ours, whichever is higher.
    pub fn become_trunk_server(&self, tracker_id: u32) -> std::io::Result<()> {
        let mut space = FreeSpace::new(
            self.identity.params().trunk,
            tracker_id.max(self.identity.init_flag().current_trunk_file_id),
        );
        let (bad, skipped) = self.trunk.log.replay_into(&mut space)?;
        if bad + skipped > 0 {
            tracing::warn!("trunk binlog: {bad} line(s) unreadable, {skipped} not matching the free space; skipped");
        }
        self.retire_listed(&mut space)?;
        tracing::info!(
            "trunk server of {}: {} MB free in trunk files up to id {}",
            self.group,
            space.free_bytes() >> 20,
            space.current_trunk_id()
        );
        // Compressed before the space is published: no slot can be handed out (and no line
        // appended) between the replay and the compression, so the backup is the binlog as it
        // was taken over.
        let c = self.identity.params().trunk_compress;
        let last: i64 =
            self.identity.init_flag().other("trunk_last_compress_time").and_then(|v| v.parse().ok()).unwrap_or(0);
        if c.min_interval > 0 && now_unix() - last >= c.min_interval {
            self.compress_with(&space)?;
        }
        *self.trunk.space() = Some(space);
        self.trunk.news.notify_waiters();
        Ok(())
    }

    /// Compresses the trunk binlog (the trunk server only): the free space as it stands, in as
    /// few lines as it takes; every member is then sent the new one whole (33, 30).
    pub fn compress_trunk_binlog(&self) -> std::io::Result<bool> {
        let guard = self.trunk.space();
        let Some(space) = guard.as_ref() else { return Ok(false) };
        // Under the free-space lock: no line is appended while the binlog is replaced.
        self.compress_with(space)?;
        Ok(true)
    }

    /// Replaces the trunk binlog by `space` in as few lines as it takes (the old one kept as a
    /// backup), then has every member sent the new one whole.
    fn compress_with(&self, space: &FreeSpace) -> std::io::Result<()> {
        let now = now_unix();
        let before = self.trunk.log.len();
        self.trunk.log.replace(&space.compacted(now), self.identity.params().trunk_compress.max_backups)?;
        self.trunk.log.delete_marks()?;
        self.trunk.marks_epoch.fetch_add(1, Ordering::AcqRel);
        self.update_init_flag(|f| f.set_other("trunk_last_compress_time", now.to_string()))?;
        tracing::info!("trunk binlog compressed: {before} -> {} bytes", self.trunk.log.len());
        self.trunk.news.notify_waiters();
        Ok(())
    }
}
