//! The storage's disk layer: every filesystem call of a change runs here. With `durability =
//! power_loss`, changes go to per-store-path writer threads (C's dio threads), fed by a queue; a
//! writer applies what queued up, then commits the batch in one round: the batch's files and
//! their directories (each once) are synced ([`crate::durable::RoundSync`]: one `syncfs(2)` of
//! the file system while little is dirty on the machine, else side by side), then its binlog
//! lines are written and synced. Each request is answered after the round that covers it; if
//! the round fails every change of the batch is undone and refused, and no line of it stays.
//!
//! With `process_crash` nothing is synced, so there is no round to share: a change is a few
//! page-cache calls (a name made, a temp file renamed into place, a binlog line written; large
//! content was streamed into its temp file before, off the async workers) and it runs on the
//! request's own thread. Handing it to a writer and back cost two thread wake-ups per request,
//! measured as most of a 4 KiB upload's CPU time (`perf`: 49% in scheduling and wake-ups) and
//! 0.6x of C's rate at one client. Reads run on the blocking pool.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::io::AsyncRead;

use super::binlog::{Binlog, Record};
use super::content::{Content, CHUNK};
use crate::config::{Durability, StorageConfig};
use crate::locked::MutexExt;
use crate::protocol::Status;

/// Most changes one writer commits in one round.
const MAX_BATCH: usize = 256;

/// A change a writer job made, with what it means for the batch: the binlog records that
/// describe it, and what to do once the batch's fate is known (undo it if the round failed).
pub struct Change<T> {
    value: T,
    records: Vec<Record>,
    settle: Option<Box<dyn FnOnce(bool) + Send>>,
    files: Vec<File>,
    dirs: Vec<PathBuf>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Change<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change").field("value", &self.value).field("records", &self.records).finish_non_exhaustive()
    }
}

impl<T> Change<T> {
    pub fn new(value: T) -> Self {
        Change { value, records: Vec::new(), settle: None, files: Vec::new(), dirs: Vec::new() }
    }

    /// A file whose content the round must make durable.
    pub fn sync_file(mut self, f: File) -> Self {
        self.files.push(f);
        self
    }

    /// A directory whose entries the round must make durable.
    pub fn sync_dir(mut self, dir: &Path) -> Self {
        self.dirs.push(dir.to_owned());
        self
    }

    /// The directory holding `path`.
    pub fn sync_parent(self, path: &Path) -> Self {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.sync_dir(dir)
    }

    pub fn record(mut self, r: Record) -> Self {
        self.records.push(r);
        self
    }

    /// The same change answering `f(value)`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        let Change { value, records, settle, files, dirs } = self;
        Change { value: f(value), records, settle, files, dirs }
    }

    /// `f(committed)` runs after the round: with `false` it must undo the change.
    pub fn settle(mut self, f: impl FnOnce(bool) + Send + 'static) -> Self {
        self.settle = Some(Box::new(f));
        self
    }
}

struct Pending {
    records: Vec<Record>,
    files: Vec<File>,
    dirs: Vec<PathBuf>,
    finish: Box<dyn FnOnce(Result<(), Status>) + Send>,
}

type Job = Box<dyn FnOnce(&Writer) -> Option<Pending> + Send>;

/// What a writer job may use: the store path it writes to and the durability rules.
#[derive(Debug)]
pub struct Writer {
    temp_dir: PathBuf,
    durability: Durability,
    fsync_every: u64,
    binlog: Arc<Binlog>,
    /// The trunk binlog: slot confirmations written by the batch's jobs are synced with it.
    trunk_log: Arc<super::trunk_log::TrunkLog>,
    changed: Arc<tokio::sync::Notify>,
    faults: Arc<AtomicU32>,
    /// How a round's files and directories are synced (`power_loss` only).
    round_sync: Option<crate::durable::RoundSync>,
}

impl Writer {
    /// A new temp file in the store path's temp directory (removed unless published).
    pub fn temp_file(&self) -> std::io::Result<crate::durable::TempFile> {
        crate::durable::TempFile::create_in(&self.temp_dir, "f")
    }

