//! The crash window between publishing a change and recording it: a file renamed into place
//! just before a crash (kill -9, power loss) but never written to the binlog would never reach
//! the replicas. At start, every file whose directory entry changed around or after the
//! binlog's last write and that the binlog's tail does not name is recorded now, so replicas
//! converge. A record too many is harmless (the receiver answers EEXIST); a record too few
//! loses a copy, so the check errs on the side of recording.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::binlog::{binlog_name, Binlog, Op, Record};
use super::paths::StorePaths;

/// Changes made this long before the binlog's last write may still lack their record
/// (uploads that were renamed while others were being recorded).
const WINDOW: Duration = Duration::from_secs(10);
/// How much of the binlog's end is read for the names recorded in that window.
const TAIL: u64 = 16 << 20;

/// Names recorded in the last `TAIL` bytes of the binlog (the current file, and the previous
/// one when the current is short).
fn recent_names(binlog: &Binlog) -> HashSet<String> {
    let (index, size) = binlog.position();
    let mut names = HashSet::new();
    let mut want = TAIL;
    for i in (index.saturating_sub(1)..=index).rev() {
        let path = binlog.dir().join(binlog_name(i));
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let len = if i == index { size } else { f.metadata().map(|m| m.len()).unwrap_or(0) };
        let start = len.saturating_sub(want);
        let mut text = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.take(len - start).read_to_end(&mut text).is_err() {
            continue;
        }
        for line in String::from_utf8_lossy(&text).lines().skip(usize::from(start > 0)) {
            if let Some(r) = Record::parse(line) {
                names.insert(r.filename);
            }
        }
        want = want.saturating_sub(len);
        if want == 0 {
            break;
        }
    }
    names
}

fn ctime(m: &std::fs::Metadata) -> SystemTime {
    UNIX_EPOCH + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().clamp(0, 999_999_999) as u32)
}

/// Finds files published around or after the binlog's last write that the binlog does not
/// name, and records each (`C` for files, `U` for metadata files). Returns how many.
pub fn record_unlogged(paths: &StorePaths, binlog: &Binlog) -> std::io::Result<usize> {
    if binlog.position().1 == 0 && binlog.position().0 == 0 {
        // Nothing recorded yet: a store taken over from elsewhere, not a crash window.
        return Ok(0);
    }
    let Some(last) = binlog.last_write_time() else { return Ok(0) };
    let since = last.checked_sub(WINDOW).unwrap_or(UNIX_EPOCH);
    let recorded = recent_names(binlog);
    let mut count = 0;
    for index in 0..paths.paths.len() {
        for (prefix, dir) in paths.subdirs_of(index) {
            // A rename into a directory changes its mtime: untouched directories are skipped.
            match std::fs::metadata(&dir).and_then(|m| m.modified()) {
                Ok(t) if t >= since => {}
                _ => continue,
            }
            count += record_dir(paths, &dir, &prefix, since, &recorded, binlog)?;
        }
    }
    Ok(count)
}

/// Records the files of `dir` (then its links, after the files they name: `L` after `C`).
fn record_dir(
    paths: &StorePaths,
    dir: &Path,
    prefix: &str,
    since: SystemTime,
    recorded: &HashSet<String>,
    binlog: &Binlog,
) -> std::io::Result<usize> {
    let mut count = 0;
    let mut entries: Vec<(std::fs::DirEntry, std::fs::Metadata)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok().map(|m| (e, m)))
        .filter(|(_, m)| (m.is_file() || m.file_type().is_symlink()) && ctime(m) >= since)
        .collect();
    entries.sort_by_key(|(_, m)| m.file_type().is_symlink());
    for (entry, m) in entries {
        let Some(name) = entry.file_name().to_str().map(|n| format!("{prefix}/{n}")) else { continue };
        if recorded.contains(&name) {
            continue;
        }
        // Trunk files (`000001`...) hold files the binlog names by their slots.
        if name.rsplit('/').next().is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        // Only what this storage could have written: anything else dropped into a data
        // directory must not become a binlog line (a space in it would change the record).
        if crate::file_id::RemoteFilename::parse(name.trim_end_matches("-m"), None).is_err() {
            tracing::warn!("{name}: not a FastDFS file name; left alone");
            continue;
        }
        // A link (de-duplicated upload, slave as link) names its target, as `L` records do.
        let target = m.file_type().is_symlink().then(|| super::paths::link_target(&entry.path())).flatten();
        let (op, extra) = match target {
            Some(t) => match paths.remote_name_of(&t) {
                Some(target) => (Op::Link, target),
                None => continue,
            },
            None if name.ends_with("-m") => (Op::Update, String::new()),
            None => (Op::Create, String::new()),
        };
        let timestamp = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        tracing::warn!("{name}: published before a crash but not in the binlog; recording it now");
        binlog.commit(&Record { timestamp: timestamp as i64, op, replica: false, filename: name, extra })?;
        count += 1;
    }
    Ok(count)
}
