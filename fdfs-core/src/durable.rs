//! Durable writes, in one place: every file a daemon writes for keeps (uploads, replicated
//! files, metadata, state and mark files) goes through a [`TempFile`]: written under a name
//! nobody reads, then renamed into place. State files are fsynced with their directory here
//! ([`write_atomic`]); the storage's content is synced by its disk writers, a batch at a time.
//! A temp file that is never published removes itself when dropped.

use std::borrow::Borrow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// disk writers sync a whole batch of these together ([`sync_together`]; in
    /// `process_crash` mode they leave it to the kernel, as C does).
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

/// Most threads one [`sync_together`] call runs its syncs on.
const SYNC_THREADS: usize = 16;

/// Makes `files`' data and `dirs`' entries durable, the syncs running side by side when there
/// are more than two: a device flushes concurrent syncs together. Measured on the bench's disk
/// (ext4, virtio): a round of 16 new files and their directories took 2.7-2.9 ms against
/// 5.8-5.9 ms one after another, 4 files 0.9 ms against 1.2-1.5; one file and its directory
/// gain nothing, so two syncs run here, one after the other. Every sync has run (or failed)
/// when this returns; if any failed, one of their errors is returned.
pub fn sync_together<F: Borrow<File> + Sync>(files: &[F], dirs: &[&Path]) -> std::io::Result<()> {
    let jobs = files.len() + dirs.len();
    let run = |i: usize| if i < files.len() { files[i].borrow().sync_data() } else { sync_dir(dirs[i - files.len()]) };
    let threads = jobs.min(SYNC_THREADS);
    if threads <= 2 {
        return (0..jobs).try_for_each(run);
    }
    // Thread t runs jobs t, t + threads, ...; this thread runs share 0. A thread that cannot
    // be started leaves its share to this one.
    let share = |t: usize| -> std::io::Result<()> { (t..jobs).step_by(threads).try_for_each(run) };
    std::thread::scope(|scope| {
        let mut inline = vec![0];
        let mut started = Vec::with_capacity(threads - 1);
        for t in 1..threads {
            match std::thread::Builder::new().name("sync".into()).spawn_scoped(scope, move || share(t)) {
                Ok(h) => started.push(h),
                Err(_) => inline.push(t),
            }
        }
        let mut first = inline.into_iter().map(share).find(Result::is_err).unwrap_or(Ok(()));
        for h in started {
            let r = h.join().unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Makes the files and directory entries of a storage writer's sync rounds durable: with one
/// `syncfs(2)` of the store path's file system while little else is dirty, else each file and
/// directory on its own ([`sync_together`]). Measured on the bench's disk (ext4, virtio), a round
/// of 16 new files and their directories took 1.2-1.5 ms with syncfs against 3.5-3.7 ms side by
/// side, one file 0.39-0.43 ms against 0.57-0.65 (with the binlog's own sync after both): a
/// device flush per sync is most of a sync's cost, and syncfs needs one. But syncfs writes
/// everything dirty on the file system, whoever wrote it: a round that found 370 MB of a build
/// dirty waited a second for it. So it is used only while the machine's dirty and in-flight
/// pages (`/proc/meminfo`) stay under [`SYNCFS_DIRTY_MAX`], which bounds what it can cost.
#[derive(Debug)]
pub struct RoundSync {
    /// One descriptor per file system, opened with the writer and kept: syncfs reports the
    /// write-back errors of its file system since the last call on that descriptor (Linux 5.8
    /// on), so one opened for the round would miss those that came before it.
    file_systems: Vec<(u64, File)>,
    meminfo: Option<File>,
    /// Set once a syncfs failed: which file's pages were lost is unknown, and they could
    /// belong to a file of a later round (syncfs writes files still being written too). Its
    /// own fsync reports that to the round that holds it, so every round syncs file by file
    /// from then on.
    file_by_file: AtomicBool,
}

/// Most dirty and in-flight page-cache bytes (the whole machine's; the kernel counts them per
/// file system only in debugfs) a round may make syncfs write besides its own: 8 MiB is
/// milliseconds of an SSD's writes, tens of a spinning disk's.
const SYNCFS_DIRTY_MAX: u64 = 8 << 20;

impl RoundSync {
    /// Rounds of files under `dirs` (a writer's store path). Where syncfs does not report
    /// write-back errors (Linux before 5.8) or `dirs` cannot be opened, rounds sync file by file.
    pub fn new(dirs: &[&Path]) -> Self {
        use std::os::unix::fs::MetadataExt;
        let reports = std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|r| syncfs_reports_errors(&r));
        let opened = dirs.iter().filter(|_| reports).filter_map(|dir| File::open(dir).ok());
        let mut file_systems: Vec<(u64, File)> = Vec::new();
        for (dev, f) in opened.filter_map(|f| Some((f.metadata().ok()?.dev(), f))) {
            if !file_systems.iter().any(|(d, _)| *d == dev) {
                file_systems.push((dev, f));
            }
        }
        RoundSync { file_systems, meminfo: File::open("/proc/meminfo").ok(), file_by_file: AtomicBool::new(false) }
    }

    /// Makes `files`' data and `dirs`' entries durable; every sync has run (or failed) when
    /// this returns. Files and directories on another file system (a disk mounted below the
    /// store path) are synced on their own.
    pub fn sync(&self, files: &[File], dirs: &[&Path]) -> std::io::Result<()> {
        self.sync_counting(files, dirs).map(drop)
    }

    /// [`Self::sync`], returning how many file systems were synced whole.
    fn sync_counting(&self, files: &[File], dirs: &[&Path]) -> std::io::Result<usize> {
        use std::os::unix::fs::MetadataExt;
        if self.file_systems.is_empty() || self.file_by_file.load(Ordering::Relaxed) || !self.little_dirty() {
            return sync_together(files, dirs).map(|()| 0);
        }
        let mut whole = vec![false; self.file_systems.len()];
        let mut on_file_system = |dev: u64| match self.file_systems.iter().position(|(d, _)| *d == dev) {
            Some(i) => {
                whole[i] = true;
                true
            }
            None => false,
        };
        let mut own_files = Vec::new();
        for f in files {
            if !on_file_system(f.metadata()?.dev()) {
                own_files.push(f);
            }
        }
        let mut own_dirs = Vec::new();
        for &d in dirs {
            if !on_file_system(std::fs::metadata(d)?.dev()) {
                own_dirs.push(d);
            }
        }
        for (i, (_, fd)) in self.file_systems.iter().enumerate() {
            if whole[i] {
                if let Err(e) = rustix::fs::syncfs(fd) {
                    self.file_by_file.store(true, Ordering::Relaxed);
                    tracing::error!(
                        "syncing a store path's file system failed ({e}); every file is synced on its own from now on"
                    );
                    return Err(e.into());
                }
            }
        }
        sync_together(&own_files, &own_dirs)?;
        Ok(whole.iter().filter(|&&w| w).count())
    }

    /// Whether the machine's dirty and in-flight pages are few enough for a syncfs.
    fn little_dirty(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(meminfo) = &self.meminfo else { return false };
        let mut buf = [0u8; 4096];
        let Ok(n) = meminfo.read_at(&mut buf, 0) else { return false };
        dirty_bytes(&String::from_utf8_lossy(&buf[..n])).is_some_and(|b| b <= SYNCFS_DIRTY_MAX)
    }
}

/// `Dirty` plus `Writeback` of a `/proc/meminfo` text, in bytes (`None` if either is missing).
fn dirty_bytes(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().strip_suffix("kB")?.trim().parse().ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

/// Whether a kernel of this release reports write-back errors from syncfs (5.8 and later).
fn syncfs_reports_errors(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 8)
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

    #[test]
    fn syncs_together_report_a_failure_wherever_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..20).map(|i| File::create_new(dir.path().join(format!("f{i}"))).unwrap()).collect();
        let missing = dir.path().join("gone");
        for (nfiles, ndirs) in [(0, 0), (1, 1), (20, 20), (3, 0)] {
            let dirs = vec![dir.path(); ndirs];
            sync_together(&files[..nfiles], &dirs).unwrap();
            // One directory that cannot be opened, at every position among the directories: its
            // error is what comes back, whichever thread ran it.
            for at in 0..=ndirs {
                let mut dirs = dirs.clone();
                dirs.insert(at, &missing);
                let e = sync_together(&files[..nfiles], &dirs).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{nfiles} files, missing dir at {at}");
            }
        }
    }

    #[test]
    fn a_round_syncs_its_file_system_whole_only_while_little_is_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..3).map(|i| File::create_new(dir.path().join(format!("f{i}"))).unwrap()).collect();
        let with_dirty = |kib: u64| {
            let meminfo = dir.path().join(format!("meminfo-{kib}"));
            std::fs::write(&meminfo, format!("MemTotal: 24000000 kB\nDirty: {kib} kB\nWriteback: 16 kB\n")).unwrap();
            RoundSync { meminfo: Some(File::open(&meminfo).unwrap()), ..RoundSync::new(&[dir.path()]) }
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert!(syncfs_reports_errors(&release), "the tests need Linux 5.8 or later, not {release}");
        let quiet = with_dirty(100);
        assert_eq!(quiet.sync_counting(&files, &[dir.path()]).unwrap(), 1, "one syncfs for one file system");
        assert_eq!(quiet.sync_counting(&[], &[]).unwrap(), 0, "an empty round syncs nothing");
        let busy = with_dirty(9 * 1024);
        assert_eq!(busy.sync_counting(&files, &[dir.path()]).unwrap(), 0, "9 MiB dirty: file by file");
        let failed_once = RoundSync { file_by_file: AtomicBool::new(true), ..with_dirty(0) };
        assert_eq!(failed_once.sync_counting(&files, &[dir.path()]).unwrap(), 0, "file by file after a failed syncfs");
        // Files and directories on another file system (/dev/shm, a tmpfs) are synced on their
        // own: the round still syncs one file system whole, and syncs them too.
        let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
        let other = File::create_new(elsewhere.path().join("f")).unwrap();
        let mixed = [files[0].try_clone().unwrap(), other];
        assert_eq!(quiet.sync_counting(&mixed, &[dir.path(), elsewhere.path()]).unwrap(), 1);
        assert_eq!(quiet.sync_counting(&mixed[1..], &[elsewhere.path()]).unwrap(), 0, "nothing here to sync whole");
        // A directory that is gone fails the round either way.
        let gone = dir.path().join("gone");
        for round in [quiet, busy] {
            assert_eq!(round.sync(&files, &[dir.path(), &gone]).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn dirty_pages_and_kernel_releases_are_read() {
        let meminfo = "MemTotal:       24683772 kB\nDirty:               168 kB\nWriteback:            60 kB\n";
        assert_eq!(dirty_bytes(meminfo), Some(228 * 1024));
        assert_eq!(dirty_bytes("Dirty: 5 kB\n"), None, "no Writeback line");
        for (release, reports) in
            [("5.7.19", false), ("5.8.0", true), ("6.1.0-18-amd64", true), ("4.19.0-26-cloud", false), ("", false)]
        {
            assert_eq!(syncfs_reports_errors(release), reports, "{release}");
        }
    }
}