    /// `fsync_after_written_bytes` for a file just given `len` more bytes in one piece (a
    /// streamed file is handled as it streams). With `power_loss` the batch's sync covers it.
    pub fn wrote(&self, f: &File, len: u64) -> std::io::Result<()> {
        if self.durability == Durability::ProcessCrash && self.fsync_every > 0 && len >= self.fsync_every {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The round: with `power_loss` the batch's files and directories are made durable, then its
    /// records are written and synced, so a durable record always names a durable file (and a
    /// failed round leaves no record behind).
    fn commit(&self, records: &[Record], files: &[File], dirs: BTreeSet<PathBuf>) -> Result<(), Status> {
        let durable = self.durability == Durability::PowerLoss;
        let written = (if durable { self.sync_content(files, &dirs) } else { Ok(()) }).and_then(|()| {
            self.binlog.write_batch(records, |binlog| {
                if !durable {
                    return Ok(());
                }
                self.trunk_log.sync_if_dirty()?;
                binlog.sync_data()
            })
        });
        match written {
            Ok(()) => {
                self.changed.notify_waiters();
                Ok(())
            }
            Err(e) => {
                tracing::error!("committing {} change(s) failed: {e}; they are undone and refused", records.len());
                Err(Status::from_io(&e))
            }
        }
    }

    /// Makes what the round's records will name durable: its files and directories (fails
    /// instead while [`Disk::fail_next_syncs`] says so).
    fn sync_content(&self, files: &[File], dirs: &BTreeSet<PathBuf>) -> std::io::Result<()> {
        if self.faults.load(Ordering::Relaxed) > 0 {
            self.faults.fetch_sub(1, Ordering::Relaxed);
            return Err(std::io::Error::from_raw_os_error(nix::libc::EIO));
        }
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        self.round_sync.as_ref().map_or(Ok(()), |round| round.sync(files, &dirs))
    }

    /// Runs one job; a job that panics is refused (its caller sees EIO) and the writer lives on.
    fn apply(&self, job: Job) -> Option<Pending> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(self))) {
            Ok(pending) => pending,
            Err(_) => {
                tracing::error!("a disk job panicked; its request is refused");
                None
            }
        }
    }

    /// Applies and commits one change on this thread, as a batch of its own.
    fn run_one<T>(&self, f: impl FnOnce(&Writer) -> Result<Change<T>, Status>) -> Result<T, Status> {
        let change = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))).unwrap_or_else(|_| {
            tracing::error!("a disk change panicked; its request is refused");
            Err(Status::EIO)
        })?;
        let Change { value, records, settle, files, dirs } = change;
        let r = self.commit(&records, &files, dirs.into_iter().collect());
        drop(files);
        if let Some(settle) = settle {
            settle(r.is_ok());
        }
        r.map(|()| value)
    }

    fn run(self, jobs: crossbeam_channel::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let mut batch: Vec<Pending> = self.apply(job).into_iter().collect();
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.extend(self.apply(job)),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let records: Vec<Record> = batch.iter_mut().flat_map(|p| std::mem::take(&mut p.records)).collect();
            let files: Vec<File> = batch.iter_mut().flat_map(|p| std::mem::take(&mut p.files)).collect();
            let dirs: BTreeSet<PathBuf> = batch.iter_mut().flat_map(|p| std::mem::take(&mut p.dirs)).collect();
            let r = self.commit(&records, &files, dirs);
            drop(files);
            // Undone newest first, should two changes of a failed batch touch one directory.
            for p in batch.into_iter().rev() {
                (p.finish)(r);
            }
        }
    }
}

/// `path` opened read-only if that needs no disk read: `None` when it would (or the kernel has
/// no `RESOLVE_CACHED`), else the outcome, a cached "no such file" included.
fn open_cached(path: &Path) -> Option<std::io::Result<File>> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    // O_NONBLOCK: should a FIFO ever sit where a file is expected, its open must not wait on
    // this thread for a writer (on a regular file the flag changes nothing).
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::from_bits_retain(nix::libc::RESOLVE_CACHED));
    match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path, how) {
        Ok(fd) => Some(Ok(File::from(fd))),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOSYS | nix::errno::Errno::EINVAL) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// The writer queues of every store path, and the rules they write by.
#[derive(Debug)]
pub struct Disk {
    queues: Vec<crossbeam_channel::Sender<Job>>,
    /// With `process_crash`: each store path's writer, run on the calling thread (no queues).
    inline: Vec<Writer>,
    durability: Durability,
    fsync_every: u64,
    faults: Arc<AtomicU32>,
}

