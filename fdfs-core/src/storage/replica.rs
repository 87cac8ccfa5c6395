//! Receiving replication (PROTOCOL.md §6.4): what a peer's SYNC_* commands do here, one
//! function per command, each change made and recorded by a writer job. Every applied change
//! is logged with the lowercase op and the source's timestamp (so it is never sent back), and
//! the newest source timestamp applied per peer is kept for SYNC_REPORT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncRead;

use super::answer::{closing, io, OpResult};
use super::binlog::{Op, Record};
use super::content::{Content, SMALL};
use super::disk::{Change, Disk};
use super::ops::{receive, write_range, RangeChange, Unlinked};
use super::StorageServer;
use crate::protocol::peer::{SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq};
use crate::protocol::Status;
use crate::timefmt::system_time;
use crate::trunk::SlotKind;

impl StorageServer {
    /// After a replicated change is committed: remembers how far we are with its source.
    fn replicated(&self, source: Option<&str>, timestamp: i64) {
        self.stats.last_sync_update.store(crate::timefmt::now_unix(), Ordering::Relaxed);
        // Only members of our group count (a peer could claim any ID), which also bounds the map.
        let known = |src: &str| self.membership.peer(src).is_some();
        if let Some(src) = source.filter(|s| known(s)) {
            self.membership.note_synced_from(src, timestamp as i32);
        }
    }

    /// Commits a replicated change that needs nothing more on disk (we have it already).
    async fn record_only(&self, index: usize, source: Option<&str>, r: Record) -> Result<(), Status> {
        let ts = r.timestamp;
        self.disk.write(index, move |_| Ok(Change::new(()).record(r))).await?;
        self.replicated(source, ts);
        Ok(())
    }
}

/// 16 / 18. No content follows when the sender said so (header status 17).
pub async fn sync_file<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    source: Option<&str>,
    head: &SyncFileHead,
    content: &mut Content<'_, R>,
    update: bool,
) -> OpResult<()> {
    let (filename, size, ts) = (head.filename.as_str(), head.file_size, head.timestamp as i64);
    let (index, path) = srv.paths.resolve_any(filename).map_err(closing)?;
    let op = if update { Op::Update } else { Op::Create };
    let record = Record::replicated(ts, op, filename, String::new());
    if head.content_omitted {
        srv.record_only(index, source, record).await?;
        return Err(Status::EEXIST.into());
    }
    // A copy already here is not written again. Small content is received into memory
    // whatever happens, so for it this is found out when it is published (a rename that does
    // not replace): a new file, the common case, then costs no lookup of a name not there.
    let p = path.clone();
    let same = !update
        && size > SMALL
        && srv.disk.probe(move || Ok(std::fs::metadata(&p).is_ok_and(|m| same_size(&m, size)))).await?;
    if same {
        content.drain().await.map_err(|e| closing(io(e)))?;
        srv.record_only(index, source, record).await?;
        return Err(Status::EEXIST.into());
    }
    let (body, _) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
    let _lock = srv.lock_file(&path).await;
    if let Some((name, root)) = srv.paths.trunk_name(filename) {
        // A trunk-resident file goes where the source has it: same trunk file, same slot (C).
        srv.disk
            .write(index, move |_| {
                let trunk = match body {
                    super::body::Body::Bytes(b) => crate::trunk::write(&name, &root, SlotKind::File, &mut &b[..], size),
                    super::body::Body::File(mut t) => {
                        let f = t.file();
                        std::io::Seek::rewind(f)
                            .and_then(|()| crate::trunk::write(&name, &root, SlotKind::File, f, size))
                    }
                }
                .map_err(io)?;
                Ok(Change::new(()).record(record).sync_file(trunk))
            })
            .await?;
        srv.replicated(source, ts);
        return Ok(());
    }
    // Unrecorded, the sender gets an error and sends it again; a copy left here then counts as done.
    let already_here = srv
        .disk
        .write(index, move |w| {
            let mut temp = body.into_temp(w, system_time(ts)).map_err(io)?;
            let (file, existed) = if update {
                let existed = path.exists();
                (temp.replace_entry(&path).map_err(io)?, existed)
            } else {
                match temp.publish_entry(&path) {
                    Ok(()) => (temp.into_published_file(), false),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if std::fs::metadata(&path).is_ok_and(|m| same_size(&m, size)) {
                            // The temp file goes when dropped; the copy here is recorded.
                            return Ok(Change::new(true).record(record));
                        }
                        (temp.replace_entry(&path).map_err(io)?, true)
                    }
                    Err(e) => return Err(io(e)),
                }
            };
            let change = Change::new(false).record(record).sync_file(file).sync_parent(&path);
            Ok(change.settle(move |ok| {
                if !ok && !existed {
                    let _ = std::fs::remove_file(&path);
                }
            }))
        })
        .await?;
    srv.replicated(source, ts);
    if already_here {
        return Err(Status::EEXIST.into());
    }
    Ok(())
}

