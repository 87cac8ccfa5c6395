//! What each storage command does on disk. Every write that creates a name goes through a temp
//! file, fsync, a no-replace rename and a directory fsync, so a name exists only for complete
//! files; every change is logged to the binlog after it is durable.

use std::fs::{File, OpenOptions};
use std::io::{Read, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::binlog::{Op, Record};
use super::stats::{add, count};
use super::StorageServer;
use crate::durable::TempFile;
use crate::file_id::{self, FileType, NameKind, NewName, RemoteFilename, Source};
use crate::protocol::storage::{file_info_flags, pack_metadata, parse_metadata, FileInfoResp, MetaOp, SetMetadataReq};
use crate::protocol::Status;
use crate::timefmt::now_unix;

/// Content up to this size is received into memory and written in one go.
const SMALL_FILE: u64 = 1 << 20;
const CHUNK: usize = 256 << 10;
/// Tries at a unique name before giving up (as FastDFS does).
const NAME_TRIES: usize = 10;

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

fn closing(status: Status) -> OpError {
    OpError { status, close: true }
}

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

    /// Records a change made here in the binlog, durably (blocking: call from a blocking
    /// thread). An error means the change must not be acknowledged.
    pub fn log_change(&self, timestamp: i64, op: Op, filename: &str, extra: String) -> Result<(), Status> {
        let r = Record { timestamp, op, replica: false, filename: filename.to_owned(), extra };
        self.commit(&r)?;
        self.stats.last_source_update.store(timestamp, Ordering::Relaxed);
        Ok(())
    }

    /// [`Self::log_change`] from async code.
    pub async fn log_change_async(&self, timestamp: i64, op: Op, filename: &str, extra: String) -> Result<(), Status> {
        let r = Record { timestamp, op, replica: false, filename: filename.to_owned(), extra };
        self.commit_async(r).await?;
        self.stats.last_source_update.store(timestamp, Ordering::Relaxed);
        Ok(())
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn at(ts: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64)
}

/// Reads `len` bytes from the socket into a new temp file of store path `index`, with `mtime`;
/// returns it (not yet published: publishing fsyncs it) with the CRC32 of the content. On any
/// failure the temp file is gone.
pub async fn receive(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    index: usize,
    len: u64,
    mtime: SystemTime,
) -> std::io::Result<(TempFile, u32)> {
    let temp = srv.paths.temp_file(index)?;
    receive_into(src, temp, len, srv.body_timer(len), mtime).await
}

/// How long a request body may take: each read waits at most `network_timeout`, and the whole
/// body must arrive within `network_timeout` plus its size at `min_body_rate`. Without the
/// overall bound a client sending a byte every half minute would hold its connection forever.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimer {
    per_read: Duration,
    deadline: tokio::time::Instant,
}

impl BodyTimer {
    pub fn new(per_read: Duration, len: u64, min_rate: u64) -> Self {
        // Whole seconds, capped: any declared length (up to 2^63) gives a deadline that exists.
        let transfer = Duration::from_secs((len / min_rate.max(1)).saturating_add(1).min(1 << 32));
        let deadline = tokio::time::Instant::now() + per_read.min(Duration::from_secs(1 << 32)) + transfer;
        BodyTimer { per_read, deadline }
    }

    fn next_read(&self) -> Duration {
        self.per_read.min(self.deadline.saturating_duration_since(tokio::time::Instant::now()))
    }
}

impl StorageServer {
    /// The timer for a body of `len` bytes under this server's settings.
    pub fn body_timer(&self, len: u64) -> BodyTimer {
        BodyTimer::new(self.config.network_timeout, len, self.config.min_body_rate)
    }
}

async fn read_timed(src: &mut (impl AsyncRead + Unpin), buf: &mut [u8], timer: &BodyTimer) -> std::io::Result<usize> {
    match tokio::time::timeout(timer.next_read(), src.read(buf)).await {
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        Ok(Ok(0)) if !buf.is_empty() => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(r) => r,
    }
}