impl Disk {
    /// Starts `disk_writer_threads` writers per store path.
    pub fn open(
        config: &StorageConfig,
        temp_dirs: Vec<PathBuf>,
        binlog: Arc<Binlog>,
        trunk_log: Arc<super::trunk_log::TrunkLog>,
        changed: Arc<tokio::sync::Notify>,
    ) -> std::io::Result<Self> {
        let faults = Arc::new(AtomicU32::new(0));
        let writer = |temp_dir: &Path| Writer {
            temp_dir: temp_dir.to_owned(),
            durability: config.durability,
            fsync_every: config.fsync_after_written_bytes,
            binlog: binlog.clone(),
            trunk_log: trunk_log.clone(),
            changed: changed.clone(),
            faults: faults.clone(),
            round_sync: (config.durability == Durability::PowerLoss)
                .then(|| crate::durable::RoundSync::new(&[temp_dir])),
        };
        let (mut queues, mut inline) = (Vec::new(), Vec::new());
        for (i, temp_dir) in temp_dirs.into_iter().enumerate() {
            if config.durability == Durability::ProcessCrash {
                inline.push(writer(&temp_dir));
                continue;
            }
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            for t in 0..config.disk_writer_threads.max(1) {
                let (w, rx) = (writer(&temp_dir), rx.clone());
                std::thread::Builder::new().name(format!("disk-writer-{i}.{t}")).spawn(move || w.run(rx))?;
            }
            queues.push(tx);
        }
        let fsync_every = config.fsync_after_written_bytes;
        Ok(Disk { queues, inline, durability: config.durability, fsync_every, faults })
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Runs `f` on a writer of store path `index` and answers once the round that commits
    /// its change is over: the change's value, or why it was refused (then it was undone).
    pub async fn write<T: Send + 'static>(
        &self,
        index: usize,
        f: impl FnOnce(&Writer) -> Result<Change<T>, Status> + Send + 'static,
    ) -> Result<T, Status> {
        if self.durability == Durability::ProcessCrash {
            return self.inline.get(index).ok_or(Status::EINVAL)?.run_one(f);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |w| match f(w) {
            Err(s) => {
                let _ = tx.send(Err(s));
                None
            }
            Ok(Change { value, records, settle, files, dirs }) => Some(Pending {
                records,
                files,
                dirs,
                finish: Box::new(move |r| {
                    if let Some(settle) = settle {
                        settle(r.is_ok());
                    }
                    let _ = tx.send(r.map(|()| value));
                }),
            }),
        });
        let queue = self.queues.get(index).ok_or(Status::EINVAL)?;
        queue.send(job).map_err(|_| Status::EIO)?;
        rx.await.unwrap_or(Err(Status::EIO))
    }

