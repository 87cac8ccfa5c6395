//! What each client command does, one function per command: it takes the decoded request
//! (and the content that follows it, if any) and returns the answer. Every filesystem call
//! runs in the disk layer ([`super::disk`]): changes in writer jobs, which record them in the
//! binlog and are answered after the round that makes them durable; reads on the blocking pool.
//! Every change to an existing file holds that file's lock.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncRead;

use super::binlog::{Op, Record};
use super::content::{Content, SMALL};
use super::dedup::{Signature, Signer};
use super::disk::{write_at, write_temp, Change, Disk, Rollback, WriteFence, Writer};
use super::StorageServer;
use crate::durable::TempFile;
use crate::file_id::{self, FileType, NameKind, NewName, RemoteFilename, Source};
use crate::protocol::storage::{
    file_info_flags, pack_metadata, parse_metadata, AppendHead, CreateLinkReq, FileInfoResp, MetaOp, ModifyHead,
    SetMetadataReq, SlaveUploadHead, TruncateReq, UploadHead,
};
use crate::protocol::Status;
use crate::timefmt::now_unix;

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

pub(super) fn closing(status: Status) -> OpError {
    OpError { status, close: true }
}

pub(super) fn io(e: std::io::Error) -> Status {
    Status::from_io(&e)
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

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(super) fn at(ts: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64)
}

/// Received content, on its way to a name.
pub(super) enum Body {
    /// Small content, still in memory: the writer job writes it.
    Bytes(Vec<u8>),
    /// Large content, already streamed into a temp file.
    File(TempFile),
}

impl Body {
    /// The content as a temp file of the writer's store path, with its modification time.
    pub(super) fn into_temp(self, w: &Writer, mtime: SystemTime) -> std::io::Result<TempFile> {
        match self {
            Body::Bytes(b) => write_temp(w, &b, mtime),
            Body::File(mut t) => {
                t.file().set_modified(mtime)?;
                Ok(t)
            }
        }
    }

    /// The content's de-duplication signature.
    fn signature(&self, method: crate::config::SignatureMethod) -> std::io::Result<Signature> {
        match self {
            Body::Bytes(b) => Ok(Signer::of_bytes(method, b)),
            Body::File(t) => Signer::of_file(method, t.path()),
        }
    }
}

/// Reads a request's content: small content into memory, large content streamed into a new
/// temp file of store path `index`. Returns it with its CRC32.
pub(super) async fn receive<R: AsyncRead + Unpin>(
    srv: &StorageServer,
    index: usize,
    content: &mut Content<'_, R>,
) -> std::io::Result<(Body, u32)> {
    if content.left() <= SMALL {
        let (bytes, crc) = content.read_all().await?;
        return Ok((Body::Bytes(bytes), crc));
    }
    let dir = srv.paths.temp_dir(index);
    let mut temp =
        tokio::task::spawn_blocking(move || TempFile::create_in(&dir, "f")).await.map_err(std::io::Error::other)??;
    let file = Arc::new(temp.file().try_clone()?);
    srv.disk.stream_into(file, 0, content, &WriteFence::default()).await?;
    Ok((Body::File(temp), content.crc()))
}

