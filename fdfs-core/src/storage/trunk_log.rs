//! The trunk binlog and the lists beside it (`data/trunk/`): appended under a lock, synced when
//! dirty, read in chunks for the push, replayed into the free space, compressed with backups.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::locked::MutexExt;
use crate::timefmt::now_unix;
use crate::trunk::space::{FreeSpace, SpaceRecord};

/// `data/trunk/binlog` (or another log of that directory, `removed`): appended under a lock,
/// synced when dirty, pushed to the members from a mark file per member.
#[derive(Debug)]
pub struct TrunkLog {
    dir: PathBuf,
    /// The file's name in `dir`.
    name: &'static str,
    file: Mutex<File>,
    len: AtomicU64,
    dirty: AtomicBool,
}

impl TrunkLog {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_named(dir, "binlog")
    }

    pub(super) fn open_named(dir: &Path, name: &'static str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        crate::durable::remove_stale_temps(dir);
        let file = OpenOptions::new().create(true).append(true).read(true).open(dir.join(name))?;
        let len = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            name,
            file: Mutex::new(file),
            len: AtomicU64::new(len),
            dirty: AtomicBool::new(false),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.file.locked()
    }

    pub fn append(&self, records: &[SpaceRecord]) -> std::io::Result<()> {
        let text: String = records.iter().map(SpaceRecord::line).collect();
        self.append_raw(text.as_bytes())
    }

    /// Appends whole lines (a trunk server's, received with 30).
    pub fn append_raw(&self, text: &[u8]) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let mut f = self.lock();
        f.write_all(text)?;
        self.len.fetch_add(text.len() as u64, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes every line appended so far durable (nothing to do if none was).
    pub fn sync_if_dirty(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let f = self.lock().try_clone()?;
        f.sync_data().inspect_err(|_| self.dirty.store(true, Ordering::Release))
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whole lines from `offset`, at most `max` bytes (a longer line is returned whole).
    pub fn read_from(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let mut f = self.lock().try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take(max as u64).read_to_end(&mut buf)?;
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(end) => buf.truncate(end + 1),
            None => buf.clear(),
        }
        Ok(buf)
    }

    /// Replays the binlog into `space`, read line by line (its size does not matter); returns
    /// how many lines did not parse and how many did not fit the free space.
    pub fn replay_into(&self, space: &mut FreeSpace) -> std::io::Result<(usize, usize)> {
        use std::io::BufRead;
        let (mut bad, mut skipped) = (0, 0);
        let mut lines = std::io::BufReader::new(File::open(self.dir.join(self.name))?).split(b'\n');
        while let Some(line) = lines.next().transpose()? {
            let line = String::from_utf8_lossy(&line);
            if line.trim().is_empty() {
                continue;
            }
            match SpaceRecord::parse(&line) {
                Some(r) => skipped += usize::from(!space.replay(&r)),
                None => bad += 1,
            }
        }
        Ok((bad, skipped))
    }

    /// 33: the trunk server is about to send its whole binlog. The old one is kept as
    /// `binlog.<YYYYMMDDhhmmss>`, as C keeps it (whatever `max_backups` says), and only the
    /// newest `max_backups` (at least this one) of those, so repeated pushes do not pile up.
    pub fn restart(&self, max_backups: usize) -> std::io::Result<()> {
        let mut f = self.lock();
        let (y, mo, d, h, mi, sec) = crate::timefmt::civil(now_unix());
        let backup = format!("binlog.{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}");
        let live = self.dir.join("binlog");
        if !self.is_empty() {
            std::fs::rename(&live, self.dir.join(backup))?;
        }
        *f = OpenOptions::new().create(true).append(true).read(true).truncate(false).open(&live)?;
        f.set_len(0)?;
        crate::durable::sync_dir(&self.dir)?;
        self.len.store(0, Ordering::Relaxed);
        drop(f);
        self.prune_backups(max_backups.max(1))
    }

    /// Compression: `records` become the binlog (written beside it and renamed over it); the
    /// old one is kept as `binlog.<YYYYMMDDhhmmss>`, and only the newest `max_backups` of those.
    pub fn replace(&self, records: &[SpaceRecord], max_backups: usize) -> std::io::Result<()> {
        let text: String = records.iter().map(SpaceRecord::line).collect();
        let mut f = self.lock();
        let live = self.dir.join("binlog");
        let mut next = crate::durable::TempFile::create_in(&self.dir, "binlog")?;
        next.file().write_all(text.as_bytes())?;
        if max_backups > 0 {
            let (y, mo, d, h, mi, sec) = crate::timefmt::civil(now_unix());
            std::fs::hard_link(&live, self.dir.join(format!("binlog.{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}")))
                .or_else(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })?;
        }
        next.replace(&live)?;
        *f = OpenOptions::new().append(true).read(true).open(&live)?;
        self.len.store(text.len() as u64, Ordering::Relaxed);
        self.dirty.store(false, Ordering::Release);
        drop(f);
        self.prune_backups(max_backups)
    }

    /// Keeps the newest `max_backups` old binlogs.
    fn prune_backups(&self, max_backups: usize) -> std::io::Result<()> {
        let mut backups: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_backup_name))
            .collect();
        backups.sort();
        let extra = backups.len().saturating_sub(max_backups);
        for old in &backups[..extra] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }

    /// The binlog's mark file is C's (`<peer>.mark`); another log's is `<peer>.<name>.mark`.
    fn mark_name(&self, peer: &str) -> String {
        match self.name {
            "binlog" => format!("{peer}.mark"),
            other => format!("{peer}.{other}.mark"),
        }
    }

    pub(super) fn mark_path(&self, peer: &str) -> PathBuf {
        self.dir.join(self.mark_name(peer))
    }

    /// How far the binlog was pushed to `peer` (`binlog_offset=N`), 0 if never.
    pub(super) fn mark(&self, peer: &str) -> u64 {
        let text = std::fs::read_to_string(self.mark_path(peer)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("binlog_offset="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(super) fn save_mark(&self, peer: &str, offset: u64) -> std::io::Result<()> {
        crate::durable::write_atomic(&self.dir, &self.mark_name(peer), format!("binlog_offset={offset}\n").as_bytes())
    }

    /// 32: every push restarts from the beginning (the caller bumps the pusher's epoch).
    pub(super) fn delete_marks(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "mark") {
                std::fs::remove_file(p)?;
            }
        }
        Ok(())
    }
}

/// `binlog.<YYYYMMDDhhmmss>`: an old trunk binlog kept as a backup.
fn is_backup_name(name: &str) -> bool {
    name.strip_prefix("binlog.").is_some_and(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()))
}
