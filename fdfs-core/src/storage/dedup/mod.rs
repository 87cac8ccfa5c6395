//! De-duplication, built in (`check_file_duplicate = 1`; C needs a FastDHT cluster for it).
//!
//! The layout is C's: content lives under a name of its own that no client is given (the
//! *source*), and every file ID a client gets for it is a symbolic link to it (`C source`, then
//! `L link source` in the binlog, replicated with 16 and 19), so C tools, the nginx module and
//! replicas see normal files. In trunk mode a small upload's source is a trunk slot and its
//! file IDs are link slots ([`crate::trunk::SlotKind::Link`]), as C lays them out there. Which contents a store path holds, and how many links name each,
//! is kept in a redb database (`data/dedup.redb`): sources by signature (size + C's hash codes
//! or MD5, as `file_signature_method` says) and a reference count per source. Deleting a link
//! releases one reference; the last one deletes the source (`D source`).
//!
//! Commits are not synced one by one (that would cost an fsync per upload): the index is synced
//! once a second when it changed, and marked clean when the storage stops. The truth it is
//! checked against is on disk: after a crash (not marked clean), or when the file is gone, the
//! reference counts are recounted from the symbolic links in the store paths and the link slots
//! the binlog records, and missing signatures computed from the sources, before the storage
//! serves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::paths::StorePaths;
use crate::config::SignatureMethod;
use crate::protocol::Status;

mod signature;
pub use signature::{sign_stored, Signature, Signer, SIGNATURE_LEN};

/// Source name → (content key, references).
const SOURCES: TableDefinition<&str, (&[u8], u64)> = TableDefinition::new("sources");
/// Content key (store path index + signature) → source name.
const BY_CONTENT: TableDefinition<&[u8], &str> = TableDefinition::new("by_content");
/// `clean` = 1 while nothing changed since the last synced commit of a clean stop.
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");

pub const FILE_NAME: &str = "dedup.redb";