async fn receive_into(
    src: &mut (impl AsyncRead + Unpin),
    mut temp: TempFile,
    len: u64,
    timer: BodyTimer,
    mtime: SystemTime,
) -> std::io::Result<(TempFile, u32)> {
    if len <= SMALL_FILE {
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            got += read_timed(src, &mut buf[got..], &timer).await?;
        }
        return tokio::task::spawn_blocking(move || {
            let crc = crc32fast::hash(&buf);
            temp.file().write_all(&buf)?;
            temp.file().set_modified(mtime)?;
            Ok((temp, crc))
        })
        .await
        .map_err(std::io::Error::other)?;
    }
    let mut f = tokio::fs::File::from_std(temp.file().try_clone()?);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    // A write error (a full disk) is reported after the whole body is read, so the client
    // sees the status rather than a reset connection.
    let mut failed = None;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = read_timed(src, &mut buf[..want], &timer).await?;
        if failed.is_none() {
            crc.update(&buf[..n]);
            failed = f.write_all(&buf[..n]).await.err();
        }
        left -= n as u64;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    f.flush().await?;
    drop(f);
    tokio::task::spawn_blocking(move || {
        temp.file().set_modified(mtime)?;
        Ok((temp, crc.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// 11 / 23: stores the content under a new name; returns the remote filename.
pub async fn upload(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    store_path_index: i8,
    size: u64,
    ext: &str,
    appender: bool,
) -> OpResult<String> {
    count(&srv.stats.total_upload_count, &srv.stats.success_upload_count, false);
    add(&srv.stats.total_upload_bytes, size);
    let params = srv.params();
    if store_path_index >= 0 && store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL.into());
    }
    let Some(index) = srv.paths.choose(store_path_index, size, params.reserved, params.store_path_most_free) else {
        return Err(closing(Status::ENOSPC));
    };
    let mut rng = fastrand::Rng::new();
    let (high, low) = srv.paths.next_dir(&mut rng);
    let ts = now_unix();
    let (temp, crc) = receive(srv, src, index, size, at(ts)).await.map_err(|e| closing(Status::from_io(&e)))?;
    let kind = if appender { NameKind::Appender } else { NameKind::Normal };
    let new = NewName {
        source: srv.source(),
        timestamp: ts as u32,
        size,
        crc32: crc,
        kind,
        ext,
        store_path_index: index as u8,
        high,
        low,
    };
    let name = publish_new(srv, temp, |rng| file_id::generate(&new, rng), &mut rng).await?;
    logged_or_unpublished(srv, ts, &name).await?;
    srv.stats.success_upload_count.fetch_add(1, Ordering::Relaxed);
    add(&srv.stats.success_upload_bytes, size);
    srv.paths.paths[index]
        .free_mb
        .fetch_sub((size >> 20).min(srv.paths.paths[index].free_mb.load(Ordering::Relaxed)), Ordering::Relaxed);
    Ok(name)
}

/// Makes a just-published file durable and recorded: its directory entry is synced while its
/// binlog record is written and synced (the two syncs overlap, and the journal commits them
/// together). If either fails, the file is taken back out of the store, so no file exists that
/// neither the client nor the replicas know of.
async fn logged_or_unpublished(srv: &StorageServer, ts: i64, name: &str) -> Result<(), Status> {
    let (_, path) = srv.resolve(name)?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let entry = tokio::task::spawn_blocking(move || crate::durable::sync_dir(&dir));
    let (entry, logged) = tokio::join!(entry, srv.log_change_async(ts, Op::Create, name, String::new()));
    let status = match (entry, logged) {
        (Ok(Ok(())), Ok(())) => return Ok(()),
        (Ok(Err(e)), _) => Status::from_io(&e),
        (Err(_), _) => Status::EIO,
        (_, Err(s)) => s,
    };
    let removed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::remove_file(&path)?;
        crate::durable::sync_dir(path.parent().unwrap_or(Path::new(".")))
    })
    .await;
    if !matches!(removed, Ok(Ok(()))) {
        log::error!("{name}: could not be recorded nor removed; the next start records it");
    }
    Err(status)
}

