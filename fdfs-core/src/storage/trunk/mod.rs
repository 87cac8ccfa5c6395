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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::AsyncRead;

use super::binlog::Op;
use super::content::{Content, SMALL};
use super::dedup::Signature;
use super::disk::Writer;
use super::disk::{Change, Disk, WriteFence};
use super::ops::{closing, io, Body, OpResult};
use super::StorageServer;
use crate::client::Connection;
use crate::client::Pool;
use crate::file_id::{self, NameKind, NewName, RemoteFilename, TrunkLocation};
use crate::protocol::peer::{TrunkAllocReq, TrunkInfo, TrunkSlotReq};
use crate::protocol::report::Brief;
use crate::protocol::{Command, Profile, Status};
use crate::server::Shutdown;
use crate::timefmt::now_unix;
use crate::trunk::space::{Alloc, Block, FreeSpace, SpaceRecord};
use crate::trunk::{SlotKind, SLOT_HEADER_LEN};

mod reclaim;
pub(super) use reclaim::receive_removed;
pub use reclaim::reclaim_loop;

/// Most bytes of trunk binlog one TRUNK_SYNC_BINLOG carries: well under any `buff_size` a
/// receiver reads a request into.
const PUSH_CHUNK: usize = 32 << 10;
/// Tries at a trunk file id that is not taken on disk yet.
const NEW_FILE_TRIES: u32 = 16;
/// Most slots handed out and not yet confirmed (uploads in flight, group-wide).
const MAX_HELD: usize = 2048;

/// `data/trunk/binlog` (or another log of that directory, `removed`): appended under a lock,
/// synced when dirty, pushed to the members from a mark file per member.
#[derive(Debug)]
pub struct TrunkLog {
    dir: PathBuf,
    /// The file's name in `dir`.
    name: &'static str,
    file: Mutex<File>,
    len: AtomicU64,
    dirty: AtomicBool,
}

impl TrunkLog {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_named(dir, "binlog")
    }

    fn open_named(dir: &Path, name: &'static str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        crate::durable::remove_stale_temps(dir);
        let file = OpenOptions::new().create(true).append(true).read(true).open(dir.join(name))?;
        let len = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            name,
            file: Mutex::new(file),
            len: AtomicU64::new(len),
            dirty: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, records: &[SpaceRecord]) -> std::io::Result<()> {
        let text: String = records.iter().map(SpaceRecord::line).collect();
        self.append_raw(text.as_bytes())
    }

    /// Appends whole lines (a trunk server's, received with 30).
    pub fn append_raw(&self, text: &[u8]) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let mut f = self.lock();
        f.write_all(text)?;
        self.len.fetch_add(text.len() as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes every line appended so far durable (nothing to do if none was).
    pub fn sync_if_dirty(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let f = self.lock().try_clone()?;
        f.sync_data().inspect_err(|_| self.dirty.store(true, Ordering::Release))
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whole lines from `offset`, at most `max` bytes (a longer line is returned whole).
    pub fn read_from(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let mut f = self.lock().try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take(max as u64).read_to_end(&mut buf)?;
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(end) => buf.truncate(end + 1),
            None => buf.clear(),
        }
        Ok(buf)
    }

    /// Replays the binlog into `space`, read line by line (its size does not matter); returns
    /// how many lines did not parse and how many did not fit the free space.
    pub fn replay_into(&self, space: &mut FreeSpace) -> std::io::Result<(usize, usize)> {
        use std::io::BufRead;
        let (mut bad, mut skipped) = (0, 0);
        let mut lines = std::io::BufReader::new(File::open(self.dir.join(self.name))?).split(b'\n');
        while let Some(line) = lines.next().transpose()? {
            let line = String::from_utf8_lossy(&line);
            if line.trim().is_empty() {
                continue;
            }
            match SpaceRecord::parse(&line) {
                Some(r) => skipped += usize::from(!space.replay(&r)),
                None => bad += 1,
            }
        }
        Ok((bad, skipped))
    }

    /// 33: the trunk server is about to send its whole binlog. The old one is kept as
    /// `binlog.<YYYYMMDDhhmmss>`, as C keeps it (whatever `max_backups` says), and only the
    /// newest `max_backups` (at least this one) of those, so repeated pushes do not pile up.
    pub fn restart(&self, max_backups: usize) -> std::io::Result<()> {
        let mut f = self.lock();
        let (y, mo, d, h, mi, sec) = crate::timefmt::civil(now_unix());
        let backup = format!("binlog.{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}");
        let live = self.dir.join("binlog");
        if !self.is_empty() {
            std::fs::rename(&live, self.dir.join(backup))?;
        }
        *f = OpenOptions::new().create(true).append(true).read(true).truncate(false).open(&live)?;
        f.set_len(0)?;
        crate::durable::sync_dir(&self.dir)?;
        self.len.store(0, Ordering::Relaxed);
        drop(f);
        self.prune_backups(max_backups.max(1))
    }

    /// Compression: `records` become the binlog (written beside it and renamed over it); the
    /// old one is kept as `binlog.<YYYYMMDDhhmmss>`, and only the newest `max_backups` of those.
    pub fn replace(&self, records: &[SpaceRecord], max_backups: usize) -> std::io::Result<()> {
        let text: String = records.iter().map(SpaceRecord::line).collect();
        let mut f = self.lock();
        let live = self.dir.join("binlog");
        let mut next = crate::durable::TempFile::create_in(&self.dir, "binlog")?;
        next.file().write_all(text.as_bytes())?;
        if max_backups > 0 {
            let (y, mo, d, h, mi, sec) = crate::timefmt::civil(now_unix());
            std::fs::hard_link(&live, self.dir.join(format!("binlog.{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}")))
                .or_else(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })?;
        }
        next.replace(&live)?;
        *f = OpenOptions::new().append(true).read(true).open(&live)?;
        self.len.store(text.len() as u64, Ordering::Relaxed);
        self.dirty.store(false, Ordering::Release);
        drop(f);
        self.prune_backups(max_backups)
    }

    /// Keeps the newest `max_backups` old binlogs.
    fn prune_backups(&self, max_backups: usize) -> std::io::Result<()> {
        let mut backups: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_backup_name))
            .collect();
        backups.sort();
        let extra = backups.len().saturating_sub(max_backups);
        for old in &backups[..extra] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }

    /// The binlog's mark file is C's (`<peer>.mark`); another log's is `<peer>.<name>.mark`.
    fn mark_name(&self, peer: &str) -> String {
        match self.name {
            "binlog" => format!("{peer}.mark"),
            other => format!("{peer}.{other}.mark"),
        }
    }

    fn mark_path(&self, peer: &str) -> PathBuf {
        self.dir.join(self.mark_name(peer))
    }

    /// How far the binlog was pushed to `peer` (`binlog_offset=N`), 0 if never.
    fn mark(&self, peer: &str) -> u64 {
        let text = std::fs::read_to_string(self.mark_path(peer)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("binlog_offset="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn save_mark(&self, peer: &str, offset: u64) -> std::io::Result<()> {
        crate::durable::write_atomic(&self.dir, &self.mark_name(peer), format!("binlog_offset={offset}\n").as_bytes())
    }

    /// 32: every push restarts from the beginning (the caller bumps the pusher's epoch).
    fn delete_marks(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "mark") {
                std::fs::remove_file(p)?;
            }
        }
        Ok(())
    }
}

