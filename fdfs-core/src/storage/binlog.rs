//! The binlog (PROTOCOL.md §6.1): one line per change, `<timestamp> <op> <filename>[ <extra>]`,
//! in `<base_path>/data/sync/binlog.NNN`, rotated at 1 GiB, with `binlog_index.dat` naming the
//! file being written. Uppercase ops originate here; lowercase ones were replicated to us.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::locked::MutexExt;

/// A new binlog file is started past this size.
pub const ROTATE_SIZE: u64 = 1 << 30;
/// Lines are at most this long (C readers use a 256-byte buffer).
pub const MAX_LINE: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    Append,
    Modify,
    Truncate,
    Link,
    Rename,
}

impl Op {
    pub fn letter(self, replica: bool) -> char {
        let c = match self {
            Op::Create => 'C',
            Op::Update => 'U',
            Op::Delete => 'D',
            Op::Append => 'A',
            Op::Modify => 'M',
            Op::Truncate => 'T',
            Op::Link => 'L',
            Op::Rename => 'R',
        };
        if replica {
            c.to_ascii_lowercase()
        } else {
            c
        }
    }

    pub fn from_letter(c: char) -> Option<(Op, bool)> {
        let op = match c.to_ascii_uppercase() {
            'C' => Op::Create,
            'U' => Op::Update,
            'D' => Op::Delete,
            'A' => Op::Append,
            'M' => Op::Modify,
            'T' => Op::Truncate,
            'L' => Op::Link,
            'R' => Op::Rename,
            _ => return None,
        };
        Some((op, c.is_ascii_lowercase()))
    }
}

/// One parsed binlog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: i64,
    pub op: Op,
    pub replica: bool,
    pub filename: String,
    pub extra: String,
}

impl Record {
    /// A change made here (uppercase op: this storage is its source).
    pub fn own(timestamp: i64, op: Op, filename: &str, extra: String) -> Self {
        Record { timestamp, op, replica: false, filename: filename.to_owned(), extra }
    }

    /// A change replicated from a member (lowercase op: never sent back).
    pub fn replicated(timestamp: i64, op: Op, filename: &str, extra: String) -> Self {
        Record { timestamp, op, replica: true, filename: filename.to_owned(), extra }
    }

    pub fn line(&self) -> String {
        let mut s = format!("{} {} {}", self.timestamp, self.op.letter(self.replica), self.filename);
        if !self.extra.is_empty() {
            s.push(' ');
            s.push_str(&self.extra);
        }
        s.push('\n');
        s
    }

    /// Splits on the first two spaces; the rest (if any) is `extra`.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut it = line.splitn(3, ' ');
        let timestamp = it.next()?.parse().ok()?;
        let op_text = it.next()?;
        let mut chars = op_text.chars();
        let (op, replica) = Op::from_letter(chars.next()?)?;
        if chars.next().is_some() {
            return None;
        }
        let rest = it.next()?;
        let (filename, extra) = match rest.split_once(' ') {
            Some((f, e)) => (f, e),
            None => (rest, ""),
        };
        if filename.is_empty() {
            return None;
        }
        Some(Self { timestamp, op, replica, filename: filename.into(), extra: extra.into() })
    }
}

pub fn binlog_name(index: u32) -> String {
    format!("binlog.{index:03}")
}

#[derive(Debug)]
struct Current {
    index: u32,
    /// Bytes in the file being written, all of them committed.
    size: u64,
    file: File,
}

/// The binlog being written. Records go in by batches ([`Binlog::write_batch`]): the batch's
/// lines are written, the caller's sync runs (which may cover more than the binlog: the store
/// path's files), and only then can readers see them. A batch whose write or sync fails is cut
/// back out, so no reader ever ships a change that was refused. One lock covers the whole
/// round: while a batch syncs, the next one gathers in the writer queues, which is what makes
/// concurrent changes share a sync.
#[derive(Debug)]
pub struct Binlog {
    dir: PathBuf,
    /// Held through a batch's write and sync.
    cur: Mutex<Current>,
    /// What readers may consume, (index, size): its own lock, never held across a sync, so a
    /// reader on an async worker never waits for a disk.
    published: Mutex<(u32, u64)>,
    /// Told of each committed batch (the trunk slot index, set once the storage opened it).
    observer: std::sync::OnceLock<std::sync::Arc<dyn Committed>>,
}

/// What follows the binlog: told every batch once it is durable, before readers see it.
pub trait Committed: Send + Sync + std::fmt::Debug {
    fn committed(&self, records: &[Record]);
}