/// Gives received content a new name (`name_for`, retried with fresh random parts if taken)
/// in a writer job; the name exists only once the batch that records it is durable.
async fn store_new(
    srv: &Arc<StorageServer>,
    index: usize,
    body: Body,
    ts: i64,
    mut name_for: NameFor,
) -> Result<String, Status> {
    let s = srv.clone();
    let name = srv
        .disk
        .write(index, move |w| {
            let mut temp = body.into_temp(w, at(ts)).map_err(io)?;
            let (name, dest) = under_fresh_name(&s, &mut name_for, |dest| temp.publish_entry(dest))?;
            published(&s, ts, name.to_string(), dest, &temp)
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}

/// New names for content of `(size, crc32)` stored at `ts` in store path `at.0`, directory
/// `at.1/at.2` (one directory for every try, as C).
fn fresh_names(
    srv: &StorageServer,
    ts: i64,
    (size, crc32): (u64, u32),
    kind: NameKind,
    ext: String,
    (index, high, low): (usize, u8, u8),
) -> NameFor {
    let source = srv.source();
    Box::new(move |rng: &mut fastrand::Rng| {
        let new = NewName {
            source,
            timestamp: ts as u32,
            size,
            crc32,
            kind,
            ext: &ext,
            store_path_index: index as u8,
            high,
            low,
        };
        file_id::generate(&new, rng)
    })
}

/// Tries fresh names (up to [`NAME_TRIES`], as FastDFS does) until `place` puts the file under
/// one that was free; returns that name and its path.
fn under_fresh_name(
    srv: &StorageServer,
    mut name_for: impl FnMut(&mut fastrand::Rng) -> RemoteFilename,
    mut place: impl FnMut(&Path) -> std::io::Result<()>,
) -> Result<(RemoteFilename, PathBuf), Status> {
    let mut rng = fastrand::Rng::new();
    for _ in 0..NAME_TRIES {
        let name = name_for(&mut rng);
        let dest = srv.paths.local_path(&name).ok_or(Status::EINVAL)?;
        match place(&dest) {
            Ok(()) => return Ok((name, dest)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e)),
        }
    }
    Err(Status::EEXIST)
}

/// A new file just given its name: recorded as created, and taken back out if the batch fails,
/// so no file exists that neither the client nor the replicas know of.
fn published(
    srv: &StorageServer,
    ts: i64,
    name: String,
    dest: PathBuf,
    temp: &TempFile,
) -> Result<Change<String>, Status> {
    let record = srv.own_change(ts, Op::Create, &name, String::new());
    let change = Change::new(name).record(record).sync_file(temp.try_clone_file().map_err(io)?).sync_parent(&dest);
    Ok(change.settle(move |ok| {
        if !ok && std::fs::remove_file(&dest).is_err() {
            tracing::error!("{}: could not be recorded nor removed; the next start records it", dest.display());
        }
    }))
}

/// 11 / 23: stores the content under a new name; returns the remote filename.
pub async fn upload<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &UploadHead,
    content: &mut Content<'_, R>,
    appender: bool,
) -> OpResult<String> {
    let params = srv.params();
    let size = head.file_size;
    if head.store_path_index >= 0 && head.store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL.into());
    }
    let Some(index) = srv.paths.choose(head.store_path_index, size, params.reserved, params.store_path_most_free)
    else {
        srv.paths.log_refusal(size, params.reserved);
        return Err(closing(Status::ENOSPC));
    };
    let ts = now_unix();
    // Content received and signed for a trunk slot that could not be had.
    let mut received = None;
    // Appender files change size, so they never go into a trunk slot (as C); nor are they
    // ever shared.
    if !appender && srv.dedup_uploads().is_some() && super::trunk::fits_slot(srv, size) {
        let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
        let (body, sig) = signed(srv, body).await?;
        let sig = sig.ok_or(Status::EINVAL)?;
        match super::trunk::upload_linked(srv, index, body, (size, crc), sig, &head.ext, ts).await? {
            Ok(name) => return Ok(name),
            Err(body) => received = Some((body, crc, Some(sig))),
        }
    } else if !appender {
        if let Some(slot) = super::trunk::reserve(srv, index, size).await.map_err(closing)? {
            let name = super::trunk::upload(srv, slot, &head.ext, content, ts).await?;
            srv.changed(ts);
            return Ok(name);
        }
    }
    let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
    let (body, crc, sig) = match received {
        Some(r) => r,
        None => {
            let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
            (body, crc, None)
        }
    };
    let kind = if appender { NameKind::Appender } else { NameKind::Normal };
    let name_for = fresh_names(srv, ts, (size, crc), kind, head.ext.clone(), (index, high, low));
    let name = match srv.dedup_uploads() {
        Some(_) if !appender => {
            let (body, sig) = match sig {
                Some(sig) => (body, Some(sig)),
                None => signed(srv, body).await?,
            };
            let s = srv.clone();
            let name = srv
                .disk
                .write(index, move |w| linked_content(&s, w, ts, index, body, sig, true, LinkName::Fresh(name_for)))
                .await?;
            srv.changed(ts);
            name
        }
        _ => store_new(srv, index, body, ts, name_for).await?,
    };
    let free = &srv.paths.paths[index].free_mb;
    free.fetch_sub((size >> 20).min(free.load(Ordering::Relaxed)), Ordering::Relaxed);
    Ok(name)
}

