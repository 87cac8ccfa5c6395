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

use crate::locked::{MutexExt, RwLockExt};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::answer::io;
use super::StorageServer;
use crate::client::Pool;
use crate::file_id::{self};
use crate::protocol::peer::TrunkInfo;
use crate::protocol::report::Brief;
use crate::protocol::Status;
use crate::timefmt::now_unix;
use crate::trunk::space::{Alloc, Block, FreeSpace};
use crate::trunk::SLOT_HEADER_LEN;

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
    fn trunk_file_path(&self, b: &Block) -> Option<PathBuf> {
        let root = &self.paths.paths.get(b.path as usize)?.root;
        Some(root.join(format!("data/{:02X}/{:02X}/{:06}", b.high, b.low, b.trunk_id)))
    }

    /// The leader named `brief` the trunk server (all zero: none). Returns `true` when that
    /// makes this storage the trunk server (the caller then asks the tracker for the trunk id
    /// and calls [`StorageServer::become_trunk_server`]).
    pub fn set_trunk_server(&self, brief: Brief) -> bool {
        let named = (!brief.id.is_empty()).then_some(brief);
        let me = named.as_ref().is_some_and(|b| b.id == self.my_id());
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
        let mut space = FreeSpace::new(self.params().trunk, tracker_id.max(self.init_flag().current_trunk_file_id));
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
        let c = self.params().trunk_compress;
        let last: i64 = self.init_flag().other("trunk_last_compress_time").and_then(|v| v.parse().ok()).unwrap_or(0);
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
        self.trunk.log.replace(&space.compacted(now), self.params().trunk_compress.max_backups)?;
        self.trunk.log.delete_marks()?;
        self.trunk.marks_epoch.fetch_add(1, Ordering::AcqRel);
        self.update_init_flag(|f| f.set_other("trunk_last_compress_time", now.to_string()))?;
        tracing::info!("trunk binlog compressed: {before} -> {} bytes", self.trunk.log.len());
        self.trunk.news.notify_waiters();
        Ok(())
    }

    /// The trunk ids and free megabytes to report (73/74), when this storage is the trunk server.
    pub fn trunk_report(&self) -> Option<(u32, i64)> {
        let space = self.trunk.space();
        space.as_ref().map(|s| (s.current_trunk_id(), (s.free_bytes() >> 20) as i64))
    }

    /// A slot for `content_len` bytes in store path `path`, as the trunk server (blocking: a
    /// new trunk file may have to be created).
    fn alloc_local(&self, path: u8, content_len: u64) -> Result<Option<Block>, Status> {
        let now = now_unix();
        let settings = self.params().trunk;
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Err(Status::EINVAL) };
        // A held slot is released when its writer says so, or when the trunk server restarts
        // (the binlog calls it free): a member that asks and never confirms must not hold
        // trunk space without bound.
        if space.held() >= MAX_HELD {
            tracing::warn!("{MAX_HELD} trunk slots handed out and not confirmed; refusing more until some are");
            return Err(Status::EBUSY);
        }
        space.set_settings(settings);
        for _ in 0..NEW_FILE_TRIES {
            match space.alloc(path, content_len, now) {
                None => return Ok(None),
                Some(Alloc::Slot(slot, mut lines)) => {
                    // The map may lag behind the trunk files (lines of a trunk server that died
                    // before pushing them): a slot that holds a file is never handed out.
                    let occupied = self.occupant(&slot);
                    if let Some(range) = occupied {
                        tracing::warn!("trunk slot {slot:?} holds a file the trunk binlog says is free; kept");
                        space.release(&slot);
                        lines.extend(space.occupy(&range, now));
                    }
                    if let Err(e) = self.trunk.log.append(&lines) {
                        space.release(&slot);
                        return Err(io(e));
                    }
                    self.trunk.news.notify_waiters();
                    if occupied.is_none() {
                        return Ok(Some(slot));
                    }
                }
                Some(Alloc::NewTrunkFile { trunk_id }) => {
                    if self.new_trunk_file(space, path, trunk_id, now)? {
                        tracing::info!("trunk file {trunk_id} created in store path {path}");
                    }
                }
            }
        }
        Err(Status::ENOSPC)
    }

    /// The space a file found at the start of `slot` takes, if one is there: a slot header
    /// that could be C's or ours (type, sizes, time and extension all plausible).
    fn occupant(&self, slot: &Block) -> Option<Block> {
        let f = File::open(self.trunk_file_path(slot)?).ok()?;
        let mut h = [0u8; SLOT_HEADER_LEN as usize];
        f.read_exact_at(&mut h, slot.offset as u64).ok()?;
        let alloc = crate::trunk::plausible_header(&h, slot.offset as u64, f.metadata().ok()?.len(), now_unix())?;
        Some(Block { size: alloc, ..*slot })
    }

    /// `trunk_create_file_advance`: trunk files are created, one store path after another,
    /// until `threshold` bytes of trunk space are free. Returns how many.
    pub fn create_trunk_files_ahead(&self, threshold: u64) -> Result<usize, Status> {
        let now = now_unix();
        let settings = self.params().trunk;
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Ok(0) };
        space.set_settings(settings);
        let mut created = 0;
        let limit = (threshold / settings.trunk_file_size.max(1) as u64 + 1).min(4096) as usize;
        for _ in 0..limit + NEW_FILE_TRIES as usize {
            if space.free_bytes() >= threshold {
                break;
            }
            let path = (created % self.paths.paths.len()) as u8;
            let trunk_id = space.current_trunk_id() + 1;
            created += usize::from(self.new_trunk_file(space, path, trunk_id, now)?);
        }
        self.trunk.log.sync_if_dirty().map_err(io)?;
        self.trunk.news.notify_waiters();
        Ok(created)
    }

    /// Trunk file `trunk_id` in store path `path`, in the next directory, at its full size (C
    /// creates it so), made durable with its entry, and all of it free space (its `A` line
    /// appended). The id is recorded first, as C does, so it is never reused. `false` if a file
    /// of that id is there already (the counter is raised past it).
    fn new_trunk_file(&self, space: &mut FreeSpace, path: u8, trunk_id: u32, now: i64) -> Result<bool, Status> {
        let (high, low) = self.paths.next_dir(&mut fastrand::Rng::new());
        let block = Block { path, high, low, trunk_id, offset: 0, size: space.settings().trunk_file_size };
        let file = self.trunk_file_path(&block).ok_or(Status::EINVAL)?;
        self.update_init_flag(|f| f.current_trunk_file_id = f.current_trunk_file_id.max(trunk_id)).map_err(io)?;
        let created = OpenOptions::new().write(true).create_new(true).open(&file).and_then(|f| {
            f.set_len(block.size as u64)?;
            f.sync_all()?;
            crate::durable::sync_dir(file.parent().unwrap_or(Path::new(".")))
        });
        match created {
            Ok(()) => {
                let line = space.add_trunk_file(path, high, low, trunk_id, now);
                self.trunk.log.append(&[line]).map_err(io)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                space.raise_trunk_id(trunk_id);
                Ok(false)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The held slot is written: it is in use. The line is synced by the writer's round (local
    /// uploads) or before the answer (28 from a member).
    fn confirm_local(&self, slot: &Block) -> Result<(), Status> {
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Err(Status::EINVAL) };
        let Some(line) = space.confirm(slot, now_unix()) else { return Err(Status::ENOENT) };
        if let Err(e) = self.trunk.log.append(&[line]) {
            space.release(slot);
            return Err(io(e));
        }
        self.trunk.news.notify_waiters();
        Ok(())
    }

    /// A slot is free again: a held one whose write failed, or one whose file was deleted.
    fn free_local(&self, slot: &Block) -> Result<(), Status> {
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Err(Status::EINVAL) };
        if space.release(slot) {
            return Ok(());
        }
        let lines = space.free(slot, now_unix());
        self.trunk.log.append(&lines).map_err(io)?;
        self.trunk.news.notify_waiters();
        Ok(())
    }
}