/// A file here that a create replicated from a peer leaves as it is: C's test, the same size.
fn same_size(m: &std::fs::Metadata, size: u64) -> bool {
    m.is_file() && m.len() == size
}

/// 17.
pub async fn sync_delete(srv: &Arc<StorageServer>, source: Option<&str>, req: SyncDeleteReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let (index, path) = srv.paths.resolve_any(&req.filename)?;
    let _lock = srv.lock_file(&path).await;
    let ts = req.timestamp as i64;
    let s = srv.clone();
    srv.disk
        .write(index, move |_| {
            let record = Record::replicated(ts, Op::Delete, &req.filename, String::new());
            // A link gives back its reference, and the last one here frees its source here
            // (every member counts every link, so each frees the content when its own count
            // ends; the source storage's `D` for it then finds it gone; the trunk server hears
            // of freed slots from the storage the client deleted on). A source still linked to
            // here (a link made on this member meanwhile) is kept, so no link dangles.
            let (mut change, unlinked) = s.remove_counted(Change::new(()).record(record), &req.filename, &path)?;
            match unlinked {
                Unlinked::Kept => {
                    tracing::warn!("{}: deleted by its source storage, kept: links made here name it", req.filename)
                }
                Unlinked::LastLinkTo(t, p) => {
                    change = s.remove_source(change, &t, &p, Record::replicated(ts, Op::Delete, &t, String::new())).0;
                }
                Unlinked::Removed => {}
            }
            Ok(change)
        })
        .await?;
    srv.replicated(source, ts);
    Ok(())
}

/// 25 / 35: append at `offset` (only if we are exactly there) or modify at `offset`.
pub async fn sync_range<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    source: Option<&str>,
    head: &SyncRangeHead,
    content: &mut Content<'_, R>,
    append: bool,
) -> OpResult<()> {
    let (offset, len, ts) = (head.offset, head.size, head.timestamp as i64);
    let (index, path) = srv.paths.resolve_any(&head.filename).map_err(closing)?;
    let _lock = srv.lock_file(&path).await;
    let p = path.clone();
    let size = Disk::read(move || Ok(std::fs::metadata(&p).ok().map(|m| m.len()))).await?;
    let refused = match size {
        None => Some(Status::ENOENT),
        Some(size) if append && size >= offset + len => Some(Status::EEXIST),
        Some(size) if (append && size != offset) || (!append && size < offset) => Some(Status::ENOENT),
        Some(_) => None,
    };
    if let Some(status) = refused {
        content.drain().await.map_err(|e| closing(io(e)))?;
        return Err(status.into());
    }
    let op = if append { Op::Append } else { Op::Modify };
    let filename = head.filename.clone();
    let record: Box<dyn FnOnce(u64) -> Record + Send> =
        Box::new(move |_| Record::replicated(ts, op, &filename, format!("{offset} {len}")));
    let change = RangeChange { path, index, offset: Some(offset), record, mtime: Some(system_time(ts)) };
    write_range(srv, change, content).await?;
    srv.replicated(source, ts);
    Ok(())
}