/// 21: a slave file next to its master.
pub async fn upload_slave<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &SlaveUploadHead,
    content: &mut Content<'_, R>,
) -> OpResult<String> {
    let (master_name, master_path) = srv.resolve(&head.master_filename).map_err(closing)?;
    let slave = file_id::slave_filename(&master_name.to_string(), &head.prefix, &head.ext)
        .map_err(|_| closing(Status::EINVAL))?;
    let (slave_name, slave_path) = srv.resolve(&slave).map_err(closing)?;
    let index = slave_name.store_path_index as usize;
    let ts = now_unix();
    let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
    let s = srv.clone();
    // `store_slave_file_use_link`: the content under a name of its own, the slave a link to it.
    let link = srv.params().store_slave_file_use_link;
    let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
    let content_names =
        fresh_names(srv, ts, (head.file_size, crc), NameKind::Normal, head.ext.clone(), (index, high, low));
    let (body, sig) = if link { signed(srv, body).await? } else { (body, None) };
    let name = srv
        .disk
        .write(index, move |w| {
            // A master may live in a trunk file (C stores its slaves as regular files beside it).
            if !stored(&s, &master_name, &master_path)? {
                return Err(Status::ENOENT);
            }
            if link {
                let given = LinkName::Given { name: slave, path: slave_path, content_name_for: Some(content_names) };
                return linked_content(&s, w, ts, index, body, sig, s.dedup_uploads().is_some(), given);
            }
            let mut temp = body.into_temp(w, at(ts)).map_err(io)?;
            match temp.publish_entry(&slave_path) {
                Ok(()) => published(&s, ts, slave, slave_path, &temp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Status::EEXIST),
                Err(e) => Err(io(e)),
            }
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}

/// A name generator for [`under_fresh_name`].
type NameFor = Box<dyn FnMut(&mut fastrand::Rng) -> RemoteFilename + Send>;

/// Where the link to a content goes.
enum LinkName {
    /// A fresh name (a de-duplicated upload); new content gets a fresh name too.
    Fresh(NameFor),
    /// A given name (a slave's); `content_name_for` names new content, if there is any.
    Given { name: String, path: PathBuf, content_name_for: Option<NameFor> },
}

impl LinkName {
    /// Makes the link to `target`: its name and path.
    fn place(&mut self, srv: &StorageServer, target: &Path) -> Result<(String, PathBuf), Status> {
        match self {
            LinkName::Fresh(name_for) => {
                let (name, path) = under_fresh_name(srv, name_for, |dest| super::paths::symlink(target, dest))?;
                Ok((name.to_string(), path))
            }
            LinkName::Given { name, path, .. } => match super::paths::symlink(target, path) {
                Ok(()) => Ok((name.clone(), path.clone())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Status::EEXIST),
                Err(e) => Err(io(e)),
            },
        }
    }

    fn content_name_for(&mut self) -> Option<&mut NameFor> {
        match self {
            LinkName::Fresh(f) | LinkName::Given { content_name_for: Some(f), .. } => Some(f),
            LinkName::Given { content_name_for: None, .. } => None,
        }
    }
}

/// Content stored behind a link, in C's layout (de-duplicated uploads, and slaves with
/// `store_slave_file_use_link`): with `reuse`, a link to the source that holds this content
/// already in store path `index`; otherwise the content under a fresh name of its own (`C`)
/// and the link to it (`L link content`), counted in the de-duplication index when there is
/// one. Index and links change in one index transaction; all of it is undone if the batch fails.
#[allow(clippy::too_many_arguments)]
fn linked_content(
    srv: &Arc<StorageServer>,
    w: &Writer,
    ts: i64,
    index: usize,
    body: Body,
    sig: Option<Signature>,
    reuse: bool,
    mut link: LinkName,
) -> Result<Change<String>, Status> {
    let (Some(dedup), Some(sig)) = (srv.dedup.as_ref(), sig) else {
        return new_content_linked(srv, w, ts, body, link, None);
    };
    let size = u64::from_be_bytes(sig[..8].try_into().unwrap_or_default());
    dedup.update(|tx| {
        if let Some(source) = reuse.then(|| tx.source_of(index as u8, &sig)).transpose()?.flatten() {
            match srv.held_source(&source, size) {
                Some(Held::Regular(path)) => {
                    tx.add_ref(&source)?;
                    let (name, link_path) = link.place(srv, &path)?;
                    return Ok(link_change(srv, ts, name, link_path, source, None));
                }
                // In a trunk slot, which a symbolic link cannot name: the content is stored
                // again, as a source of its own.
                Some(Held::Slot) => {}
                // Changed or gone behind our back: not a source any more.
                None => tx.forget(&source)?,
            }
        }
        new_content_linked(srv, w, ts, body, link, Some((tx, index as u8, &sig)))
    })
}

/// Where a source's content is.
pub(super) enum Held {
    /// A regular file, which symbolic links name.
    Regular(PathBuf),
    /// A trunk slot, which link slots name.
    Slot,
}

impl StorageServer {
    /// Where `source` holds content of `size` bytes; `None` when it no longer does.
    pub(super) fn held_source(&self, source: &str, size: u64) -> Option<Held> {
        let (name, path) = self.resolve(source).ok()?;
        if crate::trunk::is_trunk_name(&name) {
            let slot = crate::trunk::open(&name, &self.store_root(&name)).ok()??;
            return (slot.kind == crate::trunk::SlotKind::File && slot.size == size).then_some(Held::Slot);
        }
        let meta = std::fs::symlink_metadata(&path).ok()?;
        (meta.file_type().is_file() && meta.len() == size).then_some(Held::Regular(path))
    }
}

/// The content's signature when there is a de-duplication index, computed before the writer
/// job (off the store path's writer thread: on the blocking pool for content in a temp file).
async fn signed(srv: &StorageServer, body: Body) -> Result<(Body, Option<Signature>), Status> {
    let Some(method) = srv.dedup.as_ref().map(|d| d.method()) else { return Ok((body, None)) };
    let sign = move |body: Body| body.signature(method).map(|sig| (body, Some(sig))).map_err(io);
    match body {
        // In memory: cheaper than a trip to the blocking pool.
        Body::Bytes(_) => sign(body),
        Body::File(_) => Disk::read(move || sign(body)).await,
    }
}

/// New content under a fresh name, and the link to it.
fn new_content_linked(
    srv: &Arc<StorageServer>,
    w: &Writer,
    ts: i64,
    body: Body,
    mut link: LinkName,
    indexed: Option<(&mut super::dedup::Tx<'_>, u8, &Signature)>,
) -> Result<Change<String>, Status> {
    let mut temp = body.into_temp(w, at(ts)).map_err(io)?;
    let name_for = link.content_name_for().ok_or(Status::EINVAL)?;
    let (source, source_path) = under_fresh_name(srv, name_for, |dest| temp.publish_entry(dest))?;
    let source = source.to_string();
    let linked = match indexed {
        Some((tx, store_path, sig)) => {
            tx.insert(&source, store_path, sig, 1).and_then(|()| link.place(srv, &source_path))
        }
        None => link.place(srv, &source_path),
    };
    let (name, link_path) = match linked {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&source_path);
            return Err(e);
        }
    };
    let file = temp.try_clone_file().map_err(io)?;
    Ok(link_change(srv, ts, name, link_path, source, Some((source_path, file))))
}

/// A link just made (`L link source`), after its source's `C` when that is new (its path and
/// file, to sync); undone if the batch fails: the link removed, its reference released, a new
/// source removed.
fn link_change(
    srv: &Arc<StorageServer>,
    ts: i64,
    link: String,
    link_path: PathBuf,
    source: String,
    new_source: Option<(PathBuf, File)>,
) -> Change<String> {
    let mut change = Change::new(link.clone());
    let mut new_path = None;
    if let Some((path, file)) = new_source {
        change =
            change.record(srv.own_change(ts, Op::Create, &source, String::new())).sync_file(file).sync_parent(&path);
        new_path = Some(path);
    }
    change = change.record(srv.own_change(ts, Op::Link, &link, source.clone())).sync_parent(&link_path);
    let s = srv.clone();
    change.settle(move |ok| {
        if !ok {
            let _ = std::fs::remove_file(&link_path);
            if let Some(d) = &s.dedup {
                let _ = d.update(|tx| tx.release(&source));
            }
            if let Some(p) = new_path {
                let _ = std::fs::remove_file(p);
            }
        }
    })
}

/// 20 CREATE_LINK (PROTOCOL.md §4.13): a new name for a file this storage holds, as a link to
/// it: a slave name when a master is given, else a fresh name carrying the source's size and
/// CRC32 (so `fdfs_file_info` reports the same). Counted in the de-duplication index.
pub async fn create_link(srv: &Arc<StorageServer>, req: CreateLinkReq) -> Result<String, Status> {
    srv.check_group(&req.group)?;
    let (src_name, src_path) = srv.resolve(&req.source_filename)?;
    if crate::trunk::is_trunk_name(&src_name) {
        // A link to a trunk slot is a slot of its own (type 'L'), under a fresh trunk name; a
        // slave name is a regular file's, which cannot name a slot.
        if !req.master_filename.is_empty() {
            return Err(Status::EOPNOTSUPP);
        }
        return super::trunk::create_link_slot(srv, req.source_filename, &req.ext).await;
    }
    let index = src_name.store_path_index as usize;
    let size =
        std::fs::symlink_metadata(&src_path).ok().filter(|m| m.file_type().is_file()).ok_or(Status::ENOENT)?.len();
    let ts = now_unix();
    let mut link = if req.master_filename.is_empty() {
        let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
        let content = (size, src_name.info().crc32);
        LinkName::Fresh(fresh_names(srv, ts, content, NameKind::Normal, req.ext.clone(), (index, high, low)))
    } else {
        let (_, master_path) = srv.resolve(&req.master_filename)?;
        if !master_path.exists() {
            return Err(Status::ENOENT);
        }
        let name = file_id::slave_filename(&req.master_filename, &req.prefix, &req.ext).map_err(|_| Status::EINVAL)?;
        let (_, path) = srv.resolve(&name)?;
        LinkName::Given { name, path, content_name_for: None }
    };
    let s = srv.clone();
    let source = req.source_filename;
    let name = srv
        .disk
        .write(index, move |_| {
            let (name, link_path) = match &s.dedup {
                Some(d) => d.update(|tx| {
                    tx.add_link(&source, index as u8, || super::dedup::sign_stored(&s.paths, d.method(), &source))?;
                    link.place(&s, &src_path)
                })?,
                None => link.place(&s, &src_path)?,
            };
            Ok(link_change(&s, ts, name, link_path, source, None))
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}

/// What removing a regular file or link did under the de-duplication index.
pub(super) enum Unlinked {
    Removed,
    /// A link, the last one to its source (name and path): the caller removes the source and
    /// records it. Without an index a link is its content's only name (a slave stored as a link).
    LastLinkTo(String, PathBuf),
    /// A source that links still name: left in place.
    Kept,
}

impl StorageServer {
    /// Removes `name` at `path` (a client's delete or a replicated one) keeping the reference
    /// counts right: a link gives back its reference to its source.
    pub(super) fn unlink_counted(&self, name: &str, path: &Path) -> Result<Unlinked, Status> {
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(Status::EISDIR);
        }
        let remove = || std::fs::remove_file(path).map_err(io);
        let source = meta
            .file_type()
            .is_symlink()
            .then(|| super::paths::link_target(path))
            .flatten()
            .and_then(|target| self.remote_name_of(&target))
            .and_then(|n| self.resolve(&n).ok().filter(|(_, p)| p.is_file()).map(|(_, p)| (n, p)));
        let Some(dedup) = &self.dedup else {
            remove()?;
            return Ok(source.map_or(Unlinked::Removed, |(n, p)| Unlinked::LastLinkTo(n, p)));
        };
        dedup.update(|tx| match source {
            Some((n, p)) => {
                let left = tx.release(&n)?;
                remove()?;
                Ok(if left.is_none_or(|l| l == 0) { Unlinked::LastLinkTo(n, p) } else { Unlinked::Removed })
            }
            None => match tx.refs(name)? {
                Some(links) if links > 0 => Ok(Unlinked::Kept),
                known => {
                    if known.is_some() {
                        tx.forget(name)?;
                    }
                    remove().map(|()| Unlinked::Removed)
                }
            },
        })
    }
}

impl StorageServer {
    /// Removes trunk name `name`'s slot (a client's delete or a replicated one) keeping the
    /// reference counts right: a link slot gives back its reference to its source. Returns the
    /// trunk file to sync when the slot was freed (its header zeroed, as C does) and what it
    /// did. Without an index a link slot's source is left alone (C's links without FastDHT are
    /// not counted).
    fn unlink_trunk_counted(&self, filename: &str, name: &RemoteFilename) -> Result<(Option<File>, Unlinked), Status> {
        let root = self.store_root(name);
        let slot = crate::trunk::open(name, &root).map_err(io)?.ok_or(Status::ENOENT)?;
        let source = crate::trunk::link_target(&slot, self.paths.paths.len()).map_err(io)?;
        let free = || crate::trunk::free(name, &root).map_err(io)?.ok_or(Status::ENOENT).map(Some);
        let Some(dedup) = &self.dedup else { return Ok((free()?, Unlinked::Removed)) };
        dedup.update(|tx| match source {
            Some(source) => {
                let source = source.to_string();
                let left = tx.release(&source)?;
                let file = free()?;
                let path = self.resolve(&source)?.1;
                Ok((
                    file,
                    if left.is_none_or(|l| l == 0) { Unlinked::LastLinkTo(source, path) } else { Unlinked::Removed },
                ))
            }
            None => match tx.refs(filename)? {
                Some(links) if links > 0 => Ok((None, Unlinked::Kept)),
                known => {
                    if known.is_some() {
                        tx.forget(filename)?;
                    }
                    Ok((free()?, Unlinked::Removed))
                }
            },
        })
    }

    /// Removes `filename` at `path` (a client's delete or a replicated one; a regular file, a
    /// link, or a trunk slot), counted: `change` with what the round must sync, and what the
    /// removal did.
    pub(super) fn remove_counted<T>(
        &self,
        change: Change<T>,
        filename: &str,
        path: &Path,
    ) -> Result<(Change<T>, Unlinked), Status> {
        if let Some((name, _)) = self.trunk_name(filename) {
            let (file, unlinked) = self.unlink_trunk_counted(filename, &name)?;
            return Ok((file.into_iter().fold(change, Change::sync_file), unlinked));
        }
        let unlinked = self.unlink_counted(filename, path)?;
        Ok((change.sync_parent(path), unlinked))
    }

    /// Removes a source whose last link went (its regular file at `path`, or its trunk slot),
    /// recorded by `record`. Returns `change` with it, and the trunk slot freed (for the trunk
    /// server, when this storage is the source's).
    pub(super) fn remove_source<T>(
        &self,
        change: Change<T>,
        source: &str,
        path: &Path,
        record: Record,
    ) -> (Change<T>, Option<crate::trunk::space::Block>) {
        if let Some((name, root)) = self.trunk_name(source) {
            return match crate::trunk::free(&name, &root) {
                Ok(Some(file)) => (change.record(record).sync_file(file), super::trunk::block_of_name(&name)),
                _ => (change, None),
            };
        }
        match std::fs::remove_file(path) {
            Ok(()) => (change.record(record).sync_parent(path), None),
            Err(_) => (change, None),
        }
    }
}

/// 12: the file and its metadata file.
pub async fn delete(srv: &Arc<StorageServer>, filename: String) -> Result<(), Status> {
    let (name, path) = srv.resolve(&filename)?;
    let _lock = srv.lock_file(&path).await;
    let s = srv.clone();
    let ts = now_unix();
    let slot = crate::trunk::is_trunk_name(&name).then(|| super::trunk::block_of_name(&name)).flatten();
    let freed_source = srv
        .disk
        .write(name.store_path_index as usize, move |_| {
            let change = Change::new(None).record(s.own_change(ts, Op::Delete, &filename, String::new()));
            let (mut change, unlinked) = s.remove_counted(change, &filename, &path)?;
            match unlinked {
                // A name no client is given, still named by links: removing it would leave
                // them dangling.
                Unlinked::Kept => return Err(Status::EBUSY),
                Unlinked::LastLinkTo(source, source_path) => {
                    let record = s.own_change(ts, Op::Delete, &source, String::new());
                    let (c, freed) = s.remove_source(change, &source, &source_path, record);
                    change = c.map(|_| freed);
                }
                Unlinked::Removed => {}
            }
            if std::fs::remove_file(meta_path(&path)).is_ok() {
                change = change.record(s.own_change(ts, Op::Delete, &format!("{filename}-m"), String::new()));
            }
            Ok(change)
        })
        .await?;
    srv.changed(ts);
    // Slots are free for the trunk server once the deletes are durable.
    for slot in slot.into_iter().chain(freed_source) {
        super::trunk::freed(srv, slot).await;
    }
    Ok(())
}

/// Whether the file a name names is stored here: its regular file, or for a trunk name its slot
/// (a link slot's with the file it names).
fn stored(srv: &StorageServer, name: &RemoteFilename, path: &Path) -> Result<bool, Status> {
    if crate::trunk::is_trunk_name(name) {
        return Ok(srv.open_trunk_content(name)?.is_some());
    }
    Ok(path.is_file())
}

pub fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-m");
    PathBuf::from(p)
}

/// Merges two sorted metadata lists; `new` wins on equal names.
fn merge_metadata(old: Vec<(Vec<u8>, Vec<u8>)>, new: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some(o), Some(n)) if o.0 == n.0 => {
                old.next();
                out.extend(new.next());
            }
            (Some(o), Some(n)) if o.0 < n.0 => out.extend(old.next()),
            (_, Some(_)) => out.extend(new.next()),
            (Some(_), None) => out.extend(old.next()),
            (None, None) => return out,
        }
    }
}