#[derive(Debug, thiserror::Error)]
#[error("de-duplication index: {0}")]
pub struct IndexError(#[from] redb::Error);

fn db_err(e: impl Into<redb::Error>) -> IndexError {
    IndexError(e.into())
}

fn content_key(store_path: u8, sig: &Signature) -> [u8; SIGNATURE_LEN + 1] {
    let mut k = [0u8; SIGNATURE_LEN + 1];
    k[0] = store_path;
    k[1..].copy_from_slice(sig);
    k
}

/// The index of one storage. Every change goes through [`DedupIndex::update`], one redb write
/// transaction at a time, which also orders the filesystem calls made inside it (a link made
/// and its reference counted, or the last reference released and the source deleted, never
/// interleave with another change of the index).
#[derive(Debug)]
pub struct DedupIndex {
    db: Database,
    method: SignatureMethod,
    dirty: AtomicBool,
}

/// One transaction of the index.
pub struct Tx<'a> {
    sources: redb::Table<'a, &'static str, (&'static [u8], u64)>,
    by_content: redb::Table<'a, &'static [u8], &'static str>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// An index failure as the client sees it (the details are logged).
fn status(e: impl Into<redb::Error>) -> Status {
    tracing::error!("{}", db_err(e));
    Status::EIO
}

impl Tx<'_> {
    /// The source holding content `sig` in store path `store_path`, if any.
    pub fn source_of(&self, store_path: u8, sig: &Signature) -> Result<Option<String>, Status> {
        let got = self.by_content.get(&content_key(store_path, sig)[..]).map_err(status)?;
        Ok(got.map(|v| v.value().to_owned()))
    }

    /// `source`'s content key and references, if it is indexed.
    fn entry(&self, source: &str) -> Result<Option<(Vec<u8>, u64)>, Status> {
        Ok(self.sources.get(source).map_err(status)?.map(|v| (v.value().0.to_vec(), v.value().1)))
    }

    fn set_refs(&mut self, source: &str, key: &[u8], refs: u64) -> Result<(), Status> {
        self.sources.insert(source, (key, refs)).map_err(status).map(drop)
    }

    /// The references to `source`, `None` if it is not indexed.
    pub fn refs(&self, source: &str) -> Result<Option<u64>, Status> {
        Ok(self.entry(source)?.map(|(_, refs)| refs))
    }

    /// One more link to `source`; `None` (nothing changed) if it is not indexed.
    pub fn add_ref(&mut self, source: &str) -> Result<Option<u64>, Status> {
        let Some((key, refs)) = self.entry(source)? else { return Ok(None) };
        self.set_refs(source, &key, refs + 1)?;
        Ok(Some(refs + 1))
    }

    /// One more link to `source` (in `store_path`), indexed first if it is not (a link made by
    /// a peer, or by CREATE_LINK, to content never counted here): `sign` signs it as stored,
    /// `None` if it is not here.
    pub fn add_link(
        &mut self,
        source: &str,
        store_path: u8,
        sign: impl FnOnce() -> Option<std::io::Result<Signature>>,
    ) -> Result<(), Status> {
        if self.add_ref(source)?.is_none() {
            if let Some(sig) = sign() {
                let sig = sig.map_err(|e| Status::from_io(&e))?;
                self.insert(source, store_path, &sig, 1)?;
            }
        }
        Ok(())
    }

    /// Indexes `source` (content `sig` in `store_path`) with `refs` links.
    pub fn insert(&mut self, source: &str, store_path: u8, sig: &Signature, refs: u64) -> Result<(), Status> {
        let key = content_key(store_path, sig);
        self.set_refs(source, &key, refs)?;
        self.by_content.insert(&key[..], source).map_err(status)?;
        Ok(())
    }

    /// One link fewer to `source`: the links left, `None` if it is not indexed. At 0 the source
    /// leaves the index (the caller deletes its file).
    pub fn release(&mut self, source: &str) -> Result<Option<u64>, Status> {
        let Some((key, refs)) = self.entry(source)? else { return Ok(None) };
        let left = refs.saturating_sub(1);
        if left == 0 {
            self.forget_entry(source, &key)?;
        } else {
            self.set_refs(source, &key, left)?;
        }
        Ok(Some(left))
    }

    /// Takes `source` out of the index (its file is gone or changed).
    pub fn forget(&mut self, source: &str) -> Result<(), Status> {
        match self.entry(source)? {
            Some((key, _)) => self.forget_entry(source, &key),
            None => Ok(()),
        }
    }

    fn forget_entry(&mut self, source: &str, key: &[u8]) -> Result<(), Status> {
        self.sources.remove(source).map_err(status)?;
        let indexed = self.by_content.get(key).map_err(status)?.is_some_and(|v| v.value() == source);
        if indexed {
            self.by_content.remove(key).map_err(status)?;
        }
        Ok(())
    }
}

/// What recounting found on disk: every source a link names, with its store path and links.
#[derive(Debug, Default)]
pub struct LinkCount {
    pub sources: std::collections::HashMap<String, (u8, u64)>,
}

impl LinkCount {
    fn add(&mut self, source: String, store_path: u8) {
        self.sources.entry(source).or_insert((store_path, 0)).1 += 1;
    }
}

impl DedupIndex {
    /// Opens (or creates) the index at `path`. The second value is false when it cannot be
    /// trusted as it is (new, or the last stop was not clean): the caller recounts.
    pub fn open(path: &Path, method: SignatureMethod) -> Result<(Self, bool), IndexError> {
        let existed = path.exists();
        let db = Database::create(path).map_err(db_err)?;
        let index = DedupIndex { db, method, dirty: AtomicBool::new(false) };
        let same_keys = index.state("method")? == Some(method_code(method));
        if existed && !same_keys {
            // Keys of another layout never match new ones: every source is signed again.
            index.clear()?;
        }
        let clean = existed && same_keys && index.state("clean")? == Some(1);
        // From here on, a crash leaves it marked unclean.
        index.set_state(&[("clean", 0), ("method", method_code(method))])?;
        Ok((index, clean))
    }

    /// Drops every source and content key (the recount that follows indexes them anew).
    fn clear(&self) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.delete_table(SOURCES).map_err(db_err)?;
        txn.delete_table(BY_CONTENT).map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    pub fn method(&self) -> SignatureMethod {
        self.method
    }

    fn state(&self, key: &str) -> Result<Option<u64>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        Ok(table.get(key).map_err(db_err)?.map(|v| v.value()))
    }

    /// A synced commit of `values` (and of every unsynced commit before it).
    fn set_state(&self, values: &[(&str, u64)]) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(STATE).map_err(db_err)?;
            for (k, v) in values {
                t.insert(*k, *v).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The source holding content `sig` in `store_path`, as last committed: a read, whose answer
    /// a write transaction may change before the caller acts on it (it checks again in one).
    pub fn peek_source(&self, store_path: u8, sig: &Signature) -> Result<Option<String>, Status> {
        let txn = self.db.begin_read().map_err(status)?;
        let table = match txn.open_table(BY_CONTENT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(status(e)),
        };
        let got = table.get(&content_key(store_path, sig)[..]).map_err(status)?;
        Ok(got.map(|v| v.value().to_owned()))
    }

    /// Whether `name` is a source (content no client was given a name for), as last committed.
    pub fn is_source(&self, name: &str) -> Result<bool, Status> {
        let txn = self.db.begin_read().map_err(status)?;
        let table = match txn.open_table(SOURCES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(status(e)),
        };
        Ok(table.get(name).map_err(status)?.is_some())
    }

    /// Runs `f` in one write transaction, committed (unsynced) when it returns `Ok`, dropped
    /// otherwise.
    pub fn update<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, Status>) -> Result<T, Status> {
        let mut txn = self.db.begin_write().map_err(status)?;
        txn.set_durability(redb::Durability::None).map_err(|e| {
            tracing::error!("de-duplication index: {e}");
            Status::EIO
        })?;
        let value = {
            let mut tx = Tx {
                sources: txn.open_table(SOURCES).map_err(status)?,
                by_content: txn.open_table(BY_CONTENT).map_err(status)?,
            };
            f(&mut tx)
        };
        match value {
            Ok(v) => {
                txn.commit().map_err(status)?;
                self.dirty.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    /// Syncs what changed since the last sync (once a second, from the storage's timer).
    pub fn sync_if_dirty(&self) -> Result<(), IndexError> {
        if self.dirty.load(Ordering::Relaxed) {
            self.set_state(&[("clean", 0)])?;
        }
        Ok(())
    }

    /// At a clean stop: synced and marked clean, so the next start trusts it.
    pub fn close(&self) -> Result<(), IndexError> {
        self.set_state(&[("clean", 1)])
    }

    /// Makes the index agree with the disk: reference counts from `found`, sources no link names
    /// and that are gone dropped, signatures computed for sources it did not know. Sources no
    /// link names but still on disk stay, with 0 references, for the next upload of their
    /// content (a crash between a last link's deletion and its source's leaves one), unless in
    /// a trunk slot.
    /// `stored` signs a source as stored (`None`: not there).
    pub fn reconcile(
        &self,
        found: LinkCount,
        stored: impl Fn(&str) -> Option<std::io::Result<Signature>>,
    ) -> Result<Reconciled, IndexError> {
        let mut out = Reconciled::default();
        let known: Vec<(String, Vec<u8>, u64)> = {
            let txn = self.db.begin_read().map_err(db_err)?;
            match txn.open_table(SOURCES) {
                Ok(t) => t
                    .iter()
                    .map_err(db_err)?
                    .filter_map(Result::ok)
                    .map(|(k, v)| (k.value().to_owned(), v.value().0.to_vec(), v.value().1))
                    .collect(),
                Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
                Err(e) => return Err(db_err(e)),
            }
        };
        let mut found = found.sources;
        let in_slot = |name: &str| {
            crate::file_id::RemoteFilename::parse(name, None).is_ok_and(|n| crate::trunk::is_trunk_name(&n))
        };
        let r = self.update(|tx| {
            for (name, key, refs) in known {
                match found.remove(&name) {
                    Some((_, links)) => {
                        if links != refs {
                            out.recounted += 1;
                            tx.set_refs(&name, &key, links)?;
                        }
                    }
                    // A source in a trunk slot that no link names may be one a crash left
                    // unrecorded (the crash-window recording covers regular files, not slots),
                    // so never replicated: it is not linked to again (its content is stored anew).
                    None if stored(&name).is_none() || in_slot(&name) => {
                        out.recounted += 1;
                        tx.forget_entry(&name, &key)?;
                    }
                    None if refs == 0 => {}
                    None => {
                        out.recounted += 1;
                        tx.set_refs(&name, &key, 0)?;
                    }
                }
            }
            for (name, (store_path, links)) in found {
                match stored(&name) {
                    Some(Ok(sig)) => {
                        out.signed += 1;
                        tx.insert(&name, store_path, &sig, links)?;
                    }
                    Some(Err(e)) => tracing::warn!("{name}: linked to, but cannot be read ({e})"),
                    None => tracing::warn!("{name}: linked to, but not here"),
                }
            }
            Ok(())
        });
        r.map_err(|_| db_err(redb::Error::Corrupted("reconciling failed".into())))?;
        self.set_state(&[("clean", 0)])?;
        Ok(out)
    }
}

/// The signature layout the index's keys were made with (1 and 2 were C's signature alone,
/// without SHA-256: such an index is rebuilt).
fn method_code(m: SignatureMethod) -> u64 {
    match m {
        SignatureMethod::Hash => 3,
        SignatureMethod::Md5 => 4,
    }
}

/// What [`DedupIndex::reconcile`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub recounted: usize,
    pub signed: usize,
}

/// Counts the symbolic links in the `data/HH/LL` directories of every store path, by the
/// source they name: `name_of` turns a link's target into its remote filename (links pointing
/// elsewhere, or to nothing, are not counted).
pub fn count_links(paths: &StorePaths, name_of: impl Fn(&Path) -> Option<String>) -> LinkCount {
    let mut count = LinkCount::default();
    for i in 0..paths.paths.len() {
        for (_, dir) in paths.subdirs_of(i) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_symlink())) {
                let Some(target) = super::paths::link_target(&e.path()).filter(|t| t.is_file()) else { continue };
                if let Some(name) = name_of(&target) {
                    count.add(name, i as u8);
                }
            }
        }
    }
    count
}

