//! Where a destination is in our binlog: its mark file (`<peer>.mark`, as C names and writes
//! it), a new one placed past the records another member copies.

use std::path::Path;

use crate::config::Ini;
use crate::protocol::report::Brief;
use crate::storage::binlog::{BinlogReader, Line};

use super::SyncError;

/// Where a destination is in our binlog (`<peer>.mark`, 7 keys as FastDFS writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub binlog_index: u32,
    pub binlog_offset: u64,
    pub need_sync_old: bool,
    pub sync_old_done: bool,
    pub until_timestamp: i64,
    pub scan_row_count: u64,
    pub sync_row_count: u64,
}

impl Mark {
    pub fn load(path: &Path) -> Option<Self> {
        let ini = Ini::load_state(path).ok()?;
        let k = ini.global();
        let keys = [
            "binlog_index",
            "binlog_offset",
            "need_sync_old",
            "sync_old_done",
            "until_timestamp",
            "scan_row_count",
            "sync_row_count",
        ];
        if keys.iter().any(|key| k.entry(key).is_none()) {
            return None;
        }
        Some(Self {
            binlog_index: k.int("binlog_index", 0).ok()?.max(0) as u32,
            binlog_offset: k.int("binlog_offset", 0).ok()?.max(0) as u64,
            need_sync_old: k.bool("need_sync_old", false).ok()?,
            sync_old_done: k.bool("sync_old_done", false).ok()?,
            until_timestamp: k.int("until_timestamp", 0).ok()?,
            scan_row_count: k.int("scan_row_count", 0).ok()?.max(0) as u64,
            sync_row_count: k.int("sync_row_count", 0).ok()?.max(0) as u64,
        })
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "binlog_index={}\nbinlog_offset={}\nneed_sync_old={}\nsync_old_done={}\nuntil_timestamp={}\nscan_row_count={}\nsync_row_count={}\n",
            self.binlog_index,
            self.binlog_offset,
            self.need_sync_old as u8,
            self.sync_old_done as u8,
            self.until_timestamp,
            self.scan_row_count,
            self.sync_row_count
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::durable::write_atomic(dir, &path.file_name().unwrap_or_default().to_string_lossy(), text.as_bytes())
    }
}

/// A destination's mark file, as C names it: after the peer's ID in storage-ID mode (so a
/// position survives its address changing), else `ip_port`.
pub(super) fn mark_file_name(peer: &Brief, use_storage_id: bool) -> String {
    if use_storage_id {
        format!("{}.mark", peer.id)
    } else {
        format!("{}_{}.mark", peer.ip, peer.port)
    }
}

/// Moves a new mark past the records older than `until` (another member copies those).
pub(super) fn skip_to(dir: &Path, writing: (u32, u64), mark: &mut Mark, until: i64) -> std::io::Result<()> {
    let mut reader = BinlogReader::at(dir, 0, 0);
    loop {
        match reader.next(writing)? {
            Some(Line::Record(r)) if r.timestamp >= until => {
                // Valid lines re-format to exactly what was read.
                (mark.binlog_index, mark.binlog_offset) = (reader.index(), reader.offset() - r.line().len() as u64);
                return Ok(());
            }
            Some(_) => {}
            None => {
                (mark.binlog_index, mark.binlog_offset) = (reader.index(), reader.offset());
                return Ok(());
            }
        }
    }
}

/// Writes a mark file off the async workers (it is fsynced).
pub(super) async fn save_mark(mark: &Mark, path: &Path) -> Result<(), SyncError> {
    let (mark, path) = (mark.clone(), path.to_owned());
    match tokio::task::spawn_blocking(move || mark.save(&path)).await {
        Ok(r) => r.map_err(SyncError::Mark),
        Err(e) => Err(SyncError::Mark(std::io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::binlog::{BinlogReader, Line};

    #[test]
    fn mark_files_are_named_as_c_names_them() {
        let peer = Brief { id: "100002".into(), ip: "127.0.0.27".into(), port: 23000, ..Default::default() };
        assert_eq!(mark_file_name(&peer, true), "100002.mark", "the C 6.16.1 storage-ID fixture's name");
        let peer = Brief { id: "127.0.0.34".into(), ip: "127.0.0.34".into(), port: 23000, ..Default::default() };
        assert_eq!(mark_file_name(&peer, false), "127.0.0.34_23000.mark", "the trunk fixture's name");
    }

    #[test]
    fn mark_files_need_all_seven_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("127.0.0.3_23000.mark");
        let m =
            Mark { binlog_index: 1, binlog_offset: 99, need_sync_old: true, until_timestamp: 5, ..Default::default() };
        m.save(&p).unwrap();
        assert_eq!(Mark::load(&p), Some(m));
        std::fs::write(&p, "binlog_index=1\nbinlog_offset=2\n").unwrap();
        assert_eq!(Mark::load(&p), None);
    }

    #[test]
    fn reader_follows_lines_and_rotation_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("binlog.000"), "1 C M00/00/00/a\ngarbage\n2 D M00/00/00/a\n").unwrap();
        std::fs::write(dir.path().join("binlog.001"), "3 C M00/00/00/b\n4 C M00/00/00/partial").unwrap();
        let mut r = BinlogReader::at(dir.path(), 0, 0);
        let mut seen = Vec::new();
        while let Some(l) = r.next((1, u64::MAX)).unwrap() {
            seen.push(match l {
                Line::Record(rec) => rec.timestamp.to_string(),
                Line::Invalid(_) => "bad".into(),
            });
        }
        assert_eq!(seen, ["1", "bad", "2", "3"], "the unfinished line is not read");
        assert_eq!((r.index(), r.offset()), (1, 16));
        // In the file being written, nothing past the committed size is read.
        let mut r = BinlogReader::at(dir.path(), 1, 0);
        assert!(r.next((1, 10)).unwrap().is_none(), "a line past the committed size");
        assert!(matches!(r.next((1, 16)).unwrap(), Some(Line::Record(_))));
        let mut m = Mark::default();
        skip_to(dir.path(), (1, u64::MAX), &mut m, 3).unwrap();
        assert_eq!((m.binlog_index, m.binlog_offset), (1, 0));
    }
}
