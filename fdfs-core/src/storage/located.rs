//! Where a file's bytes are, decided once per request. A remote filename parsed against the
//! store paths gives a [`Located`]: the name, its path (where a regular file is, and the
//! metadata of any file), and whether its bytes are in a trunk slot; [`open_located`] opens
//! what a client reads of it. Nothing here needs more of the storage than its store paths, so
//! listing, replication, recovery and de-duplication ask these questions of [`StorePaths`]
//! alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::answer::io;
use super::disk::Disk;
use super::paths::StorePaths;
use crate::file_id::RemoteFilename;
use crate::protocol::Status;
use crate::timefmt::unix_secs;

/// A file name resolved once for a request.
#[derive(Debug, Clone)]
pub struct Located {
    pub name: RemoteFilename,
    pub path: PathBuf,
    pub in_slot: bool,
}

/// What a client reads of a file: the open file, where its content starts in it, its size
/// and its time (a slot's is its name's).
#[derive(Debug)]
pub struct Opened {
    pub file: std::fs::File,
    pub offset: u64,
    pub size: u64,
    pub mtime: i64,
}

/// The metadata file of the file at `path` (`<path>-m`).
pub fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-m");
    PathBuf::from(p)
}

impl StorePaths {
    /// Parses a remote filename against the store paths and returns it with its local path.
    pub fn resolve(&self, filename: &str) -> Result<(RemoteFilename, PathBuf), Status> {
        let name = RemoteFilename::parse(filename, Some(self.paths.len())).map_err(|_| Status::EINVAL)?;
        let path = self.local_path(&name).ok_or(Status::EINVAL)?;
        Ok((name, path))
    }

    /// A replicated name (a file, or its metadata file with `-m`): its store path and path.
    pub fn resolve_any(&self, filename: &str) -> Result<(usize, PathBuf), Status> {
        let (base, meta) = match filename.strip_suffix("-m") {
            Some(base) => (base, true),
            None => (filename, false),
        };
        let (name, path) = self.resolve(base)?;
        Ok((name.store_path_index as usize, if meta { meta_path(&path) } else { path }))
    }

    /// Parses `filename` against the store paths and says where its bytes are.
    pub fn locate(&self, filename: &str) -> Result<Located, Status> {
        let (name, path) = self.resolve(filename)?;
        let in_slot = crate::trunk::is_trunk_name(&name);
        Ok(Located { name, path, in_slot })
    }

    /// The store path a name lives under (`resolve` checked its index).
    pub fn store_root(&self, name: &RemoteFilename) -> PathBuf {
        self.paths[name.store_path_index as usize].root.clone()
    }

    /// `filename` as a trunk name with its store path, when it names a file kept in a trunk
    /// slot; `None` for regular files and `-m` metadata names.
    pub fn trunk_name(&self, filename: &str) -> Option<(RemoteFilename, PathBuf)> {
        let at = self.locate(filename).ok().filter(|at| at.in_slot)?;
        let root = self.store_root(&at.name);
        Some((at.name, root))
    }

    /// What a trunk name reads as here: its slot, a link slot followed to the file it names.
    /// Blocking.
    pub fn open_trunk_content(&self, name: &RemoteFilename) -> Result<Option<crate::trunk::Slot>, Status> {
        let root_of = |i: u8| self.paths.get(i as usize).map(|p| p.root.clone());
        crate::trunk::open_followed(name, self.paths.len(), root_of).map_err(io)
    }

    /// Whether the file is stored here: its regular file, or its slot (a link slot with the
    /// file it names). Blocking.
    pub fn is_stored(&self, at: &Located) -> Result<bool, Status> {
        if at.in_slot {
            return Ok(self.open_trunk_content(&at.name)?.is_some());
        }
        Ok(at.path.is_file())
    }

    /// Whether the file `filename` names is here as itself (its regular file, or its trunk
    /// slot, a link slot not followed). Blocking.
    pub fn holds(&self, filename: &str) -> bool {
        if let Some((name, root)) = self.trunk_name(filename) {
            return crate::trunk::open(&name, &root).ok().flatten().is_some();
        }
        self.resolve(filename).is_ok_and(|(_, p)| p.is_file())
    }
}

/// Opens what a client reads: a slot (a link slot followed once) on the blocking pool, a
/// regular file through [`Disk::open_for_read`] (one the kernel has cached opens on this
/// thread). EISDIR for a directory, ENOENT for nothing.
pub async fn open_located(paths: &Arc<StorePaths>, at: Located) -> Result<Opened, Status> {
    if at.in_slot {
        let paths = paths.clone();
        return Disk::read(move || {
            let slot = paths.open_trunk_content(&at.name)?.ok_or(Status::ENOENT)?;
            Ok(Opened { file: slot.file, offset: slot.content_offset, size: slot.size, mtime: slot.mtime as i64 })
        })
        .await;
    }
    let file = Disk::open_for_read(at.path).await.map_err(io)?;
    // The inode is in memory once the file is open: no disk read.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Status::EISDIR);
    }
    let mtime = meta.modified().map(unix_secs).unwrap_or(0);
    Ok(Opened { file, offset: 0, size: meta.len(), mtime })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_id::{generate, NameKind, NewName, Source};

    fn store() -> (tempfile::TempDir, Arc<StorePaths>) {
        let dir = tempfile::tempdir().unwrap();
        let roots = vec![dir.path().join("p0"), dir.path().join("p1")];
        let paths = StorePaths::open(&roots, &[], 4, 100, false, Default::default()).unwrap();
        (dir, Arc::new(paths))
    }

    fn name_of(index: u8, size: u64) -> String {
        let new = NewName {
            source: Source::Ip("192.168.1.5".parse().unwrap()),
            timestamp: 1_700_000_000,
            size,
            crc32: 7,
            kind: NameKind::Normal,
            ext: "jpg",
            store_path_index: index,
            high: 0,
            low: 3,
        };
        generate(&new, &mut fastrand::Rng::with_seed(1)).to_string()
    }

    #[tokio::test]
    async fn a_regular_file_is_located_in_its_store_path_and_opened_with_its_size() {
        let (_dir, paths) = store();
        let filename = name_of(1, 5);
        let at = paths.locate(&filename).unwrap();
        assert!(!at.in_slot);
        assert!(at.path.starts_with(&paths.paths[1].root), "{}", at.path.display());
        assert!(!paths.is_stored(&at).unwrap() && !paths.holds(&filename));
        assert_eq!(open_located(&paths, at.clone()).await.unwrap_err(), Status::ENOENT);
        std::fs::write(&at.path, b"bytes").unwrap();
        assert!(paths.is_stored(&at).unwrap() && paths.holds(&filename));
        let opened = open_located(&paths, at.clone()).await.unwrap();
        assert_eq!((opened.offset, opened.size), (0, 5));
        assert_eq!(paths.resolve_any(&format!("{filename}-m")).unwrap(), (1, meta_path(&at.path)));
        assert!(paths.trunk_name(&filename).is_none());
    }

    #[test]
    fn names_of_absent_store_paths_and_garbage_are_refused() {
        let (_dir, paths) = store();
        assert_eq!(paths.locate(&name_of(2, 5)).unwrap_err(), Status::EINVAL);
        assert_eq!(paths.locate("M00/../../etc/passwd").unwrap_err(), Status::EINVAL);
        assert_eq!(paths.resolve_any("-m").unwrap_err(), Status::EINVAL);
    }
}