/// 13 (PROTOCOL.md §4.6): overwrite or merge, stored sorted by name, under the file's lock
/// (two merges at once would lose one's keys).
pub async fn set_metadata(srv: &Arc<StorageServer>, req: SetMetadataReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let (name, path) = srv.resolve(&req.filename)?;
    let _lock = srv.lock_file(&path).await;
    let s = srv.clone();
    let ts = now_unix();
    srv.disk
        .write(name.store_path_index as usize, move |w| {
            if !stored(&s, &name, &path)? {
                return Err(Status::ENOENT);
            }
            let meta = meta_path(&path);
            let existed = meta.exists();
            let logname = format!("{}-m", req.filename);
            let mut new = parse_metadata(&req.meta);
            if req.meta.is_empty() {
                if req.op == MetaOp::Overwrite && existed {
                    std::fs::remove_file(&meta).map_err(io)?;
                    let record = s.own_change(ts, Op::Delete, &logname, String::new());
                    return Ok(Change::new(()).record(record).sync_parent(&meta));
                }
                return Ok(Change::new(()));
            }
            new.sort_by(|a, b| a.0.cmp(&b.0));
            let merged = if req.op == MetaOp::Merge && existed {
                merge_metadata(parse_metadata(&std::fs::read(&meta).map_err(io)?), new)
            } else {
                new
            };
            let temp = write_temp(w, &pack_metadata(&merged), SystemTime::now()).map_err(io)?;
            let file = temp.try_clone_file().map_err(io)?;
            temp.replace_entry(&meta).map_err(io)?;
            let op = if existed { Op::Update } else { Op::Create };
            Ok(Change::new(()).record(s.own_change(ts, op, &logname, String::new())).sync_file(file).sync_parent(&meta))
        })
        .await?;
    srv.changed(ts);
    Ok(())
}

