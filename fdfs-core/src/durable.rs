//! Durable writes, in one place: every file a daemon writes for keeps (uploads, replicated
//! files, metadata, state and mark files) goes through a [`TempFile`]: written under a name
//! nobody reads, then renamed into place. State files are fsynced with their directory here
//! ([`write_atomic`]); the storage's content is synced by its disk writers, a batch at a time.
//! A temp file that is never published removes itself when dropped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

/// A file being written that becomes visible only when published.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    unpublished: Unpublished,
}

/// The temp name, removed when dropped unless the content was published.
#[derive(Debug)]
struct Unpublished {
    path: PathBuf,
    kept: bool,
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temp name in `dir` no other writer of this process (or a previous one) uses.
pub fn unique_name(dir: &Path, stem: &str) -> PathBuf {
    // The process ID asked once: every upload names a temp file.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{stem}.{pid}-{seq}.tmp"))
}

impl TempFile {
    /// Creates `path`, which must not exist.
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        let file = File::create_new(&path)?;
        Ok(TempFile { file, unpublished: Unpublished { path, kept: false } })
    }

    /// A new temp file with a unique name in `dir`.
    pub fn create_in(dir: &Path, stem: &str) -> std::io::Result<Self> {
        Self::create(unique_name(dir, stem))
    }

    pub fn path(&self) -> &Path {
        &self.unpublished.path
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn file_ref(&self) -> &File {
        &self.file
    }

    /// Moves the content to `dest`, which must not exist (`AlreadyExists` otherwise, and the
    /// temp file stays for another try). Neither content nor entry is synced: the storage's
    /// disk writers sync a whole batch of these with one `syncfs` (or, in `process_crash`
    /// mode, leave it to the kernel as C does).
    pub fn publish_entry(&mut self, dest: &Path) -> std::io::Result<()> {
        rename_entry(&self.unpublished.path, dest)?;
        self.unpublished.kept = true;
        Ok(())
    }

    /// The file, to sync after publishing ([`Self::publish_entry`]): its own descriptor, not a
    /// copy (an upload would pay a dup and a close for one).
    pub fn into_published_file(self) -> File {
        debug_assert!(self.unpublished.kept, "published before its file is kept");
        self.file
    }

    /// Moves the content over `dest`, unsynced (as [`Self::publish_entry`]); returns the file,
    /// to sync.
    pub fn replace_entry(mut self, dest: &Path) -> std::io::Result<File> {
        std::fs::rename(&self.unpublished.path, dest)?;
        self.unpublished.kept = true;
        Ok(self.file)
    }

    /// Fsyncs the content and moves it over `dest` (state files, metadata).
    pub fn replace(mut self, dest: &Path) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.unpublished.path, dest)?;
        self.unpublished.kept = true;
        sync_parent(dest)
    }
}

/// Renames without ever replacing an existing file, unsynced (as [`TempFile::publish_entry`]):
/// `Err(AlreadyExists)` means the name is taken.
pub fn rename_entry(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE).map_err(std::io::Error::from)
}

/// Removes the temp files an interrupted run left directly in `dir` (state-file writes).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".tmp") && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `dir/name` with `content`, atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    let mut t = TempFile::create_in(dir, name)?;
    t.file().write_all(content)?;
    t.replace(&dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpublished_temp_files_remove_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut t = TempFile::create_in(dir.path(), "x").unwrap();
            t.file().write_all(b"half").unwrap();
            t.path().to_owned()
        };
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn publish_never_replaces_and_replace_does() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let mut t = TempFile::create_in(dir.path(), "f").unwrap();
        t.file().write_all(b"one").unwrap();
        t.publish_entry(&dest).unwrap();
        let mut t2 = TempFile::create_in(dir.path(), "f").unwrap();
        t2.file().write_all(b"two").unwrap();
        assert_eq!(t2.publish_entry(&dest).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"one");
        t2.replace(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        write_atomic(dir.path(), "g", b"state").unwrap();
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"state");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temp file left");
    }
}
