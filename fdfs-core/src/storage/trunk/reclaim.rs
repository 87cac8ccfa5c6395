//! `delete_unused_trunk_files` (PROTOCOL.md §5.7, C's meaning): a trunk file none of whose
//! slots is in use goes, on every member, so space freed by deletes comes back to the disk.
//!
//! The trunk server decides. A free block that is a whole trunk file (no slot in use or handed
//! out) is **retired** under the free-space lock, so no slot of it can be handed out at the
//! same moment: its line goes into `data/trunk/removed` (durable first), its free block leaves
//! the free space with the `D` line C writes, and no space in that file is ever free again
//! (trunk ids are not reused). The trunk server sends the `removed` list to the members (121
//! TRUNK_REMOVE_FILES, ours: a C member refuses it and keeps its copies), from a mark per
//! member, as it sends the trunk binlog; a member that takes the role over retires the files of
//! its own list again.
//!
//! Every member, the trunk server included, then removes its copy of a retired file once a
//! scan of it finds no slot header that could be a live file's. A member whose copy still holds
//! a file (a delete not replicated to it yet, or a file the trunk server's map had lost) keeps
//! it and scans again when the file changes; a copy made again by a late replicated upload goes
//! the same way once that file's delete arrives.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{io, TrunkLog};
use crate::locked::MutexExt;
use crate::protocol::Status;
use crate::server::Shutdown;
use crate::storage::disk::Disk;
use crate::storage::StorageServer;
use crate::timefmt::now_unix;
use crate::trunk::space::{Block, SpaceOp, SpaceRecord};

/// A trunk file: store path, `HH`, `LL`, id.
type FileKey = (u8, u8, u8, u32);

fn key(b: &Block) -> FileKey {
    (b.path, b.high, b.low, b.trunk_id)
}

/// How often the trunk server looks for empty trunk files, and members for retired ones left.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A copy last changed longer ago than this is not being written as it is scanned.
const SETTLED: Duration = Duration::from_secs(2);

/// `data/trunk/removed`: the retired trunk files, one `D` line of the whole file each.
#[derive(Debug)]
pub struct Removed {
    pub(super) log: Arc<TrunkLog>,
    known: Mutex<HashMap<FileKey, Block>>,
    /// Copies found holding a file, with their modification time then: scanned again only once
    /// they change.
    kept: Mutex<HashMap<FileKey, SystemTime>>,
    wake: tokio::sync::Notify,
}

impl Removed {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        // A last line a crash cut short is dropped, so the next one starts a line of its own.
        let path = dir.join("removed");
        if let Ok(text) = std::fs::read(&path) {
            if !text.is_empty() && !text.ends_with(b"\n") {
                let whole = text.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                std::fs::OpenOptions::new().write(true).open(&path)?.set_len(whole as u64)?;
            }
        }
        let log = TrunkLog::open_named(dir, "removed")?;
        let mut known = HashMap::new();
        // Line by line: a line a crash cut short (or any other unreadable one) costs only itself.
        let text = log.read_from(0, usize::MAX)?;
        for line in text.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            match parse(line).as_deref() {
                Some([b]) => {
                    known.insert(key(b), *b);
                }
                _ => tracing::warn!("{}: unreadable line skipped", dir.join("removed").display()),
            }
        }
        Ok(Self {
            log: Arc::new(log),
            known: Mutex::new(known),
            kept: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, Block>> {
        self.known.locked()
    }

    /// Every retired file.
    pub fn all(&self) -> Vec<Block> {
        self.known().values().copied().collect()
    }

    /// Records `blocks` (durably) that were not recorded yet; returns those.
    fn add(&self, blocks: &[Block]) -> std::io::Result<Vec<Block>> {
        let mut known = self.known();
        let mut new: Vec<Block> = Vec::new();
        for b in blocks {
            if !known.contains_key(&key(b)) && !new.iter().any(|n| key(n) == key(b)) {
                new.push(*b);
            }
        }
        let now = now_unix();
        let lines: Vec<SpaceRecord> =
            new.iter().map(|&block| SpaceRecord { timestamp: now, op: SpaceOp::Delete, block }).collect();
        self.log.append(&lines)?;
        self.log.sync_if_dirty()?;
        for b in &new {
            known.insert(key(b), *b);
        }
        Ok(new)
    }
}

/// The lines of a `removed` list: each a `D` of a whole trunk file (offset 0); `None` if any
/// is not.
fn parse(text: &[u8]) -> Option<Vec<Block>> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| SpaceRecord::parse(l).filter(|r| r.op == SpaceOp::Delete && r.block.offset == 0).map(|r| r.block))
        .collect()
}