/// 15.
pub async fn get_metadata(srv: &Arc<StorageServer>, group: &str, filename: &str) -> Result<Vec<u8>, Status> {
    srv.check_group(group)?;
    let (name, path) = srv.resolve(filename)?;
    let s = srv.clone();
    Disk::read(move || {
        if !stored(&s, &name, &path)? {
            return Err(Status::ENOENT);
        }
        std::fs::read(meta_path(&path)).map_err(io)
    })
    .await
}

pub(super) fn crc_of(path: &Path) -> std::io::Result<u32> {
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
pub async fn file_info(
    srv: &Arc<StorageServer>,
    group: &str,
    filename: &str,
    flags: u8,
) -> Result<FileInfoResp, Status> {
    srv.check_group(group)?;
    let (name, path) = srv.resolve(filename)?;
    let info = name.info();
    let file_type = info.file_type;
    let s = srv.clone();
    let (size, mtime, computed) = Disk::read(move || {
        if crate::trunk::is_trunk_name(&name) {
            // Size, time and CRC are the name's, as C reports them, once the slot holds it; a
            // link slot reports the file it names (the link's name carries the original's CRC).
            let slot = s.open_trunk_content(&name)?.ok_or(Status::ENOENT)?;
            return Ok((slot.size, slot.mtime as i64, None));
        }
        let m = std::fs::metadata(&path).map_err(io)?;
        if !m.is_file() {
            return Err(Status::ENOENT);
        }
        let computed = match file_type {
            FileType::Normal => None,
            _ if flags & file_info_flags::NO_CRC32 != 0 => Some(0),
            _ => Some(crc_of(&path).map_err(io)?),
        };
        Ok((m.len(), m.modified().map(unix).unwrap_or(0), computed))
    })
    .await?;
    let source_ip = match info.source {
        Source::Ip(ip) => ip.to_string(),
        Source::ServerId(id) => srv.storage_id_host(id).unwrap_or_default(),
    };
    Ok(FileInfoResp {
        file_size: size as i64,
        create_timestamp: mtime,
        crc32: FileInfoResp::with_crc32(computed.unwrap_or(info.crc32)),
        source_ip,
    })
}

/// Resolves an appender file for append/modify/truncate/regenerate.
pub fn appender(srv: &StorageServer, filename: &str) -> Result<(RemoteFilename, PathBuf), Status> {
    let (name, path) = srv.resolve(filename)?;
    if name.info().file_type != FileType::Appender {
        return Err(Status::EINVAL);
    }
    Ok((name, path))
}

/// The size of an existing regular file.
fn regular_size(path: &Path) -> Result<u64, Status> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m.len()),
        Ok(_) => Err(Status::EINVAL),
        Err(e) => Err(io(e)),
    }
}