/// Gives a finished temp file its final name, retrying with fresh random parts if taken.
async fn publish_new(
    srv: &StorageServer,
    mut temp: TempFile,
    mut make: impl FnMut(&mut fastrand::Rng) -> RemoteFilename,
    rng: &mut fastrand::Rng,
) -> OpResult<String> {
    for _ in 0..NAME_TRIES {
        let name = make(rng);
        let dest = srv.paths.local_path(&name).ok_or(Status::EINVAL)?;
        let (t, r) = tokio::task::spawn_blocking(move || {
            let r = temp.publish_entry(&dest);
            (temp, r)
        })
        .await
        .map_err(|_| Status::EIO)?;
        temp = t;
        match r {
            Ok(()) => return Ok(name.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Status::EEXIST.into())
}

/// 21: a slave file next to its master.
pub async fn upload_slave(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    master: &str,
    prefix: &str,
    ext: &str,
    size: u64,
) -> OpResult<String> {
    count(&srv.stats.total_upload_count, &srv.stats.success_upload_count, false);
    add(&srv.stats.total_upload_bytes, size);
    let (master_name, master_path) = srv.resolve(master).map_err(closing)?;
    if !master_path.is_file() {
        return Err(closing(Status::ENOENT));
    }
    let slave = file_id::slave_filename(&master_name.to_string(), prefix, ext).map_err(|_| closing(Status::EINVAL))?;
    let (slave_name, slave_path) = srv.resolve(&slave).map_err(closing)?;
    if slave_path.exists() {
        return Err(closing(Status::EEXIST));
    }
    let ts = now_unix();
    let (mut temp, _) = receive(srv, src, slave_name.store_path_index as usize, size, at(ts))
        .await
        .map_err(|e| closing(Status::from_io(&e)))?;
    match tokio::task::spawn_blocking(move || temp.publish_entry(&slave_path)).await.map_err(|_| Status::EIO)? {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Status::EEXIST.into()),
        Err(e) => return Err(e.into()),
    }
    logged_or_unpublished(srv, ts, &slave).await?;
    srv.stats.success_upload_count.fetch_add(1, Ordering::Relaxed);
    add(&srv.stats.success_upload_bytes, size);
    Ok(slave)
}

/// 12: the file and its metadata file.
pub fn delete(srv: &StorageServer, filename: &str) -> Result<(), Status> {
    let (_, path) = srv.resolve(filename)?;
    let meta = meta_path(&path);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Err(Status::EISDIR),
        Ok(_) => {}
        Err(e) => return Err(Status::from_io(&e)),
    }
    std::fs::remove_file(&path).map_err(|e| Status::from_io(&e))?;
    let ts = now_unix();
    srv.log_change(ts, Op::Delete, filename, String::new())?;
    if std::fs::remove_file(&meta).is_ok() {
        srv.log_change(ts, Op::Delete, &format!("{filename}-m"), String::new())?;
    }
    Ok(())
}

pub fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-m");
    PathBuf::from(p)
}

/// Rewrites a metadata file atomically: a temp file of the store path's temp directory
/// (emptied at start, so a crash leaves nothing behind) replaces it.
fn replace_file(srv: &StorageServer, index: usize, path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut temp = srv.paths.temp_file(index)?;
    temp.file().write_all(content)?;
    temp.replace(path)
}

/// 13 (PROTOCOL.md §4.6): overwrite or merge, stored sorted by name.
/// The caller holds the file's lock (two merges at once would lose one's keys).
pub fn set_metadata(srv: &StorageServer, req: &SetMetadataReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let (name, path) = srv.resolve(&req.filename)?;
    if !path.is_file() {
        return Err(Status::ENOENT);
    }
    let meta = meta_path(&path);
    let existed = meta.exists();
    let mut new = parse_metadata(&req.meta);
    let ts = now_unix();
    let logname = format!("{}-m", req.filename);
    if req.meta.is_empty() {
        if req.op == MetaOp::Overwrite && existed {
            std::fs::remove_file(&meta).map_err(|e| Status::from_io(&e))?;
            srv.log_change(ts, Op::Delete, &logname, String::new())?;
        }
        return Ok(());
    }
    new.sort_by(|a, b| a.0.cmp(&b.0));
    let merged = if req.op == MetaOp::Merge && existed {
        let old = parse_metadata(&std::fs::read(&meta).map_err(|e| Status::from_io(&e))?);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) if o.0 == n.0 => {
                    out.push(n.clone());
                    i += 1;
                    j += 1;
                }
                (Some(o), Some(n)) if o.0 < n.0 => {
                    out.push(o.clone());
                    i += 1;
                }
                (Some(_), Some(n)) | (None, Some(n)) => {
                    out.push(n.clone());
                    j += 1;
                }
                (Some(o), None) => {
                    out.push(o.clone());
                    i += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        out
    } else {
        new
    };
    replace_file(srv, name.store_path_index as usize, &meta, &pack_metadata(&merged))
        .map_err(|e| Status::from_io(&e))?;
    srv.log_change(ts, if existed { Op::Update } else { Op::Create }, &logname, String::new())
}