impl Binlog {
    pub fn open(sync_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(sync_dir)?;
        let index = read_index(sync_dir).unwrap_or(0);
        let path = sync_dir.join(binlog_name(index));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut size = f.metadata()?.len();
        // A line cut by a crash or a full disk would glue itself to the next record: drop it.
        if size > 0 {
            let text = std::fs::read(&path)?;
            if text.last() != Some(&b'\n') {
                let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
                tracing::warn!("{}: dropping an unfinished last line ({} bytes)", path.display(), size - keep);
                f.set_len(keep)?;
                size = keep;
            }
        }
        write_index(sync_dir, index)?;
        Ok(Self {
            dir: sync_dir.to_owned(),
            cur: Mutex::new(Current { index, size, file: f }),
            published: Mutex::new((index, size)),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// From now on every committed batch is told to `observer` (the trunk slot index: trunk
    /// names created or deleted).
    pub fn observe(&self, observer: std::sync::Arc<dyn Committed>) {
        let _ = self.observer.set(observer);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record and fdatasyncs it (changes made outside the disk writers: startup
    /// recovery, tests).
    pub fn commit(&self, r: &Record) -> std::io::Result<()> {
        self.write_batch(std::slice::from_ref(r), |f| f.sync_data())
    }

    /// Writes `records`, then runs `sync` (given the binlog file: it decides what must be on
    /// disk before the batch counts, and may do nothing). On any failure the lines are cut
    /// back off and the batch did not happen.
    pub fn write_batch(
        &self,
        records: &[Record],
        sync: impl FnOnce(&File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut text = String::with_capacity(records.len() * 80);
        for r in records {
            let line = r.line();
            if line.len() > MAX_LINE + 1 {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "binlog line too long"));
            }
            text.push_str(&line);
        }
        let mut c = self.cur.locked();
        if c.size + text.len() as u64 > ROTATE_SIZE && c.size > 0 {
            self.rotate(&mut c)?;
        }
        let written = (&c.file).write_all(text.as_bytes()).and_then(|()| sync(&c.file));
        if let Err(e) = written {
            let _ = c.file.set_len(c.size);
            return Err(e);
        }
        c.size += text.len() as u64;
        if let Some(observer) = self.observer.get() {
            observer.committed(records);
        }
        *self.published.locked() = (c.index, c.size);
        Ok(())
    }

    /// Starts the next file; everything in the old one is synced first.
    fn rotate(&self, c: &mut Current) -> std::io::Result<()> {
        c.file.sync_data()?;
        let index = c.index + 1;
        let f = OpenOptions::new().create(true).append(true).open(self.dir.join(binlog_name(index)))?;
        write_index(&self.dir, index)?;
        c.index = index;
        c.size = 0;
        c.file = f;
        Ok(())
    }

    /// Makes everything written durable (periodically in `process_crash` mode, at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        self.cur.locked().file.sync_data()
    }

    /// Index and size of the file being written: how far readers may go.
    pub fn position(&self) -> (u32, u64) {
        *self.published.locked()
    }

    /// Modification time of the file being written: when the last record went in.
    pub fn last_write_time(&self) -> Option<std::time::SystemTime> {
        let c = self.cur.locked();
        c.file.metadata().and_then(|m| m.modified()).ok()
    }
}

/// One line of the binlog, or a line that does not parse (skipped, and said so).
#[derive(Debug)]
pub enum Line {
    Record(Record),
    Invalid(String),
}

/// Reads complete binlog lines from a position, following rotation, with one open handle on
/// the file being read. It lives beside the writer: both agree on names, rotation and lines.
#[derive(Debug)]
pub struct BinlogReader {
    dir: PathBuf,
    index: u32,
    offset: u64,
    file: Option<Source>,
    buf: Vec<u8>,
}

/// A binlog file as written, or compressed by C (`compress_binlog`: `binlog.NNN.gz`); positions
/// are in the uncompressed text either way, so marks carry over.
enum Source {
    Plain(File),
    Gz(Box<flate2::read::GzDecoder<File>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Plain(_) => "Plain",
            Source::Gz(_) => "Gz",
        })
    }
}

impl std::io::Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Gz(g) => g.read(buf),
        }
    }
}

impl Source {
    /// Binlog file `index` positioned at `offset`: the plain file, else its `.gz`.
    fn open(dir: &Path, index: u32, offset: u64) -> std::io::Result<Self> {
        use std::io::{Seek, SeekFrom};
        match File::open(dir.join(binlog_name(index))) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(offset))?;
                Ok(Source::Plain(f))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = File::open(dir.join(format!("{}.gz", binlog_name(index))))?;
                let mut g = Box::new(flate2::read::GzDecoder::new(f));
                let skipped = std::io::copy(&mut std::io::Read::take(&mut *g, offset), &mut std::io::sink())?;
                if skipped < offset {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(Source::Gz(g))
            }
            Err(e) => Err(e),
        }
    }
}