/// Where a range change writes, and how it is recorded.
pub(super) struct RangeChange {
    pub path: PathBuf,
    pub index: usize,
    /// `None`: at the end (an append).
    pub offset: Option<u64>,
    pub record: Box<dyn FnOnce(u64) -> Record + Send>,
    /// Set on the file after the write (replicated changes carry the source's time).
    pub mtime: Option<SystemTime>,
}

/// Writes a request's content into an existing file (append at the end, or at an offset),
/// all or nothing: the bytes it overwrites are saved first, and a failed, refused or cancelled
/// change is rolled back. The caller holds the file's lock. Small content is written by the
/// writer job itself; large content is streamed first, then committed by one.
pub(super) async fn write_range<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    change: RangeChange,
    content: &mut Content<'_, R>,
) -> OpResult<()> {
    let RangeChange { path, index, offset, record, mtime } = change;
    let len = content.left();
    let p = path.clone();
    let (old_size, at_offset) = Disk::read(move || {
        let old = regular_size(&p)?;
        Ok((old, offset.unwrap_or(old)))
    })
    .await
    .map_err(closing)?;
    if at_offset > old_size {
        return Err(closing(Status::EINVAL));
    }
    let settle_mtime = move |f: &Path| {
        if let Some(t) = mtime {
            let _ = File::options().write(true).open(f).and_then(|f| f.set_modified(t));
        }
    };
    if len <= SMALL {
        let (bytes, _) = content.read_all().await.map_err(|e| closing(io(e)))?;
        let copy = srv.paths.temp_path(index);
        return Ok(srv
            .disk
            .write(index, move |w| {
                let undo = Rollback::capture(&path, at_offset, len, copy).map_err(io)?;
                let f = write_at(&path, at_offset, &bytes).map_err(io)?;
                w.wrote(&f, len).map_err(io)?;
                settle_mtime(&path);
                let mut change = Change::new(()).sync_file(f);
                if len > 0 {
                    change = change.record(record(old_size));
                }
                Ok(change.settle(move |ok| undo.settle(ok)))
            })
            .await?);
    }
    let (p, copy) = (path.clone(), srv.paths.temp_path(index));
    let undo = Disk::read(move || Rollback::capture(&p, at_offset, len, copy).map_err(io)).await.map_err(closing)?;
    let p = path.clone();
    let file = Disk::read(move || OpenOptions::new().write(true).open(&p).map_err(io)).await.map_err(closing)?;
    let file = Arc::new(file);
    if let Err(e) = srv.disk.stream_into(file.clone(), at_offset, content, undo.fence()).await {
        // Rolled back on the blocking pool: it copies the saved range back.
        let _ = Disk::read(move || {
            drop(undo);
            Ok(())
        })
        .await;
        return Err(closing(io(e)));
    }
    Ok(srv
        .disk
        .write(index, move |_| {
            settle_mtime(&path);
            let f = file.try_clone().map_err(io)?;
            Ok(Change::new(()).record(record(old_size)).sync_file(f).settle(move |ok| undo.settle(ok)))
        })
        .await?)
}

