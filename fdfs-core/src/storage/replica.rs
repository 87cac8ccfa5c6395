//! Receiving replication (PROTOCOL.md §6.4): what a peer's SYNC_* commands do here. Every
//! applied change is logged with the lowercase op and the source's timestamp (so it is never
//! sent back), and the newest source timestamp applied per peer is kept for SYNC_REPORT.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::binlog::{Op, Record};
use super::ops::{receive, OpError, OpResult};
use super::StorageServer;
use crate::protocol::peer::{SyncFileHead, SyncRangeHead};
use crate::protocol::Status;

fn at(ts: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64)
}

fn closing(status: Status) -> OpError {
    OpError { status, close: true }
}

impl StorageServer {
    /// Records a replicated change durably and remembers how far we are with its source
    /// (blocking). An error means the change must not be acknowledged to the sender.
    pub fn log_replica(
        &self,
        source: Option<&str>,
        timestamp: i64,
        op: Op,
        filename: &str,
        extra: String,
    ) -> Result<(), Status> {
        self.commit(&Record { timestamp, op, replica: true, filename: filename.to_owned(), extra })?;
        self.replicated(source, timestamp);
        Ok(())
    }

    /// [`Self::log_replica`] from async code.
    pub async fn log_replica_async(
        &self,
        source: Option<&str>,
        timestamp: i64,
        op: Op,
        filename: &str,
        extra: String,
    ) -> Result<(), Status> {
        self.commit_async(Record { timestamp, op, replica: true, filename: filename.to_owned(), extra }).await?;
        self.replicated(source, timestamp);
        Ok(())
    }

    fn replicated(&self, source: Option<&str>, timestamp: i64) {
        self.stats.last_sync_update.store(crate::timefmt::now_unix(), Ordering::Relaxed);
        // Only members of our group count (a peer could claim any ID), which also bounds the map.
        let known = |src: &str| self.peer(src).is_some();
        if let Some(src) = source.filter(|s| known(s)) {
            let mut m = self.synced_from.lock().unwrap_or_else(|e| e.into_inner());
            let v = m.entry(src.to_owned()).or_insert(0);
            *v = (*v).max(timestamp as i32);
        }
    }

    pub fn resolve_any(&self, filename: &str) -> Result<std::path::PathBuf, Status> {
        match filename.strip_suffix("-m") {
            Some(base) => Ok(super::ops::meta_path(&self.resolve(base)?.1)),
            None => Ok(self.resolve(filename)?.1),
        }
    }
}

/// Reads and drops `len` bytes of content we do not need.
async fn drain(src: &mut (impl AsyncRead + Unpin), len: u64) -> OpResult<()> {
    let n = tokio::io::copy(&mut src.take(len), &mut tokio::io::sink()).await.map_err(|_| closing(Status::EIO))?;
    if n != len {
        return Err(closing(Status::EIO));
    }
    Ok(())
}

/// 16 / 18. No content follows when the sender said so (header status 17).
pub async fn sync_file(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    source: Option<&str>,
    head: &SyncFileHead,
    update: bool,
) -> OpResult<()> {
    let (filename, size, timestamp, content) =
        (head.filename.as_str(), head.file_size, head.timestamp as i64, !head.content_omitted);
    let path = srv.resolve_any(filename).map_err(closing)?;
    let op = if update { Op::Update } else { Op::Create };
    if !content {
        srv.log_replica_async(source, timestamp, op, filename, String::new()).await?;
        return Err(Status::EEXIST.into());
    }
    let same = std::fs::metadata(&path).map(|m| m.is_file() && m.len() == size).unwrap_or(false);
    if same && !update {
        drain(src, size).await?;
        srv.log_replica_async(source, timestamp, op, filename, String::new()).await?;
        return Err(Status::EEXIST.into());
    }
    let index = crate::file_id::RemoteFilename::parse(filename.trim_end_matches("-m"), Some(srv.paths.paths.len()))
        .map(|n| n.store_path_index as usize)
        .unwrap_or(0);
    let (temp, _) = receive(srv, src, index, size, at(timestamp)).await.map_err(|e| closing(Status::from_io(&e)))?;
    let dest = path.clone();
    tokio::task::spawn_blocking(move || temp.replace(&dest)).await.map_err(|_| Status::EIO)?.map_err(OpError::from)?;
    srv.stats.total_sync_in_bytes.fetch_add(size as i64, Ordering::Relaxed);
    srv.stats.success_sync_in_bytes.fetch_add(size as i64, Ordering::Relaxed);
    // Unlogged, the sender gets an error and sends it again; the copy here then counts as done.
    Ok(srv.log_replica_async(source, timestamp, op, filename, String::new()).await?)
}

