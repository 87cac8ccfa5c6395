//! Appender files: 24 APPEND_FILE, 34 MODIFY_FILE, 36 TRUNCATE_FILE and 38 REGENERATE_APPENDER_FILENAME.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncRead;

use crate::file_id::{self, FileType, NameKind, RemoteFilename};
use crate::protocol::storage::{AppendHead, ModifyHead, TruncateReq};
use crate::protocol::Status;
use crate::storage::binlog::{Op, Record};
use crate::storage::content::{Content, SMALL};
use crate::storage::disk::{write_at, Change, Disk, Rollback};
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

use super::meta::crc_of;
use super::names::under_fresh_name;
use super::{closing, io, OpResult};
use crate::timefmt::{system_time, unix_secs};

/// Resolves an appender file for append/modify/truncate/regenerate.
pub fn appender(srv: &StorageServer, filename: &str) -> Result<(RemoteFilename, PathBuf), Status> {
    let (name, path) = srv.paths.resolve(filename)?;
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
pub(in crate::storage) struct RangeChange {
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
pub(in crate::storage) async fn write_range<R: AsyncRead + Unpin>(
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
    let (f, len) = (filename.to_owned(), content.left());
    let record: Box<dyn FnOnce(u64) -> Record + Send> = Box::new(move |old_size| match offset {
        None => Record::own(ts, Op::Append, &f, format!("{old_size} {len}")),
        Some(o) => Record::own(ts, Op::Modify, &f, format!("{o} {len}")),
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
    let (copy, new_size) = (srv.paths.temp_path(index), req.new_size);
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
            let ts = f.metadata().and_then(|m| m.modified()).map(unix_secs).unwrap_or_else(|_| now_unix());
            let record = Record::own(ts, Op::Truncate, &req.filename, format!("{old} {new_size}"));
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
    let (s, source) = (srv.clone(), srv.identity.source());
    let ts = now_unix();
    let new_name = srv
        .disk
        .write(name.store_path_index as usize, move |_| {
            let size = regular_size(&path)?;
            let crc = crc_of(&path).map_err(io)?;
            File::open(&path).and_then(|f| f.set_modified(system_time(ts))).map_err(io)?;
            let new_name = |rng: &mut fastrand::Rng| {
                let core = file_id::NameCore {
                    source,
                    timestamp: ts as u32,
                    size_field: file_id::size_field(NameKind::Normal, size, rng),
                    crc32: crc,
                };
                file_id::with_core(&name, &core)
            };
            let (new, dest) = under_fresh_name(&s.paths, new_name, |dest| crate::durable::rename_entry(&path, dest))?;
            let new = new.to_string();
            let record = Record::own(ts, Op::Rename, &new, filename);
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