impl BinlogReader {
    pub fn at(dir: &Path, index: u32, offset: u64) -> Self {
        BinlogReader { dir: dir.to_owned(), index, offset, file: None, buf: Vec::new() }
    }

    /// The file being read and the position after the last line returned.
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next line, or `None` at the end of what is written. `writing` is the writer's
    /// [`Binlog::position`]: in that file the reader stops at the committed size (a write the
    /// writer is cutting back after a failure is never read), past the end of an older file it
    /// moves on.
    pub fn next(&mut self, writing: (u32, u64)) -> std::io::Result<Option<Line>> {
        let (writing, committed) = writing;
        use std::io::Read;
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                self.offset += line.len() as u64;
                let text = String::from_utf8_lossy(&line).into_owned();
                return Ok(Some(match Record::parse(&text) {
                    Some(r) => Line::Record(r),
                    None => Line::Invalid(text),
                }));
            }
            if self.file.is_none() {
                match Source::open(&self.dir, self.index, self.offset + self.buf.len() as u64) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.index < writing => {
                        self.next_file();
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            let f = self.file.as_mut().expect("opened above");
            let read_to = self.offset + self.buf.len() as u64;
            let room = if self.index == writing { committed.saturating_sub(read_to) } else { u64::MAX };
            let mut chunk = vec![0u8; (64 << 10).min(room) as usize];
            let n = if chunk.is_empty() { 0 } else { f.read(&mut chunk)? };
            if n > 0 {
                self.buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            if self.index < writing {
                self.next_file();
                continue;
            }
            return Ok(None);
        }
    }

    /// Whether what is left to read is a short tail of the file being written, already open:
    /// lines just committed, in the page cache, cheaper to read than to hand to another thread.
    pub fn near_end(&self, writing: (u32, u64)) -> bool {
        self.file.is_some() && self.index == writing.0 && writing.1.saturating_sub(self.offset) <= 64 << 10
    }

    /// Up to `max` lines, each with the position after it (what a mark saved there says).
    pub fn next_batch(&mut self, writing: (u32, u64), max: usize) -> std::io::Result<Vec<(Line, (u32, u64))>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next(writing)? {
                Some(line) => out.push((line, (self.index, self.offset))),
                None => break,
            }
        }
        Ok(out)
    }

    fn next_file(&mut self) {
        self.index += 1;
        self.offset = 0;
        self.file = None;
        self.buf.clear();
    }
}

/// `compress_binlog`, as C does it: every binlog file before the one being written that is not
/// compressed yet becomes `binlog.NNN.gz` (written beside it, synced, renamed), then the plain
/// file is removed. Readers take either form with the same positions; a sender that has the
/// plain file open reads on from it. Returns how many were compressed.
pub fn compress_old(dir: &Path, writing: u32) -> std::io::Result<usize> {
    use std::io::Write;
    let mut done = 0;
    for index in 0..writing {
        let plain = dir.join(binlog_name(index));
        let gz = dir.join(format!("{}.gz", binlog_name(index)));
        if !plain.exists() || gz.exists() {
            continue;
        }
        let mut temp = crate::durable::TempFile::create_in(dir, &format!("{}.gz", binlog_name(index)))?;
        {
            let mut enc = flate2::write::GzEncoder::new(temp.file(), flate2::Compression::default());
            std::io::copy(&mut File::open(&plain)?, &mut enc)?;
            enc.finish()?.flush()?;
        }
        temp.replace(&gz)?;
        std::fs::remove_file(&plain)?;
        crate::durable::sync_dir(dir)?;
        done += 1;
    }
    Ok(done)
}

fn read_index(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("binlog_index.dat")).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("current_write=").and_then(|v| v.trim().parse().ok()))
}