/// 17.
pub fn sync_delete(srv: &StorageServer, source: Option<&str>, filename: &str, timestamp: i64) -> Result<(), Status> {
    let path = srv.resolve_any(filename)?;
    std::fs::remove_file(&path).map_err(|e| Status::from_io(&e))?;
    srv.log_replica(source, timestamp, Op::Delete, filename, String::new())
}

/// 25 / 35: append at `offset` (only if we are exactly there) or modify at `offset`.
pub async fn sync_range(
    srv: &StorageServer,
    src: &mut (impl AsyncRead + Unpin),
    source: Option<&str>,
    head: &SyncRangeHead,
    append: bool,
) -> OpResult<()> {
    let (filename, offset, len, timestamp) = (head.filename.as_str(), head.offset, head.size, head.timestamp as i64);
    let path = srv.resolve_any(filename).map_err(closing)?;
    let _lock = srv.lock_file(&path).await;
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(_) => {
            drain(src, len).await?;
            return Err(Status::ENOENT.into());
        }
    };
    if append && size >= offset + len {
        drain(src, len).await?;
        return Err(Status::EEXIST.into());
    }
    if (append && size != offset) || (!append && size < offset) {
        drain(src, len).await?;
        return Err(Status::ENOENT.into());
    }
    let f = super::ops::write_at(src, &path, offset, len, srv.body_timer(len)).await?;
    let f = f.into_std().await;
    let _ = f.set_modified(at(timestamp));
    let op = if append { Op::Append } else { Op::Modify };
    Ok(srv.log_replica_async(source, timestamp, op, filename, format!("{offset} {len}")).await?)
}

/// 37: only when we are at the size the source truncated from (else EEXIST, as 6.16 does).
pub fn sync_truncate(
    srv: &StorageServer,
    source: Option<&str>,
    filename: &str,
    old: u64,
    new: u64,
    timestamp: i64,
) -> Result<(), Status> {
    let path = srv.resolve_any(filename)?;
    let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| Status::from_io(&e))?;
    let size = f.metadata().map_err(|e| Status::from_io(&e))?.len();
    if size != old {
        return Err(Status::EEXIST);
    }
    f.set_len(new).map_err(|e| Status::from_io(&e))?;
    f.sync_all().map_err(|e| Status::from_io(&e))?;
    let _ = f.set_modified(at(timestamp));
    srv.log_replica(source, timestamp, Op::Truncate, filename, format!("{old} {new}"))
}

/// 40: an appender file became a normal one at the source.
pub fn sync_rename(
    srv: &StorageServer,
    source: Option<&str>,
    new: &str,
    old: &str,
    timestamp: i64,
) -> Result<(), Status> {
    let to = srv.resolve_any(new)?;
    let from = srv.resolve_any(old)?;
    if to.exists() {
        return Err(Status::EEXIST);
    }
    crate::durable::rename_no_replace(&from, &to).map_err(|e| Status::from_io(&e))?;
    let _ = std::fs::File::open(&to).and_then(|f| f.set_modified(at(timestamp)));
    srv.log_replica(source, timestamp, Op::Rename, new, old.to_owned())
}

/// 19: a slave stored as a link to its real file.
pub fn sync_link(
    srv: &StorageServer,
    source: Option<&str>,
    link: &str,
    target: &str,
    timestamp: i64,
) -> Result<(), Status> {
    let l = srv.resolve_any(link)?;
    let t = srv.resolve_any(target)?;
    if l.exists() {
        return Err(Status::EEXIST);
    }
    std::os::unix::fs::symlink(&t, &l).map_err(|e| Status::from_io(&e))?;
    srv.log_replica(source, timestamp, Op::Link, link, target.to_owned())?;
    Ok(())
}
