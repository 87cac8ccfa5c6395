//! De-duplication with regular files and 20 CREATE_LINK: a symbolic link under the file ID to
//! a source file that holds the content, counted in the de-duplication index.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::file_id::{self, NameKind};
use crate::protocol::storage::CreateLinkReq;
use crate::protocol::Status;
use crate::storage::binlog::{Op, Record};
use crate::storage::dedup::Signature;
use crate::storage::disk::{Change, Disk, Writer};
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

use super::names::{fresh_names, under_fresh_name, NameFor};
use super::{io, Body};
use crate::storage::dedup::Held;
use crate::timefmt::system_time;

/// Where the link to a content goes.
pub(super) enum LinkName {
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
                let (name, path) =
                    under_fresh_name(&srv.paths, name_for, |dest| crate::storage::paths::symlink(target, dest))?;
                Ok((name.to_string(), path))
            }
            LinkName::Given { name, path, .. } => match crate::storage::paths::symlink(target, path) {
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
pub(super) fn linked_content(
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
            match Held::find(&srv.paths, &source, size) {
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

/// The content's signature when there is a de-duplication index, computed before the writer
/// job (off the store path's writer thread: on the blocking pool for content in a temp file).
pub(super) async fn signed(srv: &StorageServer, body: Body) -> Result<(Body, Option<Signature>), Status> {
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
    indexed: Option<(&mut crate::storage::dedup::Tx<'_>, u8, &Signature)>,
) -> Result<Change<String>, Status> {
    let mut temp = body.into_temp(w, system_time(ts)).map_err(io)?;
    let name_for = link.content_name_for().ok_or(Status::EINVAL)?;
    let (source, source_path) = under_fresh_name(&srv.paths, name_for, |dest| temp.publish_entry(dest))?;
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
    let file = temp.into_published_file();
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
        change = change.record(Record::own(ts, Op::Create, &source, String::new())).sync_file(file).sync_parent(&path);
        new_path = Some(path);
    }
    change = change.record(Record::own(ts, Op::Link, &link, source.clone())).sync_parent(&link_path);
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
    let src = srv.paths.locate(&req.source_filename)?;
    if src.in_slot {
        // A link to a trunk slot is a slot of its own (type 'L'), under a fresh trunk name; a
        // slave name is a regular file's, which cannot name a slot.
        if !req.master_filename.is_empty() {
            return Err(Status::EOPNOTSUPP);
        }
        return crate::storage::trunk::create_link_slot(srv, req.source_filename, &req.ext).await;
    }
    let index = src.name.store_path_index as usize;
    let size =
        std::fs::symlink_metadata(&src.path).ok().filter(|m| m.file_type().is_file()).ok_or(Status::ENOENT)?.len();
    let ts = now_unix();
    let mut link = if req.master_filename.is_empty() {
        let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
        let content = (size, src.name.info().crc32);
        LinkName::Fresh(fresh_names(
            srv.identity.source(),
            ts,
            content,
            NameKind::Normal,
            req.ext.clone(),
            (index, high, low),
        ))
    } else {
        let (_, master_path) = srv.paths.resolve(&req.master_filename)?;
        if !master_path.exists() {
            return Err(Status::ENOENT);
        }
        let name = file_id::slave_filename(&req.master_filename, &req.prefix, &req.ext).map_err(|_| Status::EINVAL)?;
        let (_, path) = srv.paths.resolve(&name)?;
        LinkName::Given { name, path, content_name_for: None }
    };
    let s = srv.clone();
    let source = req.source_filename;
    let name = srv
        .disk
        .write(index, move |_| {
            let (name, link_path) = match &s.dedup {
                Some(d) => d.update(|tx| {
                    tx.add_link(&source, index as u8, || {
                        crate::storage::dedup::sign_stored(&s.paths, d.method(), &source)
                    })?;
                    link.place(&s, &src.path)
                })?,
                None => link.place(&s, &src.path)?,
            };
            Ok(link_change(&s, ts, name, link_path, source, None))
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}