    /// A look at the path a change is about to touch (does it exist, how big is it): on the
    /// calling thread where changes run there (`process_crash`, whose change then finds the
    /// same directory cached), on the blocking pool otherwise.
    pub async fn probe<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        if self.durability == Durability::ProcessCrash {
            return f();
        }
        Self::read(f).await
    }

    /// Opens `path` for reading: on this thread when the kernel can resolve it from its caches
    /// alone (`openat2` with `RESOLVE_CACHED` never waits for the disk; a file written or read
    /// lately always can), on the blocking pool otherwise (or on a kernel before 5.12). A
    /// hand-off to the pool and back cost more than a whole cached 4 KiB download.
    pub async fn open_for_read(path: PathBuf) -> std::io::Result<File> {
        if let Some(cached) = open_cached(&path) {
            return cached;
        }
        Self::io(move || File::open(path)).await
    }

    /// Runs a read (or a preparation that changes nothing yet) on the blocking pool.
    pub async fn read<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
        tokio::task::spawn_blocking(f).await.unwrap_or(Err(Status::EIO))
    }

    /// Runs file work that reports IO errors on the blocking pool (a task that did not finish
    /// is an IO error too).
    pub async fn io<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
        tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
    }

    /// Streams the rest of `content` into `file` at `offset`: two chunks in use at once, one
    /// written on the blocking pool while the next is read. Returns once the last write has
    /// landed, on error too, and `fence` counts the writes still running should the request
    /// be cancelled ([`Rollback`] waits for them). A write error is reported after the whole
    /// content is read, so the client sees the status rather than a reset connection.
    pub async fn stream_into<R: AsyncRead + Unpin>(
        &self,
        file: Arc<File>,
        mut offset: u64,
        content: &mut Content<'_, R>,
        fence: &WriteFence,
    ) -> std::io::Result<()> {
        let mut spare = Some(vec![0u8; CHUNK]);
        let mut running: Option<tokio::task::JoinHandle<(Vec<u8>, std::io::Result<()>)>> = None;
        let mut failed: Option<std::io::Error> = None;
        let mut unsynced = 0u64;
        let result = loop {
            if content.left() == 0 {
                break Ok(());
            }
            let mut buf = match spare.take() {
                Some(b) => b,
                None => vec![0u8; CHUNK],
            };
            let n = match content.read_chunk(&mut buf).await {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if let Some(h) = running.take() {
                let (b, r) = h.await.unwrap_or_else(|e| (Vec::new(), Err(std::io::Error::other(e))));
                spare = Some(b).filter(|b| !b.is_empty());
                failed = failed.or(r.err());
            }
            if failed.is_some() {
                spare = Some(buf);
                continue;
            }
            unsynced += n as u64;
            let sync_now =
                self.durability == Durability::ProcessCrash && self.fsync_every > 0 && unsynced >= self.fsync_every;
            if sync_now {
                unsynced = 0;
            }
            let (f, at, done) = (file.clone(), offset, fence.begin());
            running = Some(tokio::task::spawn_blocking(move || {
                let r = f.write_all_at(&buf[..n], at).and_then(|()| if sync_now { f.sync_data() } else { Ok(()) });
                drop(done);
                (buf, r)
            }));
            offset += n as u64;
        };
        if let Some(h) = running.take() {
            let (_, r) = h.await.unwrap_or_else(|e| (Vec::new(), Err(std::io::Error::other(e))));
            failed = failed.or(r.err());
        }
        result?;
        if let Some(e) = failed {
            return Err(e);
        }
        if self.durability == Durability::PowerLoss {
            // A large file's data is synced here, in parallel with other uploads; the writer's
            // round (one thread) then finds it clean. Measured: syncing sixteen 1 MiB files one
            // after another in the round cost a quarter of the 1 MiB upload rate.
            let f = file.clone();
            Self::io(move || f.sync_data()).await?;
        }
        Ok(())
    }

    /// Test hook: the next `n` sync rounds fail with EIO, as a dying disk's would.
    #[doc(hidden)]
    pub fn fail_next_syncs(&self, n: u32) {
        self.faults.store(n, Ordering::Relaxed);
    }
}

/// Counts the streamed writes still running on the blocking pool for one request.
#[derive(Debug, Clone, Default)]
pub struct WriteFence(Arc<(Mutex<usize>, Condvar)>);

/// One running write; dropping it ends it.
#[derive(Debug)]
pub struct Running(WriteFence);

impl WriteFence {
    fn begin(&self) -> Running {
        *self.0 .0.locked() += 1;
        Running(self.clone())
    }

    /// Blocks until no write is running.
    pub fn wait(&self) {
        let (count, zero) = &*self.0;
        let mut n = count.locked();
        while *n > 0 {
            n = zero.wait(n).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (count, zero) = &*self.0 .0;
        *count.locked() -= 1;
        zero.notify_all();
    }
}

/// Puts an appender file back as it was before a change, unless the change is committed:
/// a failed, cancelled (the request's task dropped at shutdown) or unrecorded append, modify
/// or truncate leaves no partial bytes that the binlog does not describe, so replicas never
/// silently differ. The bytes a change overwrites or cuts off are copied aside first.
#[derive(Debug)]
pub struct Rollback {
    path: PathBuf,
    old_size: u64,
    /// Where the saved bytes came from, and the copy.
    saved: Option<(u64, PathBuf)>,
    committed: bool,
    fence: WriteFence,
}

impl Rollback {
    /// Saves `[offset, offset + len)` of the file (what exists of it) into `copy`.
    pub fn capture(path: &Path, offset: u64, len: u64, copy: PathBuf) -> std::io::Result<Self> {
        let mut f = File::open(path)?;
        let old_size = f.metadata()?.len();
        let end = offset.saturating_add(len).min(old_size);
        let saved = if end > offset {
            f.seek(SeekFrom::Start(offset))?;
            let mut out = File::create_new(&copy)?;
            std::io::copy(&mut (&mut f).take(end - offset), &mut out)?;
            Some((offset, copy))
        } else {
            None
        };
        Ok(Rollback { path: path.to_owned(), old_size, saved, committed: false, fence: WriteFence::default() })
    }