/// Counts the link slots in trunk files by the source they name. Trunk files cannot be walked
/// slot by slot (freed space is merged and handed out again in other sizes), so the links are
/// found where every one is recorded: the binlog's `L` records of trunk names (`writing` is
/// its position), each counted if its slot still holds it.
pub fn count_trunk_links(
    paths: &StorePaths,
    binlog_dir: &Path,
    writing: (u32, u64),
    count: &mut LinkCount,
) -> std::io::Result<()> {
    use super::binlog::{BinlogReader, Line, Op};
    // Only the links still on disk are remembered (a name recorded twice counts once), so
    // memory follows the live links, not the binlog's length.
    let mut counted = std::collections::HashSet::new();
    let mut reader = BinlogReader::at(binlog_dir, 0, 0);
    while let Some(line) = reader.next(writing)? {
        let Line::Record(r) = line else { continue };
        if r.op != Op::Link || r.filename.len() != crate::file_id::TRUNK_FILENAME_LEN || counted.contains(&r.filename) {
            continue;
        }
        let Ok(name) = crate::file_id::RemoteFilename::parse(&r.filename, Some(paths.paths.len())) else { continue };
        let Some(root) = paths.paths.get(name.store_path_index as usize).map(|p| &p.root) else { continue };
        let Ok(Some(slot)) = crate::trunk::open(&name, root) else { continue };
        if let Ok(Some(target)) = crate::trunk::link_target(&slot, paths.paths.len()) {
            count.add(target.to_string(), target.store_path_index);
            counted.insert(r.filename);
        }
    }
    Ok(())
}