/// 15.
pub fn get_metadata(srv: &StorageServer, group: &str, filename: &str) -> Result<Vec<u8>, Status> {
    srv.check_group(group)?;
    let (_, path) = srv.resolve(filename)?;
    if !path.is_file() {
        return Err(Status::ENOENT);
    }
    std::fs::read(meta_path(&path)).map_err(|e| Status::from_io(&e))
}

fn crc_of(path: &Path) -> std::io::Result<u32> {
    let mut f = File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// 22: size and mtime from disk; CRC from the name for normal files, computed for appender
/// and slave files (unless flagged off).
pub fn file_info(srv: &StorageServer, group: &str, filename: &str, flags: u8) -> Result<FileInfoResp, Status> {
    srv.check_group(group)?;
    let (name, path) = srv.resolve(filename)?;
    let m = std::fs::metadata(&path).map_err(|e| Status::from_io(&e))?;
    if !m.is_file() {
        return Err(Status::ENOENT);
    }
    let info = name.info();
    let crc = match info.file_type {
        FileType::Normal => info.crc32,
        _ if flags & file_info_flags::NO_CRC32 != 0 => 0,
        _ => crc_of(&path).map_err(|e| Status::from_io(&e))?,
    };
    let source_ip = match info.source {
        Source::Ip(ip) => ip.to_string(),
        // Our own files name us; the others a member the leader told us about.
        Source::ServerId(id) if srv.my_id() == id.to_string() => {
            srv.my_ip.read().unwrap_or_else(|e| e.into_inner()).clone()
        }
        Source::ServerId(id) => srv.peer(&id.to_string()).map(|b| b.ip).unwrap_or_default(),
    };
    Ok(FileInfoResp {
        file_size: m.len() as i64,
        create_timestamp: m.modified().map(unix).unwrap_or(0),
        crc32: FileInfoResp::with_crc32(crc),
        source_ip,
    })
}

/// Resolves an appender file for append/modify/truncate/regenerate.
pub fn appender(srv: &StorageServer, filename: &str) -> Result<(RemoteFilename, PathBuf), Status> {
    let (name, path) = srv.resolve(filename)?;
    if name.info().file_type != FileType::Appender {
        return Err(Status::EINVAL);
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok((name, path)),
        Ok(_) => Err(Status::EINVAL),
        Err(e) => Err(Status::from_io(&e)),
    }
}

/// Writes `len` bytes from the socket into an existing file at `offset` and fsyncs it. Any
/// failure closes the connection (the rest of the content is still on it).
pub async fn write_at(
    src: &mut (impl AsyncRead + Unpin),
    path: &Path,
    offset: u64,
    len: u64,
    timer: BodyTimer,
) -> OpResult<tokio::fs::File> {
    let io = |e: std::io::Error| closing(Status::from_io(&e));
    let mut f = tokio::fs::OpenOptions::new().write(true).open(path).await.map_err(io)?;
    f.seek(SeekFrom::Start(offset)).await.map_err(io)?;
    let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = match read_timed(src, &mut buf[..want], &timer).await {
            Ok(n) => n,
            Err(e) => {
                // tokio's File writes in the background: wait for the last write to land, or
                // it could land after the caller rolled the file back.
                let _ = f.flush().await;
                return Err(io(e));
            }
        };
        if let Err(e) = f.write_all(&buf[..n]).await {
            let _ = f.flush().await;
            return Err(io(e));
        }
        left -= n as u64;
    }
    f.sync_all().await.map_err(io)?;
    Ok(f)
}