/// 24 / 34: an append at the end, or a modify at an offset, of an appender file.
pub async fn append_or_modify<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    filename: &str,
    offset: Option<u64>,
    content: &mut Content<'_, R>,
) -> OpResult<()> {
    let (name, path) = appender(srv, filename).map_err(closing)?;
    let _lock = srv.lock_file(&path).await;
    let ts = now_unix();
    let (s, f, len) = (srv.clone(), filename.to_owned(), content.left());
    let record: Box<dyn FnOnce(u64) -> Record + Send> = Box::new(move |old_size| match offset {
        None => s.own_change(ts, Op::Append, &f, format!("{old_size} {len}")),
        Some(o) => s.own_change(ts, Op::Modify, &f, format!("{o} {len}")),
    });
    let change = RangeChange { path, index: name.store_path_index as usize, offset, record, mtime: None };
    write_range(srv, change, content).await?;
    srv.changed(ts);
    Ok(())
}

/// 24.
pub async fn append<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &AppendHead,
    content: &mut Content<'_, R>,
) -> OpResult<()> {
    append_or_modify(srv, &head.filename, None, content).await
}

/// 34.
pub async fn modify<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &ModifyHead,
    content: &mut Content<'_, R>,
) -> OpResult<()> {
    append_or_modify(srv, &head.filename, Some(head.offset), content).await
}

