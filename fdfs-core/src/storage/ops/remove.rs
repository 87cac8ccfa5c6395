//! 12 DELETE_FILE: the file, its metadata and its slot or link removed; a de-duplicated source
//! only when its last reference goes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::file_id::RemoteFilename;
use crate::protocol::Status;
use crate::storage::binlog::{Op, Record};
use crate::storage::disk::Change;
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

use super::io;
use crate::storage::located::meta_path;

/// What removing a regular file or link did under the de-duplication index.
pub(in crate::storage) enum Unlinked {
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
    pub(in crate::storage) fn unlink_counted(&self, name: &str, path: &Path) -> Result<Unlinked, Status> {
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(Status::EISDIR);
        }
        let remove = || std::fs::remove_file(path).map_err(io);
        let source = meta
            .file_type()
            .is_symlink()
            .then(|| crate::storage::paths::link_target(path))
            .flatten()
            .and_then(|target| self.paths.remote_name_of(&target))
            .and_then(|n| self.paths.resolve(&n).ok().filter(|(_, p)| p.is_file()).map(|(_, p)| (n, p)));
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
        let root = self.paths.store_root(name);
        let slot = crate::trunk::open(name, &root).map_err(io)?.ok_or(Status::ENOENT)?;
        let source = crate::trunk::link_target(&slot, self.paths.paths.len()).map_err(io)?;
        let free = || crate::trunk::free(name, &root).map_err(io)?.ok_or(Status::ENOENT).map(Some);
        let Some(dedup) = &self.dedup else { return Ok((free()?, Unlinked::Removed)) };
        dedup.update(|tx| match source {
            Some(source) => {
                let source = source.to_string();
                let left = tx.release(&source)?;
                let file = free()?;
                let path = self.paths.resolve(&source)?.1;
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
    pub(in crate::storage) fn remove_counted<T>(
        &self,
        change: Change<T>,
        filename: &str,
        path: &Path,
    ) -> Result<(Change<T>, Unlinked), Status> {
        if let Some((name, _)) = self.paths.trunk_name(filename) {
            let (file, unlinked) = self.unlink_trunk_counted(filename, &name)?;
            return Ok((file.into_iter().fold(change, Change::sync_file), unlinked));
        }
        let unlinked = self.unlink_counted(filename, path)?;
        Ok((change.sync_parent(path), unlinked))
    }

    /// Removes a source whose last link went (its regular file at `path`, or its trunk slot),
    /// recorded by `record`. Returns `change` with it, and the trunk slot freed (for the trunk
    /// server, when this storage is the source's).
    pub(in crate::storage) fn remove_source<T>(
        &self,
        change: Change<T>,
        source: &str,
        path: &Path,
        record: Record,
    ) -> (Change<T>, Option<crate::trunk::space::Block>) {
        if let Some((name, root)) = self.paths.trunk_name(source) {
            return match crate::trunk::free(&name, &root) {
                Ok(Some(file)) => (change.record(record).sync_file(file), crate::storage::trunk::block_of_name(&name)),
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
    let at = srv.paths.locate(&filename)?;
    let (name, path) = (at.name, at.path);
    let _lock = srv.lock_file(&path).await;
    let s = srv.clone();
    let ts = now_unix();
    let slot = if at.in_slot { crate::storage::trunk::block_of_name(&name) } else { None };
    let freed_source = srv
        .disk
        .write(name.store_path_index as usize, move |_| {
            let change = Change::new(None).record(Record::own(ts, Op::Delete, &filename, String::new()));
            let (mut change, unlinked) = s.remove_counted(change, &filename, &path)?;
            match unlinked {
                // A name no client is given, still named by links: removing it would leave
                // them dangling.
                Unlinked::Kept => return Err(Status::EBUSY),
                Unlinked::LastLinkTo(source, source_path) => {
                    let record = Record::own(ts, Op::Delete, &source, String::new());
                    let (c, freed) = s.remove_source(change, &source, &source_path, record);
                    change = c.map(|_| freed);
                }
                Unlinked::Removed => {}
            }
            if std::fs::remove_file(meta_path(&path)).is_ok() {
                change = change.record(Record::own(ts, Op::Delete, &format!("{filename}-m"), String::new()));
            }
            Ok(change)
        })
        .await?;
    srv.changed(ts);
    // Slots are free for the trunk server once the deletes are durable.
    for slot in slot.into_iter().chain(freed_source) {
        crate::storage::trunk::freed(srv, slot).await;
    }
    Ok(())
}