/// 37: only when we are at the size the source truncated from (else EEXIST, as 6.16 does).
pub async fn sync_truncate(srv: &Arc<StorageServer>, source: Option<&str>, req: SyncTruncateReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let (index, path) = srv.paths.resolve_any(&req.filename)?;
    let _lock = srv.lock_file(&path).await;
    let ts = req.timestamp as i64;
    let copy = srv.paths.temp_path(index);
    srv.disk
        .write(index, move |_| {
            let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            let size = f.metadata().map_err(io)?.len();
            if size != req.old_size {
                return Err(Status::EEXIST);
            }
            let undo = super::disk::Rollback::capture(&path, req.new_size, size.saturating_sub(req.new_size), copy)
                .map_err(io)?;
            f.set_len(req.new_size).map_err(io)?;
            let _ = f.set_modified(system_time(ts));
            let extra = format!("{} {}", req.old_size, req.new_size);
            Ok(Change::new(())
                .record(Record::replicated(ts, Op::Truncate, &req.filename, extra))
                .sync_file(f)
                .settle(move |ok| undo.settle(ok)))
        })
        .await?;
    srv.replicated(source, ts);
    Ok(())
}

/// 40 (an appender file became a normal one at the source) and 19 (a slave stored as a link
/// to its real file).
pub async fn sync_rename_or_link(
    srv: &Arc<StorageServer>,
    source: Option<&str>,
    req: SyncLinkReq,
    rename: bool,
) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let (index, to) = srv.paths.resolve_any(&req.dest)?;
    let (src_index, from) = srv.paths.resolve_any(&req.src)?;
    let _lock = srv.lock_file(&to).await;
    let ts = req.timestamp as i64;
    let s = srv.clone();
    srv.disk
        .write(index, move |_| {
            // A link slot (de-duplication in trunk mode) goes where the source has it, its text
            // naming the same file; any other link is a symbolic link.
            let slot = s.paths.trunk_name(&req.dest).filter(|_| !rename);
            let exists = match &slot {
                Some((name, root)) => crate::trunk::open(name, root).map_err(io)?.is_some(),
                None => to.exists(),
            };
            if exists {
                return Err(Status::EEXIST);
            }
            let op = if rename { Op::Rename } else { Op::Link };
            let change = Change::new(()).record(Record::replicated(ts, op, &req.dest, req.src.clone()));
            let link = |change: Change<()>| match &slot {
                Some((name, root)) => {
                    let text = req.src.as_bytes();
                    let file = crate::trunk::write(name, root, SlotKind::Link, &mut &text[..], text.len() as u64);
                    Ok(change.sync_file(file.map_err(io)?))
                }
                None => {
                    super::paths::symlink(&from, &to).map_err(io)?;
                    Ok(change.sync_parent(&to).sync_parent(&from))
                }
            };
            let change = match &s.dedup {
                _ if rename => {
                    crate::durable::rename_entry(&from, &to).map_err(io)?;
                    let _ = std::fs::File::open(&to).and_then(|f| f.set_modified(system_time(ts)));
                    change.sync_parent(&to).sync_parent(&from)
                }
                // Counted as at the source: this member's uploads may link to it too.
                Some(d) => d.update(|tx| {
                    tx.add_link(&req.src, src_index as u8, || {
                        super::dedup::sign_stored(&s.paths, d.method(), &req.src)
                    })?;
                    link(change)
                })?,
                None => link(change)?,
            };
            Ok(change.settle(move |ok| {
                if !ok {
                    let _ = match &slot {
                        _ if rename => std::fs::rename(&to, &from),
                        Some((name, root)) => crate::trunk::free(name, root).map(drop),
                        None => std::fs::remove_file(&to),
                    };
                    if let Some(d) = s.dedup.as_ref().filter(|_| !rename) {
                        let _ = d.update(|tx| tx.release(&req.src));
                    }
                }
            }))
        })
        .await?;
    srv.replicated(source, ts);
    Ok(())
}