/// Puts an appender file back as it was before a change, unless the change is committed:
/// a failed, cancelled (the request's task dropped at shutdown) or unrecorded append, modify
/// or truncate leaves no partial bytes that the binlog does not describe, so replicas never
/// silently differ. The bytes a change overwrites or cuts off are copied aside first.
struct Rollback {
    path: PathBuf,
    old_size: u64,
    /// Where the saved bytes came from, and the copy.
    saved: Option<(u64, PathBuf)>,
    committed: bool,
}

impl Rollback {
    /// Saves `[offset, offset + len)` of the file (what exists of it) into `copy`.
    fn capture(path: &Path, offset: u64, len: u64, copy: PathBuf) -> std::io::Result<Self> {
        let mut f = File::open(path)?;
        let old_size = f.metadata()?.len();
        let end = offset.saturating_add(len).min(old_size);
        let saved = if end > offset {
            std::io::Seek::seek(&mut f, SeekFrom::Start(offset))?;
            let mut out = File::create_new(&copy)?;
            std::io::copy(&mut (&mut f).take(end - offset), &mut out)?;
            Some((offset, copy))
        } else {
            None
        };
        Ok(Rollback { path: path.to_owned(), old_size, saved, committed: false })
    }

    fn commit(mut self) {
        self.committed = true;
    }

    fn restore(&self) -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(&self.path)?;
        if let Some((offset, copy)) = &self.saved {
            std::io::Seek::seek(&mut f, SeekFrom::Start(*offset))?;
            std::io::copy(&mut File::open(copy)?, &mut f)?;
        }
        f.set_len(self.old_size)?;
        f.sync_all()
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.committed {
            match self.restore() {
                Ok(()) => log::warn!("{}: unfinished change rolled back", self.path.display()),
                Err(e) => log::error!("{}: rolling back an unfinished change failed: {e}", self.path.display()),
            }
        }
        if let Some((_, copy)) = &self.saved {
            let _ = std::fs::remove_file(copy);
        }
    }
}