impl StorageServer {
    /// The trunk server's half: retires every trunk file whose free space is the whole file
    /// (in one block, or in several when `trunk_free_space_merge` is off).
    /// Returns how many. Blocking.
    fn retire_unused_trunk_files(&self) -> Result<usize, Status> {
        let candidates = match self.trunk.space().as_mut() {
            Some(space) => space.take_emptied(),
            None => return Ok(0),
        };
        let mut retired = 0;
        for b in candidates {
            // Whole: as long as the file itself (created at `trunk_file_size`, which may have
            // changed since).
            let Some(path) = self.trunk_file_path(&b) else { continue };
            if std::fs::metadata(&path).map_or(true, |m| m.len() != b.size as u64) {
                continue;
            }
            let mut guard = self.trunk.space();
            let Some(space) = guard.as_mut() else { return Ok(retired) };
            // Still all free: no slot of it was handed out since the list was made.
            if !space.is_all_free(&b) {
                continue;
            }
            // The list first: a restart between the two lines retires it again from the list.
            self.trunk.removed.add(&[b]).map_err(io)?;
            let lines = space.retire(b.path, b.trunk_id, now_unix());
            self.trunk.log.append(&lines).map_err(io)?;
            drop(guard);
            tracing::info!("trunk file {} has no slot in use: retired", path.display());
            retired += 1;
        }
        if retired > 0 {
            self.trunk.log.sync_if_dirty().map_err(io)?;
            self.trunk.news.notify_waiters();
        }
        Ok(retired)
    }

    /// On taking the trunk server's role: the files of our list stay out of the free space, and
    /// (files made ahead of need aside) every empty trunk file is a candidate, so one emptied
    /// just before a restart is not kept for ever.
    pub(super) fn retire_listed(&self, space: &mut crate::trunk::space::FreeSpace) -> std::io::Result<()> {
        if !self.identity.params().trunk_advance.enabled {
            space.all_emptied();
        }
        let now = now_unix();
        for b in self.trunk.removed.all() {
            let lines = space.retire(b.path, b.trunk_id, now);
            self.trunk.log.append(&lines)?;
        }
        self.trunk.log.sync_if_dirty()
    }