    /// The fence the change's streamed writes report to: a rollback waits for them.
    pub fn fence(&self) -> &WriteFence {
        &self.fence
    }

    /// The change is committed (`true`: keep it) or refused (`false`: put the file back).
    pub fn settle(mut self, committed: bool) {
        self.committed = committed;
    }

    fn restore(&self) -> std::io::Result<()> {
        self.fence.wait();
        let mut f = OpenOptions::new().write(true).open(&self.path)?;
        if let Some((offset, copy)) = &self.saved {
            f.seek(SeekFrom::Start(*offset))?;
            std::io::copy(&mut File::open(copy)?, &mut f)?;
        }
        f.set_len(self.old_size)?;
        f.sync_all()
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.committed {
            match self.restore() {
                Ok(()) => tracing::warn!("{}: unfinished change rolled back", self.path.display()),
                Err(e) => tracing::error!("{}: rolling back an unfinished change failed: {e}", self.path.display()),
            }
        }
        if let Some((_, copy)) = &self.saved {
            let _ = std::fs::remove_file(copy);
        }
    }
}

/// Writes `data` into an existing file at `offset` (a small append or modify, in a writer job).
pub fn write_at(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<File> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.write_all_at(data, offset)?;
    Ok(f)
}

/// Writes a whole small file's content into a fresh temp file.
pub fn write_temp(w: &Writer, data: &[u8], mtime: std::time::SystemTime) -> std::io::Result<crate::durable::TempFile> {
    let mut temp = w.temp_file()?;
    temp.file().write_all(data)?;
    temp.file().set_modified(mtime)?;
    w.wrote(temp.file(), data.len() as u64)?;
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_for_read_opens_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"content").unwrap();
        let mut f = Disk::open_for_read(path).await.unwrap();
        let mut got = String::new();
        f.read_to_string(&mut got).unwrap();
        assert_eq!(got, "content");
        let missing = Disk::open_for_read(dir.path().join("missing")).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    fn setup(content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("appender");
        std::fs::write(&file, content).unwrap();
        let copy = dir.path().join("saved");
        (dir, file, copy)
    }

    #[test]
    fn an_unfinished_modify_is_put_back_byte_for_byte() {
        let (_dir, file, copy) = setup(b"0123456789");
        // A modify of 10 bytes at 3: it overwrites 7 and extends the file by 3.
        let undo = Rollback::capture(&file, 3, 10, copy.clone()).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"3456789", "the range about to be overwritten is saved");
        write_at(&file, 3, b"XXXXXX").unwrap(); // cut off after 6 of its 10 bytes
        drop(undo);
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");
        assert!(!copy.exists(), "the saved copy is removed");
    }

    #[test]
    fn an_unfinished_append_and_truncate_are_undone_and_a_committed_change_stays() {
        let (_dir, file, copy) = setup(b"abc");
        let undo = Rollback::capture(&file, 3, 5, copy.clone()).unwrap();
        assert!(!copy.exists(), "an append overwrites nothing: nothing to save");
        OpenOptions::new().append(true).open(&file).unwrap().write_all(b"de").unwrap();
        undo.settle(false);
        assert_eq!(std::fs::read(&file).unwrap(), b"abc");

        let undo = Rollback::capture(&file, 1, 2, copy.clone()).unwrap();
        OpenOptions::new().write(true).open(&file).unwrap().set_len(1).unwrap();
        drop(undo);
        assert_eq!(std::fs::read(&file).unwrap(), b"abc", "a truncate is undone with the bytes it cut");

        let undo = Rollback::capture(&file, 3, 3, copy.clone()).unwrap();
        OpenOptions::new().append(true).open(&file).unwrap().write_all(b"def").unwrap();
        undo.settle(true);
        assert_eq!(std::fs::read(&file).unwrap(), b"abcdef");
        assert!(!copy.exists());
    }

    #[test]
    fn a_rollback_waits_for_the_writes_still_running() {
        let (_dir, file, copy) = setup(b"abc");
        let undo = Rollback::capture(&file, 3, 3, copy).unwrap();
        let running = undo.fence().begin();
        let f = file.clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            write_at(&f, 3, b"def").unwrap();
            drop(running);
        });
        drop(undo); // must wait for the late write, then cut it off
        late.join().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"abc");
    }
}