/// Takes a [`Rollback`] off the async workers (it may copy a large range).
async fn capture(
    srv: &StorageServer,
    name: &RemoteFilename,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Rollback, Status> {
    let (p, copy) = (path.to_owned(), srv.paths.temp_path(name.store_path_index as usize));
    tokio::task::spawn_blocking(move || Rollback::capture(&p, offset, len, copy))
        .await
        .map_err(|_| Status::EIO)?
        .map_err(|e| Status::from_io(&e))
}

/// 24 / 34: writes `len` bytes from the socket at the end (`offset = None`) or at `offset`.
pub async fn write_range(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    filename: &str,
    offset: Option<u64>,
    len: u64,
) -> OpResult<()> {
    let (name, path) = appender(srv, filename).map_err(closing)?;
    let _lock = srv.lock_file(&path).await;
    let old_size = std::fs::metadata(&path).map_err(|e| closing(Status::from_io(&e)))?.len();
    let at_offset = offset.unwrap_or(old_size);
    if at_offset > old_size {
        return Err(closing(Status::EINVAL));
    }
    let undo = capture(srv, &name, &path, at_offset, len).await.map_err(closing)?;
    write_at(src, &path, at_offset, len, srv.body_timer(len)).await?;
    if len > 0 {
        let ts = now_unix();
        match offset {
            None => srv.log_change_async(ts, Op::Append, filename, format!("{old_size} {len}")).await?,
            Some(o) => srv.log_change_async(ts, Op::Modify, filename, format!("{o} {len}")).await?,
        }
    }
    undo.commit();
    Ok(())
}

/// 36.
pub async fn truncate(srv: &StorageServer, filename: &str, new_size: u64) -> Result<(), Status> {
    let (name, path) = appender(srv, filename)?;
    let _lock = srv.lock_file(&path).await;
    let old = std::fs::metadata(&path).map_err(|e| Status::from_io(&e))?.len();
    if old == new_size {
        return Ok(());
    }
    let undo = capture(srv, &name, &path, new_size, old.saturating_sub(new_size)).await?;
    let f = OpenOptions::new().write(true).open(&path).map_err(|e| Status::from_io(&e))?;
    f.set_len(new_size).map_err(|e| Status::from_io(&e))?;
    f.sync_all().map_err(|e| Status::from_io(&e))?;
    let ts = f.metadata().and_then(|m| m.modified()).map(unix).unwrap_or_else(|_| now_unix());
    srv.log_change_async(ts, Op::Truncate, filename, format!("{old} {new_size}")).await?;
    undo.commit();
    Ok(())
}

/// 38: an appender file becomes a normal one under a new name with its real size and CRC.
pub async fn regenerate(srv: &StorageServer, filename: &str) -> Result<String, Status> {
    let (name, path) = appender(srv, filename)?;
    let _lock = srv.lock_file(&path).await;
    let p = path.clone();
    let (size, crc) = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u32)> {
        Ok((std::fs::metadata(&p)?.len(), crc_of(&p)?))
    })
    .await
    .map_err(|_| Status::EIO)?
    .map_err(|e| Status::from_io(&e))?;
    let ts = now_unix();
    let mut rng = fastrand::Rng::new();
    for _ in 0..NAME_TRIES {
        let core = file_id::NameCore {
            source: srv.source(),
            timestamp: ts as u32,
            size_field: file_id::size_field(NameKind::Normal, size, &mut rng),
            crc32: crc,
        };
        let new = file_id::with_core(&name, &core);
        let dest = srv.paths.local_path(&new).ok_or(Status::EINVAL)?;
        let (from, to) = (path.clone(), dest.clone());
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            File::open(&from)?.set_modified(at(ts))?;
            crate::durable::rename_no_replace(&from, &to)
        })
        .await
        .map_err(|_| Status::EIO)?;
        match r {
            Ok(()) => {
                let new_name = new.to_string();
                srv.log_change_async(ts, Op::Rename, &new_name, filename.to_owned()).await?;
                return Ok(new_name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Status::from_io(&e)),
        }
    }
    Err(Status::EEXIST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("appender");
        std::fs::write(&file, content).unwrap();
        let copy = dir.path().join("saved");
        (dir, file, copy)
    }

    #[test]
    fn an_unfinished_modify_is_put_back_byte_for_byte() {
        let (_dir, file, copy) = setup(b"0123456789");
        // A modify of 10 bytes at 3: it overwrites 7 and extends the file by 3.
        let undo = Rollback::capture(&file, 3, 10, copy.clone()).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"3456789", "the range about to be overwritten is saved");
        let mut f = OpenOptions::new().write(true).open(&file).unwrap();
        std::io::Seek::seek(&mut f, SeekFrom::Start(3)).unwrap();
        f.write_all(b"XXXXXX").unwrap(); // cut off after 6 of its 10 bytes
        drop(undo);
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");
        assert!(!copy.exists(), "the saved copy is removed");
    }

    #[test]
    fn an_unfinished_append_and_truncate_are_undone_and_a_committed_change_stays() {
        let (_dir, file, copy) = setup(b"abc");
        let undo = Rollback::capture(&file, 3, 5, copy.clone()).unwrap();
        assert!(!copy.exists(), "an append overwrites nothing: nothing to save");
        OpenOptions::new().append(true).open(&file).unwrap().write_all(b"de").unwrap();
        drop(undo);
        assert_eq!(std::fs::read(&file).unwrap(), b"abc");

        let undo = Rollback::capture(&file, 1, 2, copy.clone()).unwrap();
        OpenOptions::new().write(true).open(&file).unwrap().set_len(1).unwrap();
        drop(undo);
        assert_eq!(std::fs::read(&file).unwrap(), b"abc", "a truncate is undone with the bytes it cut");

        let undo = Rollback::capture(&file, 3, 3, copy.clone()).unwrap();
        OpenOptions::new().append(true).open(&file).unwrap().write_all(b"def").unwrap();
        undo.commit();
        assert_eq!(std::fs::read(&file).unwrap(), b"abcdef");
        assert!(!copy.exists());
    }

    #[test]
    fn body_deadlines_exist_for_any_declared_length() {
        let t = BodyTimer::new(Duration::from_secs(60), u64::MAX, 1);
        assert!(t.next_read() <= Duration::from_secs(60));
        let t = BodyTimer::new(Duration::from_secs(u64::MAX), 1 << 20, 16 << 10);
        assert!(t.next_read() >= Duration::from_secs(64), "1 MiB at 16 KiB/s");
    }
}