    /// Every member's half: removes this storage's copy of each retired trunk file whose slots
    /// are all free. Returns how many went. Blocking.
    fn remove_retired_trunk_files(&self) -> usize {
        let mut removed = 0;
        for b in self.trunk.removed.all() {
            let Some(path) = self.trunk_file_path(&b) else { continue };
            let mut kept = self.trunk.removed.kept.locked();
            let Ok(meta) = std::fs::metadata(&path) else {
                kept.remove(&key(&b));
                continue;
            };
            let changed = meta.modified().ok();
            if changed.is_some() && kept.get(&key(&b)) == changed.as_ref() {
                continue;
            }
            let occupied = std::fs::File::open(&path).and_then(|f| crate::trunk::find_occupied(&f, now_unix()));
            match occupied {
                Ok(None) => {}
                Ok(Some(at)) => {
                    tracing::warn!(
                        "retired trunk file {} still holds a file at offset {at}; kept until that is deleted",
                        path.display()
                    );
                    // Skipped until it changes; unless it changed just now, as a write in the
                    // same clock tick after the scan would leave its time as it was.
                    let settled = changed.and_then(|t| t.elapsed().ok()).is_some_and(|age| age > SETTLED);
                    if let Some(t) = changed.filter(|_| settled) {
                        kept.insert(key(&b), t);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("reading retired trunk file {}: {e}", path.display());
                    continue;
                }
            }
            let gone = std::fs::remove_file(&path)
                .and_then(|()| crate::durable::sync_dir(path.parent().unwrap_or(Path::new("."))));
            match gone {
                Ok(()) => {
                    kept.remove(&key(&b));
                    tracing::info!("trunk file {} removed: none of its slots is in use", path.display());
                    // In the metrics: fastdfs_requests_total{command="TrunkFileRemoved"}.
                    self.metrics.request("TrunkFileRemoved", true, Duration::ZERO);
                    removed += 1;
                }
                Err(e) => tracing::warn!("removing retired trunk file {}: {e}", path.display()),
            }
        }
        removed
    }
}

/// 121 TRUNK_REMOVE_FILES from the trunk server: its retired files, recorded and removed here.
pub(in crate::storage) async fn receive_removed(srv: &Arc<StorageServer>, body: Vec<u8>) -> Result<(), Status> {
    let blocks = parse(&body).ok_or(Status::EINVAL)?;
    if blocks.iter().any(|b| b.path as usize >= srv.paths.paths.len()) {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    Disk::read(move || {
        let new = s.trunk.removed.add(&blocks).map_err(io)?;
        // Two trunk servers for a moment: the other's retired files stay out of our space too.
        if let Some(space) = s.trunk.space().as_mut() {
            let now = now_unix();
            let lines: Vec<SpaceRecord> = new.iter().flat_map(|b| space.retire(b.path, b.trunk_id, now)).collect();
            s.trunk.log.append(&lines).map_err(io)?;
        }
        Ok(())
    })
    .await?;
    srv.trunk.removed.wake.notify_one();
    Ok(())
}

/// Retires (trunk server, `delete_unused_trunk_files`) and removes (every member) trunk files,
/// every [`SWEEP_EVERY`] and when the trunk server sends its list.
pub async fn reclaim_loop(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = srv.trunk.removed.wake.notified() => {}
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        let retire = srv.identity.params().delete_unused_trunk_files && srv.trunk.is_server();
        let s = srv.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let retired = if retire { s.retire_unused_trunk_files() } else { Ok(0) };
            s.remove_retired_trunk_files();
            retired
        })
        .await;
        match swept {
            Ok(Err(e)) => tracing::error!("retiring empty trunk files: {e}"),
            Ok(_) => {}
            Err(e) => tracing::error!("removing retired trunk files: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_removed_list_takes_whole_file_deletions_only() {
        let dir = tempfile::tempdir().unwrap();
        let removed = Removed::open(dir.path()).unwrap();
        let b = Block { path: 0, high: 1, low: 2, trunk_id: 7, offset: 0, size: 64 << 20 };
        assert_eq!(removed.add(&[b, b]).unwrap(), vec![b], "once");
        assert!(removed.add(&[b]).unwrap().is_empty());
        let again = Removed::open(dir.path()).unwrap();
        assert_eq!(again.all(), vec![b], "durable");
        assert_eq!(parse(b"1 D 0 1 2 7 0 67108864\n"), Some(vec![b]));
        assert_eq!(parse(b"1 A 0 1 2 7 0 67108864\n"), None, "an A is not a removal");
        assert_eq!(parse(b"1 D 0 1 2 7 256 1024\n"), None, "nor a slot");
        assert_eq!(parse(b""), Some(vec![]));
        // A line cut short by a crash costs only itself, and the next line is whole.
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("removed")).unwrap();
        std::io::Write::write_all(&mut f, b"17 D 0 1").unwrap();
        let reopened = Removed::open(dir.path()).unwrap();
        assert_eq!(reopened.all(), vec![b]);
        let c = Block { trunk_id: 8, ..b };
        reopened.add(&[c]).unwrap();
        let mut all = Removed::open(dir.path()).unwrap().all();
        all.sort();
        assert_eq!(all, vec![b, c]);
    }
}