fn write_index(dir: &Path, index: u32) -> std::io::Result<()> {
    crate::durable::write_atomic(
        dir,
        "binlog_index.dat",
        format!("current_write={index}\ncurrent_compress=0\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            "1700000000 C M00/00/0A/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg\n",
            "1700000100 A M00/00/0B/wKgBCmVT8WSEEjRWAAAAAAAAAAA123.log 1024 512\n",
            "1700000300 L M00/00/0A/a_150x150.jpg M00/00/0C/b.jpg\n",
            "1700000400 d M00/00/0A/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg-m\n",
        ] {
            let r = Record::parse(line).unwrap();
            assert_eq!(r.line(), line);
        }
        let r = Record::parse("1700000100 a M00/x 1024 512\n").unwrap();
        assert_eq!((r.op, r.replica, r.extra.as_str()), (Op::Append, true, "1024 512"));
        for bad in ["", "x C M00/a", "1 CC M00/a", "1 Z M00/a", "1 C", "1 C "] {
            assert!(Record::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn commit_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = Binlog::open(dir.path()).unwrap();
        let r = Record {
            timestamp: 5,
            op: Op::Create,
            replica: false,
            filename: "M00/00/00/x".into(),
            extra: String::new(),
        };
        b.commit(&r).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("binlog.000")).unwrap(), "5 C M00/00/00/x\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("binlog_index.dat")).unwrap(),
            "current_write=0\ncurrent_compress=0\n"
        );
        drop(b);
        let b = Binlog::open(dir.path()).unwrap();
        assert_eq!(b.position(), (0, 16));
    }

    #[test]
    fn a_batch_whose_sync_fails_is_cut_back_out() {
        let dir = tempfile::tempdir().unwrap();
        let b = Binlog::open(dir.path()).unwrap();
        let r = |name: &str| Record {
            timestamp: 5,
            op: Op::Create,
            replica: false,
            filename: name.into(),
            extra: String::new(),
        };
        b.write_batch(&[r("M00/00/00/a")], |_| Ok(())).unwrap();
        let failed = b.write_batch(&[r("M00/00/00/b"), r("M00/00/00/c")], |_| Err(std::io::Error::other("EIO")));
        assert!(failed.is_err());
        assert_eq!(b.position(), (0, 16), "readers never see the refused batch");
        b.write_batch(&[r("M00/00/00/d")], |_| Ok(())).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("binlog.000")).unwrap(),
            "5 C M00/00/00/a\n5 C M00/00/00/d\n"
        );
    }

    #[test]
    fn concurrent_commits_all_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(Binlog::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let r = Record {
                            timestamp: 1_700_000_000 + i,
                            op: Op::Create,
                            replica: false,
                            filename: format!("M00/00/00/t{t}-{i}"),
                            extra: String::new(),
                        };
                        b.commit(&r).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("binlog.000")).unwrap();
        assert_eq!(text.lines().count(), 400);
        assert!(text.lines().all(|l| Record::parse(l).is_some()), "no line torn or glued");
    }

    #[test]
    fn an_unfinished_last_line_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("binlog.000"), "5 C M00/00/00/x\n6 C M00/00/0").unwrap();
        let b = Binlog::open(dir.path()).unwrap();
        assert_eq!(b.position(), (0, 16));
        assert_eq!(std::fs::read_to_string(dir.path().join("binlog.000")).unwrap(), "5 C M00/00/00/x\n");
    }

    #[test]
    fn cs_compressed_binlogs_are_read_with_the_same_positions() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let text = "1795800000 C M00/00/00/a.txt\n1795800001 c M00/00/00/b.txt\n1795800002 D M00/00/00/a.txt\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        std::fs::write(dir.path().join("binlog.000.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("binlog.001"), "1795800003 C M00/00/00/c.txt\n").unwrap();
        // From a mark in the middle of the compressed file, then on into the next one.
        let first = "1795800000 C M00/00/00/a.txt\n".len() as u64;
        let mut r = BinlogReader::at(dir.path(), 0, first);
        let names: Vec<String> = std::iter::from_fn(|| match r.next((1, 29)).unwrap()? {
            Line::Record(rec) => Some(rec.filename),
            Line::Invalid(t) => panic!("{t}"),
        })
        .collect();
        assert_eq!(names, ["M00/00/00/b.txt", "M00/00/00/a.txt", "M00/00/00/c.txt"]);
        assert_eq!((r.index(), r.offset()), (1, 29));
    }

    #[test]
    fn old_binlogs_are_compressed_and_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("binlog.000"), "1795800000 C M00/00/00/a.txt\n").unwrap();
        std::fs::write(dir.path().join("binlog.001"), "1795800001 C M00/00/00/b.txt\n").unwrap();
        assert_eq!(compress_old(dir.path(), 1).unwrap(), 1, "only the files before the one being written");
        assert!(!dir.path().join("binlog.000").exists() && dir.path().join("binlog.000.gz").exists());
        assert!(dir.path().join("binlog.001").exists());
        assert_eq!(compress_old(dir.path(), 1).unwrap(), 0, "done once");
        let mut r = BinlogReader::at(dir.path(), 0, 0);
        let names: Vec<String> = std::iter::from_fn(|| match r.next((1, 29)).unwrap()? {
            Line::Record(rec) => Some(rec.filename),
            Line::Invalid(t) => panic!("{t}"),
        })
        .collect();
        assert_eq!(names, ["M00/00/00/a.txt", "M00/00/00/b.txt"]);
    }
}