/// 36.
pub async fn truncate(srv: &Arc<StorageServer>, req: TruncateReq) -> Result<(), Status> {
    let (name, path) = appender(srv, &req.filename)?;
    let _lock = srv.lock_file(&path).await;
    let index = name.store_path_index as usize;
    let (s, copy, new_size) = (srv.clone(), srv.paths.temp_path(index), req.new_size);
    let ts = srv
        .disk
        .write(index, move |_| {
            let old = regular_size(&path)?;
            if old == new_size {
                return Ok(Change::new(None));
            }
            let undo = Rollback::capture(&path, new_size, old.saturating_sub(new_size), copy).map_err(io)?;
            let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.set_len(new_size).map_err(io)?;
            let ts = f.metadata().and_then(|m| m.modified()).map(unix).unwrap_or_else(|_| now_unix());
            let record = s.own_change(ts, Op::Truncate, &req.filename, format!("{old} {new_size}"));
            Ok(Change::new(Some(ts)).record(record).sync_file(f).settle(move |ok| undo.settle(ok)))
        })
        .await?;
    if let Some(ts) = ts {
        srv.changed(ts);
    }
    Ok(())
}

/// 38: an appender file becomes a normal one under a new name with its real size and CRC.
pub async fn regenerate(srv: &Arc<StorageServer>, filename: String) -> Result<String, Status> {
    let (name, path) = appender(srv, &filename)?;
    let _lock = srv.lock_file(&path).await;
    let (s, source) = (srv.clone(), srv.source());
    let ts = now_unix();
    let new_name = srv
        .disk
        .write(name.store_path_index as usize, move |_| {
            let size = regular_size(&path)?;
            let crc = crc_of(&path).map_err(io)?;
            File::open(&path).and_then(|f| f.set_modified(at(ts))).map_err(io)?;
            let new_name = |rng: &mut fastrand::Rng| {
                let core = file_id::NameCore {
                    source,
                    timestamp: ts as u32,
                    size_field: file_id::size_field(NameKind::Normal, size, rng),
                    crc32: crc,
                };
                file_id::with_core(&name, &core)
            };
            let (new, dest) = under_fresh_name(&s, new_name, |dest| crate::durable::rename_entry(&path, dest))?;
            let new = new.to_string();
            let record = s.own_change(ts, Op::Rename, &new, filename);
            let (from, to) = (path, dest);
            let change = Change::new(new).record(record).sync_parent(&to).sync_parent(&from);
            Ok(change.settle(move |ok| {
                if !ok {
                    let _ = std::fs::rename(&to, &from);
                }
            }))
        })
        .await?;
    srv.changed(ts);
    Ok(new_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_merges_by_name_and_the_new_value_wins() {
        let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let old = vec![kv("a", "1"), kv("c", "3"), kv("d", "4")];
        let new = vec![kv("b", "2"), kv("c", "30"), kv("e", "5")];
        assert_eq!(
            merge_metadata(old, new),
            vec![kv("a", "1"), kv("b", "2"), kv("c", "30"), kv("d", "4"), kv("e", "5")]
        );
    }
}