/// `binlog.<YYYYMMDDhhmmss>`: an old trunk binlog kept as a backup.
fn is_backup_name(name: &str) -> bool {
    name.strip_prefix("binlog.").is_some_and(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()))
}

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
        self.space.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group's trunk server, as the leader last said.
    pub fn server(&self) -> Option<Brief> {
        self.server.read().unwrap_or_else(|e| e.into_inner()).clone()
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
            let mut cur = self.trunk.server.write().unwrap_or_else(|e| e.into_inner());
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
        *self.trunk.space() = Some(space);
        self.trunk.news.notify_waiters();
        let c = self.params().trunk_compress;
        let last: i64 = self.init_flag().other("trunk_last_compress_time").and_then(|v| v.parse().ok()).unwrap_or(0);
        if c.min_interval > 0 && now_unix() - last >= c.min_interval {
            self.compress_trunk_binlog()?;
        }
        Ok(())
    }

    /// Compresses the trunk binlog (the trunk server only): the free space as it stands, in as
    /// few lines as it takes; every member is then sent the new one whole (33, 30).
    pub fn compress_trunk_binlog(&self) -> std::io::Result<bool> {
        let guard = self.trunk.space();
        let Some(space) = guard.as_ref() else { return Ok(false) };
        let now = now_unix();
        let before = self.trunk.log.len();
        self.trunk.log.replace(&space.compacted(now), self.params().trunk_compress.max_backups)?;
        drop(guard);
        self.trunk.log.delete_marks()?;
        self.trunk.marks_epoch.fetch_add(1, Ordering::AcqRel);
        self.update_init_flag(|f| f.set_other("trunk_last_compress_time", now.to_string()))?;
        tracing::info!("trunk binlog compressed: {before} -> {} bytes", self.trunk.log.len());
        self.trunk.news.notify_waiters();
        Ok(true)
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

/// Waits until the other members hold the trunk binlog as it stands (bounded: a member that
/// stops answering is left out by the pusher). A slot is answered as in use only then, so
/// whichever member takes over as trunk server knows of it and never hands it out again.
async fn until_pushed(srv: &StorageServer) {
    let upto = srv.trunk.log.len();
    let mut rx = srv.trunk.pushed.subscribe();
    srv.trunk.news.notify_waiters();
    let limit = srv.config.network_timeout.clamp(Duration::from_secs(1), Duration::from_secs(10));
    if tokio::time::timeout(limit, rx.wait_for(|&p| p >= upto)).await.is_err() {
        tracing::warn!("the trunk binlog did not reach every member within {limit:?}; answering anyway");
    }
}

fn unreachable_trunk_server(e: impl std::fmt::Display, what: &str) -> Status {
    tracing::warn!("trunk server: {what}: {e}");
    Status::EAGAIN
}

/// Asks the trunk server at `addr`; a connection goes back to the pool only after an answer.
async fn call_trunk_server(
    srv: &StorageServer,
    addr: &str,
    cmd: Command,
    status: u8,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let mut conn: Connection = srv.trunk.pool.get(addr).await.map_err(|e| unreachable_trunk_server(e, "connect"))?;
    match conn.call_with_status(cmd, status, body).await {
        Ok(b) => {
            srv.trunk.pool.put(conn);
            Ok(b.to_vec())
        }
        Err(crate::client::ClientError::Status { status }) => {
            srv.trunk.pool.put(conn);
            Err(status)
        }
        Err(e) => Err(unreachable_trunk_server(e, &format!("{cmd:?}"))),
    }
}

/// A slot for an upload of `content_len` bytes to store path `path`, or `None` when the file
/// is to be a regular file: trunk files off, too large for a slot, or no trunk server known
/// (then the file is stored as a regular file, which every reader accepts, rather than refused).
pub(super) async fn reserve(
    srv: &Arc<StorageServer>,
    path: usize,
    content_len: u64,
) -> Result<Option<Reserved>, Status> {
    let params = srv.params();
    if !params.use_trunk_file || params.trunk.slot_size(content_len).is_none() {
        return Ok(None);
    }
    let Some(server) = srv.trunk.server() else { return Ok(None) };
    let path = u8::try_from(path).map_err(|_| Status::EINVAL)?;
    if server.id == srv.my_id() {
        let s = srv.clone();
        return match Disk::read(move || s.alloc_local(path, content_len)).await {
            Ok(slot) => Ok(slot.map(|slot| Reserved { slot, remote: None })),
            // Too many slots held: a regular file, as when a remote trunk server refuses.
            Err(Status::EBUSY) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let addr = crate::config::join_host_port(&server.ip, server.port as u16);
    let req = TrunkAllocReq {
        group: srv.group.clone(),
        file_size: i32::try_from(content_len + SLOT_HEADER_LEN).map_err(|_| Status::EINVAL)?,
        store_path_index: path,
    };
    let body = match call_trunk_server(srv, &addr, Command::TrunkAllocSpace, 0, &req.encode(Profile::CLASSIC)).await {
        Ok(b) => b,
        Err(s) => {
            tracing::warn!("trunk server {addr} refused a slot ({s:?}); storing a regular file");
            return Ok(None);
        }
    };
    let slot = TrunkInfo::decode(&body, Profile::CLASSIC).ok().and_then(|i| block_of(&i)).filter(|b| b.path == path);
    match slot {
        Some(slot) if (slot.size as u64) >= content_len + SLOT_HEADER_LEN => {
            Ok(Some(Reserved { slot, remote: Some(addr) }))
        }
        _ => {
            tracing::warn!("trunk server {addr} answered a slot that does not fit; storing a regular file");
            Ok(None)
        }
    }
}

/// Gives a reserved slot back: released if still held, freed if confirmed.
async fn give_back(srv: &Arc<StorageServer>, r: &Reserved, confirmed: bool) {
    let result = match &r.remote {
        None => {
            let (s, slot) = (srv.clone(), r.slot);
            Disk::read(move || s.free_local(&slot)).await
        }
        Some(addr) => {
            let req = TrunkSlotReq { group: srv.group.clone(), info: info_of(&r.slot) }.encode(Profile::CLASSIC);
            let (cmd, status) =
                if confirmed { (Command::TrunkFreeSpace, 0) } else { (Command::TrunkAllocConfirm, Status::EIO.0) };
            call_trunk_server(srv, addr, cmd, status, &req).await.map(drop)
        }
    };
    if let Err(s) = result {
        tracing::warn!(
            "trunk slot {:?} not given back ({s:?}); its space stays unused until the trunk binlog is rebuilt",
            r.slot
        );
    }
}

/// A trunk file for writing; a member that has not received one yet creates it, at its full
/// size as C does (`true`: created now, its directory entry must be synced).
fn open_trunk_file(path: &Path, full_size: u64) -> std::io::Result<(File, bool)> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    let created = f.metadata()?.len() == 0;
    if created {
        f.set_len(full_size)?;
    }
    Ok((f, created))
}

/// What a slot is filled with in a writer job.
enum Fill<'a> {
    /// Nothing more: the content was streamed into the trunk file as it was received.
    Streamed,
    Bytes(&'a [u8]),
    /// Received content in a temp file, copied into the slot.
    File(&'a File),
}

/// Fills `r`'s slot in a writer job: the content, then `header` (the slot holds its name only
/// once both are there), confirmed here when this storage is the trunk server. Returns the
/// trunk file to sync and, when the trunk file was created now, its path (its directory entry
/// to sync too).
fn fill_slot(
    srv: &StorageServer,
    w: &Writer,
    r: &Reserved,
    fill: Fill<'_>,
    header: &[u8; SLOT_HEADER_LEN as usize],
) -> Result<(File, Option<PathBuf>), Status> {
    let path = srv.trunk_file_path(&r.slot).ok_or(Status::EINVAL)?;
    let (mut file, created) = open_trunk_file(&path, srv.params().trunk.trunk_file_size as u64).map_err(io)?;
    let data_at = r.slot.offset as u64 + SLOT_HEADER_LEN;
    match fill {
        Fill::Streamed => {}
        Fill::Bytes(b) => {
            file.write_all_at(b, data_at).map_err(io)?;
            w.wrote(&file, b.len() as u64).map_err(io)?;
        }
        Fill::File(src) => {
            let mut src = src.try_clone().map_err(io)?;
            src.rewind().map_err(io)?;
            file.seek(SeekFrom::Start(data_at)).map_err(io)?;
            let n = std::io::copy(&mut src, &mut file).map_err(io)?;
            w.wrote(&file, n).map_err(io)?;
        }
    }
    file.write_all_at(header, r.slot.offset as u64).map_err(io)?;
    if r.remote.is_none() {
        srv.confirm_local(&r.slot)?;
    }
    Ok((file, created.then_some(path)))
}

/// A member's slot is confirmed (28) before the writer's round: once the upload is answered
/// the slot is the trunk server's record of a file in use, whatever happens to either of us.
async fn confirm_remote(srv: &StorageServer, r: &Reserved) -> Result<(), Status> {
    let Some(addr) = &r.remote else { return Ok(()) };
    let req = TrunkSlotReq { group: srv.group.clone(), info: info_of(&r.slot) }.encode(Profile::CLASSIC);
    call_trunk_server(srv, addr, Command::TrunkAllocConfirm, 0, &req).await.map(drop).map_err(|s| {
        tracing::warn!("trunk server {addr} did not confirm slot {:?}: {s:?}", r.slot);
        Status::EAGAIN
    })
}

/// A slot whose write failed: its header cleared first, so no later file in the slot can be
/// mistaken for this one, then given back (a local slot released if still held, freed if
/// confirmed; a member's was confirmed before the round).
async fn abandon(srv: &Arc<StorageServer>, r: &Reserved) {
    if let Some(path) = srv.trunk_file_path(&r.slot) {
        let offset = r.slot.offset as u64;
        let _ = Disk::read(move || {
            let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.write_all_at(&[0u8; SLOT_HEADER_LEN as usize], offset).map_err(io)
        })
        .await;
    }
    give_back(srv, r, true).await;
}

/// The name of a file put into `slot`: `size` and `crc32` as the name is to carry them.
fn slot_name(srv: &StorageServer, slot: &Block, (size, crc32): (u64, u32), ext: &str, ts: i64) -> RemoteFilename {
    let new = NewName {
        source: srv.source(),
        timestamp: ts as u32,
        size,
        crc32,
        kind: NameKind::Trunk(TrunkLocation { trunk_id: slot.trunk_id, offset: slot.offset, size: slot.size }),
        ext,
        store_path_index: slot.path,
        high: slot.high,
        low: slot.low,
    };
    file_id::generate(&new, &mut fastrand::Rng::new())
}

fn header_of(name: &RemoteFilename, kind: SlotKind) -> Result<[u8; SLOT_HEADER_LEN as usize], Status> {
    let loc = name.trunk_location().ok_or(Status::EINVAL)?;
    Ok(crate::trunk::expected_header(name, &loc, kind))
}

/// 11 into a trunk slot: the content is written into the slot (streamed there when large),
/// the slot confirmed, and the name recorded in one of the writer's rounds.
pub(super) async fn upload<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    r: Reserved,
    ext: &str,
    content: &mut Content<'_, R>,
    ts: i64,
) -> OpResult<String> {
    let slot = r.slot;
    let Some(trunk_path) = srv.trunk_file_path(&slot) else { return Err(Status::EINVAL.into()) };
    let size = content.left();
    let data_at = slot.offset as u64 + SLOT_HEADER_LEN;
    let received = async {
        if size <= SMALL {
            let (bytes, crc) = content.read_all().await?;
            return Ok((Some(bytes), crc));
        }
        let (p, full) = (trunk_path.clone(), srv.params().trunk.trunk_file_size as u64);
        let (file, _) =
            tokio::task::spawn_blocking(move || open_trunk_file(&p, full)).await.map_err(std::io::Error::other)??;
        srv.disk.stream_into(Arc::new(file), data_at, content, &WriteFence::default()).await?;
        Ok::<_, std::io::Error>((None, content.crc()))
    }
    .await;
    let (bytes, crc) = match received {
        Ok(v) => v,
        Err(e) => {
            give_back(srv, &r, false).await;
            return Err(closing(io(e)));
        }
    };
    let name = slot_name(srv, &slot, (size, crc), ext, ts);
    let header = header_of(&name, SlotKind::File)?;
    confirm_remote(srv, &r).await?;
    let (s, name_text, reserved) = (srv.clone(), name.to_string(), r.clone());
    let stored = srv
        .disk
        .write(slot.path as usize, move |w| {
            let fill = bytes.as_deref().map_or(Fill::Streamed, Fill::Bytes);
            let (file, created) = fill_slot(&s, w, &reserved, fill, &header)?;
            let record = s.own_change(ts, Op::Create, &name_text, String::new());
            let change = Change::new(name_text).record(record).sync_file(file);
            Ok(match created {
                Some(path) => change.sync_parent(&path),
                None => change,
            })
        })
        .await;
    after_round(srv, stored, std::slice::from_ref(&r)).await
}

/// `source` if it holds content of `size` bytes in a trunk slot (what a link slot may name:
/// C's readers follow a link slot only to another slot).
fn held_in_slot(srv: &StorageServer, source: Option<String>, size: u64) -> Option<String> {
    source.filter(|s| matches!(srv.held_source(s, size), Some(super::ops::Held::Slot)))
}

/// Whether content of `size` bytes goes into a trunk slot (trunk files on, small enough).
pub(super) fn fits_slot(srv: &StorageServer, size: u64) -> bool {
    let params = srv.params();
    params.use_trunk_file && params.trunk.slot_size(size).is_some()
}

/// The longest link text a link slot holds: a trunk source's filename (`Mxx/HH/LL/` + 50).
const LINK_TEXT_LEN: u64 = file_id::TRUNK_FILENAME_LEN as u64;

/// 11 with de-duplication, for content that goes into trunk slots (received and signed
/// already): C's layout in trunk mode. The file ID is a link slot whose text names the source,
/// a slot holding the content under a name no client is given; a repeated upload writes only
/// a link slot. `Ok(Err(body))` when no slot can be had (the caller stores it as regular files).
///
/// The link's name carries the link text's length as its size (C's readers check the slot's
/// header against the name and read that many bytes of text) and the content's CRC32.
pub(super) async fn upload_linked(
    srv: &Arc<StorageServer>,
    index: usize,
    body: Body,
    (size, crc): (u64, u32),
    sig: Signature,
    ext: &str,
    ts: i64,
) -> OpResult<Result<String, Body>> {
    let Some(dedup) = srv.dedup.as_ref() else { return Ok(Err(body)) };
    // The content is read already: a refusal need not close the connection.
    let Some(link_r) = reserve(srv, index, LINK_TEXT_LEN).await? else { return Ok(Err(body)) };
    // A slot for the content too, unless it is held already (checked again in the job).
    let peeked = dedup.peek_source(index as u8, &sig);
    let content_r = match peeked.map(|source| held_in_slot(srv, source, size)) {
        Ok(Some(_)) => None,
        _ => match reserve(srv, index, size).await {
            Ok(Some(r)) => Some(r),
            other => {
                give_back(srv, &link_r, false).await;
                other?;
                return Ok(Err(body));
            }
        },
    };
    let reserved: Vec<Reserved> = std::iter::once(link_r.clone()).chain(content_r.clone()).collect();
    for r in &reserved {
        if let Err(status) = confirm_remote(srv, r).await {
            for r in &reserved {
                give_back(srv, r, true).await;
            }
            return Err(status.into());
        }
    }
    let (s, ext) = (srv.clone(), ext.to_owned());
    let (lr, cr) = (link_r.clone(), content_r.clone());
    let stored = srv
        .disk
        .write(index, move |w| {
            let dedup = s.dedup.as_ref().ok_or(Status::EINVAL)?;
            // The source: held already (one more reference), or the content put into its slot.
            let (source, new_source) = dedup.update(|tx| {
                if let Some(source) = held_in_slot(&s, tx.source_of(index as u8, &sig)?, size) {
                    tx.add_ref(&source)?;
                    return Ok((source, None));
                }
                // Reserved only when the content was not held a moment ago.
                let cr = cr.as_ref().ok_or(Status::EAGAIN)?;
                let source = slot_name(&s, &cr.slot, (size, crc), &ext, ts);
                let fill = match &body {
                    Body::Bytes(b) => Fill::Bytes(b),
                    Body::File(t) => Fill::File(t.file_ref()),
                };
                let filled = fill_slot(&s, w, cr, fill, &header_of(&source, SlotKind::File)?)?;
                let source = source.to_string();
                tx.insert(&source, index as u8, &sig, 1)?;
                Ok((source, Some(filled)))
            })?;
            let used = new_source.is_some();
            Ok(link_slot_change(&s, w, &lr, source, (crc, &ext, ts), new_source)?.map(|name| (name, used)))
        })
        .await;
    let (name, content_used) = after_round(srv, stored, &reserved).await?;
    if let (Some(r), false) = (&content_r, content_used) {
        give_back(srv, r, true).await;
    }
    srv.changed(ts);
    Ok(Ok(name))
}

/// The link slot to `source` written into `lr`, named fresh (with the link text's length and
/// `crc32`), and the change recording it (`L link source`, after the source's `C` when the
/// source is new: its trunk file and the directory of a new one, to sync). The reference to
/// `source` taken in the index is given back if the link is not made or not committed.
fn link_slot_change(
    s: &Arc<StorageServer>,
    w: &Writer,
    lr: &Reserved,
    source: String,
    (crc32, ext, ts): (u32, &str, i64),
    new_source: Option<(File, Option<PathBuf>)>,
) -> Result<Change<String>, Status> {
    let release = {
        let (s, source) = (s.clone(), source.clone());
        move || {
            if let Some(d) = &s.dedup {
                let _ = d.update(|tx| tx.release(&source));
            }
        }
    };
    let link = slot_name(s, &lr.slot, (source.len() as u64, crc32), ext, ts);
    let linked = header_of(&link, SlotKind::Link)
        .and_then(|header| fill_slot(s, w, lr, Fill::Bytes(source.as_bytes()), &header));
    let (file, created) = match linked {
        Ok(v) => v,
        Err(status) => {
            release();
            return Err(status);
        }
    };
    let link = link.to_string();
    let mut change = Change::new(link.clone());
    let mut dirs = Vec::new();
    if let Some((source_file, source_created)) = new_source {
        change = change.record(s.own_change(ts, Op::Create, &source, String::new())).sync_file(source_file);
        dirs.extend(source_created);
    }
    change = change.record(s.own_change(ts, Op::Link, &link, source)).sync_file(file);
    dirs.extend(created);
    for p in &dirs {
        change = change.sync_parent(p);
    }
    Ok(change.settle(move |ok| {
        if !ok {
            release();
        }
    }))
}

/// After the writer's round of a change that filled `reserved` slots: on success the trunk
/// binlog pushed to the members first when this storage allocated them; on failure every
/// slot abandoned.
async fn after_round<T>(srv: &Arc<StorageServer>, stored: Result<T, Status>, reserved: &[Reserved]) -> OpResult<T> {
    match stored {
        Ok(v) => {
            if reserved.iter().any(|r| r.remote.is_none()) {
                until_pushed(srv).await;
            }
            Ok(v)
        }
        Err(status) => {
            for r in reserved {
                abandon(srv, r).await;
            }
            Err(status.into())
        }
    }
}

/// 20 CREATE_LINK to a file in a trunk slot: a link slot under a fresh name (C's
/// `storage_trunk_create_link`), counted in the de-duplication index. EOPNOTSUPP when no slot
/// can be had (trunk files off here, or no trunk server).
pub(super) async fn create_link_slot(srv: &Arc<StorageServer>, source: String, ext: &str) -> Result<String, Status> {
    let (name, _) = srv.resolve(&source)?;
    let index = name.store_path_index as usize;
    let info = name.info();
    if !matches!(srv.held_source(&source, info.size.unwrap_or(0)), Some(super::ops::Held::Slot)) {
        return Err(Status::ENOENT);
    }
    let Some(lr) = reserve(srv, index, LINK_TEXT_LEN).await? else { return Err(Status::EOPNOTSUPP) };
    if let Err(status) = confirm_remote(srv, &lr).await {
        give_back(srv, &lr, true).await;
        return Err(status);
    }
    let ts = now_unix();
    let (s, r, ext) = (srv.clone(), lr.clone(), ext.to_owned());
    let stored = srv
        .disk
        .write(index, move |w| {
            if let Some(d) = &s.dedup {
                d.update(|tx| {
                    tx.add_link(&source, index as u8, || super::dedup::sign_stored(&s.paths, d.method(), &source))
                })?;
            }
            link_slot_change(&s, w, &r, source, (info.crc32, &ext, ts), None)
        })
        .await;
    let name = after_round(srv, stored, std::slice::from_ref(&lr)).await.map_err(|e| e.status)?;
    srv.changed(ts);
    Ok(name)
}

/// After a client deleted a trunk-resident file here: its slot is free for the trunk server.
pub(super) async fn freed(srv: &Arc<StorageServer>, slot: Block) {
    if !srv.params().use_trunk_file {
        return;
    }
    let Some(server) = srv.trunk.server() else { return };
    let r = Reserved {
        slot,
        remote: (server.id != srv.my_id()).then(|| crate::config::join_host_port(&server.ip, server.port as u16)),
    };
    give_back(srv, &r, true).await;
}

/// 27 TRUNK_ALLOC_SPACE from a member.
pub(super) async fn alloc_space(srv: &Arc<StorageServer>, req: TrunkAllocReq) -> Result<Vec<u8>, Status> {
    srv.check_group(&req.group)?;
    let content_len =
        u64::try_from(req.file_size).ok().and_then(|n| n.checked_sub(SLOT_HEADER_LEN)).ok_or(Status::EINVAL)?;
    if req.store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let slot = Disk::read(move || s.alloc_local(req.store_path_index, content_len)).await?.ok_or(Status::EINVAL)?;
    Ok(info_of(&slot).encode(Profile::CLASSIC).to_vec())
}

/// 28 TRUNK_ALLOC_CONFIRM (`write_status` 0: the member wrote the file) and 29 TRUNK_FREE_SPACE.
pub(super) async fn slot_done(
    srv: &Arc<StorageServer>,
    req: TrunkSlotReq,
    confirm: bool,
    write_status: u8,
) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let slot = block_of(&req.info).ok_or(Status::EINVAL)?;
    // Only something that could be a slot: a member never frees more than one.
    let t = srv.params().trunk;
    if slot.size as u64 > t.slot_max_size as u64 + t.slot_min_size as u64
        || slot.offset as u64 + slot.size as u64 > t.trunk_file_size as u64
    {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let confirmed = confirm && write_status == 0;
    Disk::read(move || {
        if confirmed {
            s.confirm_local(&slot)?;
            // The member answers its client after this answer: the line must be on disk.
            s.trunk.log.sync_if_dirty().map_err(io)
        } else {
            s.free_local(&slot)
        }
    })
    .await?;
    if confirmed {
        until_pushed(srv).await;
    }
    Ok(())
}

/// 30 TRUNK_SYNC_BINLOG: the trunk server's lines, appended to ours (whole lines only).
pub(super) async fn receive_binlog(srv: &Arc<StorageServer>, body: Vec<u8>) -> Result<(), Status> {
    if srv.trunk.is_server() {
        tracing::warn!("trunk binlog lines from another storage while this one is the trunk server; ignored");
        return Err(Status::EINVAL);
    }
    let text = std::str::from_utf8(&body).map_err(|_| Status::EINVAL)?;
    if !text.is_empty() && (!text.ends_with('\n') || text.lines().any(|l| SpaceRecord::parse(l).is_none())) {
        return Err(Status::EINVAL);
    }
    // Not synced here (the background task syncs it within a second): this copy matters when
    // the trunk server is lost, and the trunk server synced its own before it pushed.
    let s = srv.clone();
    Disk::read(move || s.trunk.log.append_raw(&body).map_err(io)).await
}

/// 31 TRUNK_GET_BINLOG_SIZE: the tracker prefers the member with the longest trunk binlog.
pub(super) fn binlog_size(srv: &StorageServer) -> Vec<u8> {
    (srv.trunk.log.len() as i64).to_be_bytes().to_vec()
}

/// 32 TRUNK_DELETE_BINLOG_MARKS (from the tracker, to a new trunk server).
pub(super) async fn delete_marks(srv: &Arc<StorageServer>) -> Result<(), Status> {
    let s = srv.clone();
    Disk::read(move || s.trunk.log.delete_marks().map_err(io)).await?;
    srv.trunk.marks_epoch.fetch_add(1, Ordering::AcqRel);
    srv.trunk.news.notify_waiters();
    Ok(())
}

/// 33 TRUNK_TRUNCATE_BINLOG_FILE (from the trunk server, before it sends its whole binlog).
pub(super) async fn restart_binlog(srv: &Arc<StorageServer>) -> Result<(), Status> {
    if srv.trunk.is_server() {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let max_backups = srv.params().trunk_compress.max_backups;
    Disk::read(move || s.trunk.log.restart(max_backups).map_err(io)).await
}

/// The latest point of a daily schedule (`base_minutes` after midnight UTC, as the logs, then
/// every `interval` seconds) at or before `now`.
fn last_due(now: i64, base_minutes: i64, interval: i64) -> i64 {
    let mut base = now - now.rem_euclid(86_400) + base_minutes * 60;
    if base > now {
        base -= 86_400;
    }
    base + (now - base) / interval.max(60) * interval.max(60)
}

/// While this storage is the trunk server, C's two schedules: compress the trunk binlog every
/// `trunk_compress_binlog_interval` from `trunk_compress_binlog_time_base`, and (with
/// `trunk_create_file_advance`) create trunk files every `trunk_create_file_interval` from
/// `trunk_create_file_time_base` until `trunk_create_file_space_threshold` bytes are free.
pub async fn schedule_loop(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let (mut compressed_for, mut created_for): (Option<i64>, Option<i64>) = (None, None);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if !srv.trunk.is_server() {
            continue;
        }
        let (now, p) = (now_unix(), srv.params());
        if p.trunk_compress.interval > 0 {
            let due = last_due(now, p.trunk_compress.time_base, p.trunk_compress.interval);
            let last: i64 = srv.init_flag().other("trunk_last_compress_time").and_then(|v| v.parse().ok()).unwrap_or(0);
            if compressed_for.is_none_or(|d| d < due) && last < due {
                let s = srv.clone();
                match tokio::task::spawn_blocking(move || s.compress_trunk_binlog()).await {
                    Ok(Ok(_)) => compressed_for = Some(due),
                    Ok(Err(e)) => tracing::error!("compressing the trunk binlog: {e}"),
                    Err(e) => tracing::error!("compressing the trunk binlog: {e}"),
                }
            }
        }
        let a = p.trunk_advance;
        if a.enabled && a.threshold > 0 {
            let due = last_due(now, a.time_base, a.interval);
            if created_for.is_none_or(|d| d < due) {
                let s = srv.clone();
                match tokio::task::spawn_blocking(move || s.create_trunk_files_ahead(a.threshold)).await {
                    Ok(Ok(n)) => {
                        if n > 0 {
                            tracing::info!("{n} trunk file(s) created ahead of need");
                        }
                        created_for = Some(due);
                    }
                    Ok(Err(e)) => tracing::error!("creating trunk files ahead: {e:?}"),
                    Err(e) => tracing::error!("creating trunk files ahead: {e}"),
                }
            }
        }
    }
}

/// While this storage is the trunk server: pushes its trunk binlog to every other member
/// (30), from where its mark file says, starting over (33 first) for a member never pushed to.
pub async fn push_loop(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let mut peers: HashMap<String, PeerPush> = HashMap::new();
    let mut marks_epoch = srv.trunk.marks_epoch.load(Ordering::Acquire);
    loop {
        let news = srv.trunk.news.notified();
        let epoch = srv.trunk.marks_epoch.load(Ordering::Acquire);
        if epoch != marks_epoch || !srv.trunk.is_server() {
            // The marks were deleted (32, a compression) or the role went: start from the files.
            marks_epoch = epoch;
            peers.clear();
        }
        if srv.trunk.is_server() {
            // Read before pushing: what every member reached counts only up to here.
            let mut everywhere = srv.trunk.log.len();
            // Every member that may become trunk server one day gets it, whatever its status
            // now (one still copying the group may be ACTIVE by the time this one dies).
            for peer in srv.peers() {
                use crate::protocol::status::{DELETED, IP_CHANGED, OFFLINE};
                if matches!(peer.status, OFFLINE | DELETED | IP_CHANGED) {
                    continue;
                }
                let state = peers.entry(peer.id.clone()).or_default();
                match push_to(&srv, &peer, state).await {
                    Ok(reached) => everywhere = everywhere.min(reached),
                    Err(e) => {
                        // An unreachable member is left out rather than holding up every upload.
                        tracing::warn!("pushing the trunk binlog to {}: {e}", peer.id);
                        state.conn = None;
                    }
                }
            }
            srv.trunk.pushed.send_replace(everywhere);
        }
        tokio::select! {
            _ = shutdown.wait() => {
                for (id, p) in &mut peers {
                    if let Err(e) = p.save(&srv.trunk.log, true).await {
                        tracing::warn!("saving the trunk binlog mark of {id}: {e}");
                    }
                }
                return;
            }
            _ = news => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Where the push to one member stands. The mark file is rewritten at most once a second: a
/// mark that lags only makes the member receive some lines twice, which a replay skips.
#[derive(Debug, Default)]
struct PeerPush {
    conn: Option<Connection>,
    /// The mark file's name (`ip_port` or the ID), and the position in memory.
    key: String,
    offset: Option<u64>,
    saved: u64,
    saved_at: Option<std::time::Instant>,
    removed: reclaim::RemovedPush,
}

impl PeerPush {
    async fn save(&mut self, log: &Arc<TrunkLog>, now: bool) -> Result<(), String> {
        let Some(offset) = self.offset else { return Ok(()) };
        let due = now || self.saved_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if offset == self.saved || !due || self.key.is_empty() {
            return Ok(());
        }
        save_mark(log, &self.key, offset).await?;
        (self.saved, self.saved_at) = (offset, Some(std::time::Instant::now()));
        Ok(())
    }
}

/// Brings `peer` up to the end of the trunk binlog; returns how far it now has it.
async fn push_to(srv: &Arc<StorageServer>, peer: &Brief, state: &mut PeerPush) -> Result<u64, String> {
    let log = srv.trunk.log.clone();
    if state.offset.is_none() {
        state.key = if srv.params().use_storage_id { peer.id.clone() } else { format!("{}_{}", peer.ip, peer.port) };
        let (l, k) = (log.clone(), state.key.clone());
        let mark = tokio::task::spawn_blocking(move || l.mark(&k)).await.map_err(|e| e.to_string())?;
        (state.offset, state.saved) = (Some(mark), mark);
    }
    let mut offset = state.offset.unwrap_or(0);
    if offset == log.len() && offset > 0 && state.removed.is_current(&srv.trunk.removed.log) {
        state.save(&log, false).await?;
        return Ok(offset);
    }
    if state.conn.is_none() {
        let addr = crate::config::join_host_port(&peer.ip, peer.port as u16);
        let c = srv.connect_to_peer(&addr).await.map_err(|e| e.to_string())?;
        state.conn = Some(c);
    }
    let conn = state.conn.as_mut().expect("connected above");
    if offset == 0 || offset > log.len() {
        conn.call(Command::TrunkTruncateBinlogFile, &[]).await.map_err(|e| e.to_string())?;
        offset = 0;
        state.offset = Some(0);
        state.save(&log, true).await?;
    }
    let conn = state.conn.as_mut().expect("connected above");
    let offset = match send_log(conn, &log, offset, Command::TrunkSyncBinlog).await? {
        Sent::All(offset) => offset,
        Sent::Refused(status) => return Err(format!("refused the trunk binlog: {status}")),
    };
    state.offset = Some(offset);
    state.save(&log, false).await?;
    // After the binlog: the `D` lines of retired files are there before the files go.
    let conn = state.conn.as_mut().expect("connected above");
    reclaim::push_removed(srv, &state.key, conn, &mut state.removed).await?;
    Ok(offset)
}

/// How [`send_log`] ended.
enum Sent {
    /// The member has the log up to here (its end when sending began, or later).
    All(u64),
    /// The member answered a chunk with this status.
    Refused(Status),
}

/// Sends `log` from `offset` to its end over `conn` with `cmd`, in chunks of whole lines.
async fn send_log(conn: &mut Connection, log: &Arc<TrunkLog>, mut offset: u64, cmd: Command) -> Result<Sent, String> {
    while offset < log.len() {
        let l = log.clone();
        let chunk = tokio::task::spawn_blocking(move || l.read_from(offset, PUSH_CHUNK))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if chunk.is_empty() {
            break;
        }
        match conn.call(cmd, &chunk).await {
            Ok(_) => offset += chunk.len() as u64,
            Err(crate::client::ClientError::Status { status }) => return Ok(Sent::Refused(status)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Sent::All(offset))
}

async fn save_mark(log: &Arc<TrunkLog>, key: &str, offset: u64) -> Result<(), String> {
    let (l, k) = (log.clone(), key.to_owned());
    tokio::task::spawn_blocking(move || l.save_mark(&k, offset))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