/// Where a source's content is.
pub(crate) enum Held {
    /// A regular file, which symbolic links name.
    Regular(PathBuf),
    /// A trunk slot, which link slots name.
    Slot,
}

impl Held {
    /// Where `source` holds content of `size` bytes; `None` when it no longer does.
    pub(crate) fn find(paths: &StorePaths, source: &str, size: u64) -> Option<Held> {
        let at = paths.locate(source).ok()?;
        if at.in_slot {
            let slot = crate::trunk::open(&at.name, &paths.store_root(&at.name)).ok()??;
            return (slot.kind == crate::trunk::SlotKind::File && slot.size == size).then_some(Held::Slot);
        }
        let meta = std::fs::symlink_metadata(&at.path).ok()?;
        (meta.file_type().is_file() && meta.len() == size).then_some(Held::Regular(at.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_count_up_and_down_and_the_last_release_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let sig = Signer::of_bytes(SignatureMethod::Hash, b"logo");
        let (index, clean) = DedupIndex::open(&path, SignatureMethod::Hash).unwrap();
        assert!(!clean, "a new index is recounted");
        index.update(|tx| tx.insert("M00/00/00/src.jpg", 0, &sig, 1)).unwrap();
        assert_eq!(index.update(|tx| tx.source_of(0, &sig)).unwrap().as_deref(), Some("M00/00/00/src.jpg"));
        assert_eq!(index.update(|tx| tx.source_of(1, &sig)).unwrap(), None, "per store path");
        assert_eq!(index.update(|tx| tx.add_ref("M00/00/00/src.jpg")).unwrap(), Some(2));
        assert_eq!(index.update(|tx| tx.add_ref("M00/00/00/none.jpg")).unwrap(), None);
        // A failed transaction changes nothing.
        let failed: Result<(), Status> = index.update(|tx| {
            tx.add_ref("M00/00/00/src.jpg")?;
            Err(Status::EIO)
        });
        assert!(failed.is_err());
        assert_eq!(index.update(|tx| tx.release("M00/00/00/src.jpg")).unwrap(), Some(1));
        index.close().unwrap();
        drop(index);
        let (index, clean) = DedupIndex::open(&path, SignatureMethod::Hash).unwrap();
        assert!(clean, "closed cleanly");
        assert_eq!(index.update(|tx| tx.refs("M00/00/00/src.jpg")).unwrap(), Some(1));
        assert_eq!(index.update(|tx| tx.release("M00/00/00/src.jpg")).unwrap(), Some(0));
        assert_eq!(index.update(|tx| tx.source_of(0, &sig)).unwrap(), None);
        drop(index);
        let (_, clean) = DedupIndex::open(&path, SignatureMethod::Hash).unwrap();
        assert!(!clean, "not closed: recounted");
        let (index, clean) = DedupIndex::open(&path, SignatureMethod::Md5).unwrap();
        assert!(!clean, "another method: recounted");
        index.update(|tx| tx.insert("M00/00/00/md5.jpg", 0, &sig, 1)).unwrap();
        index.close().unwrap();
        drop(index);
        let (index, clean) = DedupIndex::open(&path, SignatureMethod::Hash).unwrap();
        assert!(!clean);
        assert_eq!(index.update(|tx| tx.refs("M00/00/00/md5.jpg")).unwrap(), None, "keys of another layout dropped");
    }

    #[test]
    fn content_is_shared_only_when_its_sha256_agrees() {
        // C's signature of two contents with equal size and MD5 (a public collision pair,
        // stood in for here by equal codes) must not make them one key.
        let mut a = Signer::of_bytes(SignatureMethod::Md5, b"attacker bytes..");
        let b = Signer::of_bytes(SignatureMethod::Md5, b"victim's bytes..");
        assert_ne!(a[24..], b[24..], "SHA-256 differs");
        a[..24].copy_from_slice(&b[..24]);
        assert_ne!(content_key(0, &a), content_key(0, &b), "equal C signatures, different keys");
        assert_eq!(Signer::of_bytes(SignatureMethod::Hash, b"same"), Signer::of_bytes(SignatureMethod::Hash, b"same"));
    }

    #[test]
    fn reconcile_takes_counts_from_the_links_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let paths = StorePaths::open(std::slice::from_ref(&root), &[false], 2, 1, false, Default::default()).unwrap();
        let sub = root.join("data/00/01");
        let (a, b) = (sub.join("a.jpg"), sub.join("b.jpg"));
        std::fs::write(&a, b"content a").unwrap();
        std::fs::write(&b, b"content b").unwrap();
        for (n, target) in [("l1.jpg", &a), ("l2.jpg", &a), ("l3.jpg", &b)] {
            std::os::unix::fs::symlink(target, sub.join(n)).unwrap();
        }
        std::os::unix::fs::symlink(sub.join("gone.jpg"), sub.join("dangling.jpg")).unwrap();
        let name_of = |p: &Path| p.file_name().map(|n| format!("M00/00/01/{}", n.to_string_lossy()));
        let found = count_links(&paths, name_of);
        assert_eq!(found.sources.len(), 2);
        let (index, _) = DedupIndex::open(&dir.path().join(FILE_NAME), SignatureMethod::Md5).unwrap();
        // Stale: a has 5 references recorded, an old source no longer on disk has 1.
        let sig_a = Signer::of_bytes(SignatureMethod::Md5, b"content a");
        let old = Signer::of_bytes(SignatureMethod::Md5, b"old");
        index
            .update(|tx| {
                tx.insert("M00/00/01/a.jpg", 0, &sig_a, 5)?;
                tx.insert("M00/00/01/old.jpg", 0, &old, 1)
            })
            .unwrap();
        let stored = |n: &str| {
            let p = n.rsplit('/').next().map(|f| sub.join(f)).filter(|p| p.is_file())?;
            Some(Signer::of_file(SignatureMethod::Md5, &p))
        };
        let r = index.reconcile(found, stored).unwrap();
        assert_eq!(r, Reconciled { recounted: 2, signed: 1 });
        assert_eq!(index.update(|tx| tx.refs("M00/00/01/a.jpg")).unwrap(), Some(2));
        assert_eq!(index.update(|tx| tx.refs("M00/00/01/b.jpg")).unwrap(), Some(1));
        let sig_b = Signer::of_bytes(SignatureMethod::Md5, b"content b");
        assert_eq!(index.update(|tx| tx.source_of(0, &sig_b)).unwrap().as_deref(), Some("M00/00/01/b.jpg"));
        assert_eq!(index.update(|tx| tx.refs("M00/00/01/old.jpg")).unwrap(), None, "gone from disk");
        assert_eq!(index.update(|tx| tx.source_of(0, &old)).unwrap(), None);
    }

    #[test]
    fn an_unlinked_source_in_a_trunk_slot_is_forgotten_a_regular_one_kept() {
        use crate::file_id::{generate, NameKind, NewName, Source, TrunkLocation};
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = DedupIndex::open(&dir.path().join(FILE_NAME), SignatureMethod::Hash).unwrap();
        let new = NewName {
            source: Source::Ip("10.0.0.1".parse().unwrap()),
            timestamp: 1_800_000_000,
            size: 9,
            crc32: 7,
            kind: NameKind::Trunk(TrunkLocation { trunk_id: 1, offset: 0, size: 256 }),
            ext: "jpg",
            store_path_index: 0,
            high: 0,
            low: 0,
        };
        let slot = generate(&new, &mut fastrand::Rng::with_seed(1)).to_string();
        let regular =
            generate(&NewName { kind: NameKind::Normal, ..new }, &mut fastrand::Rng::with_seed(1)).to_string();
        let (s1, s2) = (Signer::of_bytes(SignatureMethod::Hash, b"1"), Signer::of_bytes(SignatureMethod::Hash, b"2"));
        index.update(|tx| tx.insert(&slot, 0, &s1, 2).and_then(|()| tx.insert(&regular, 0, &s2, 2))).unwrap();
        // Both still on disk, neither linked to.
        let r = index.reconcile(LinkCount::default(), |_| Some(Ok(s1))).unwrap();
        assert_eq!(r.recounted, 2);
        assert_eq!(index.update(|tx| tx.refs(&slot)).unwrap(), None, "possibly never recorded: not reused");
        assert_eq!(index.update(|tx| tx.refs(&regular)).unwrap(), Some(0), "kept for the next upload");
    }
}
