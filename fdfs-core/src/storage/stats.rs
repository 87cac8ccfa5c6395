//! The storage's counters (reported in BEAT, persisted in `storage_stat.dat`) and its identity
//! file `.data_init_flag` (PROTOCOL.md §6.6).

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::Ini;
use crate::protocol::stat::{Counters, StatBuff};

macro_rules! atomic_counters {
    ($($name:ident,)*) => {
        /// Lock-free counters, one atomic each, so the hot path never takes a lock to count.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: AtomicI64,)*
            /// Kept by the accept loop.
            pub conns: std::sync::Arc<crate::server::ConnCounts>,
        }

        impl Stats {
            pub fn snapshot(&self, conn_alloc: i32) -> StatBuff {
                let (conn_current, conn_max) = self.conns.get();
                StatBuff {
                    conn_alloc,
                    conn_current,
                    conn_max,
                    counters: Counters { $($name: self.$name.load(Ordering::Relaxed),)* },
                }
            }

            pub fn restore(&self, c: &Counters) {
                $(self.$name.store(c.$name, Ordering::Relaxed);)*
            }
        }
    };
}

crate::for_each_stat_counter!(atomic_counters);

/// Counts one attempt and, when it succeeded, one success (and bytes).
pub fn count(total: &AtomicI64, success: &AtomicI64, ok: bool) {
    total.fetch_add(1, Ordering::Relaxed);
    if ok {
        success.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn add(a: &AtomicI64, n: u64) {
    a.fetch_add(n as i64, Ordering::Relaxed);
}

impl Stats {
    /// Counts one served command: the only place request counters change. `bytes` is the
    /// content the command carried (uploads, appends, modifies, replicated files) or sent
    /// (downloads).
    pub fn record(&self, cmd: crate::protocol::Command, ok: bool, bytes: u64) {
        use crate::protocol::Command as C;
        let (count_pair, byte_pair) = match cmd {
            C::UploadFile | C::UploadAppenderFile | C::UploadSlaveFile => (
                Some((&self.total_upload_count, &self.success_upload_count)),
                Some((&self.total_upload_bytes, &self.success_upload_bytes)),
            ),
            C::AppendFile => (
                Some((&self.total_append_count, &self.success_append_count)),
                Some((&self.total_append_bytes, &self.success_append_bytes)),
            ),
            C::ModifyFile => (
                Some((&self.total_modify_count, &self.success_modify_count)),
                Some((&self.total_modify_bytes, &self.success_modify_bytes)),
            ),
            C::DownloadFile => (
                Some((&self.total_download_count, &self.success_download_count)),
                Some((&self.total_download_bytes, &self.success_download_bytes)),
            ),
            C::DeleteFile => (Some((&self.total_delete_count, &self.success_delete_count)), None),
            C::SetMetadata => (Some((&self.total_set_meta_count, &self.success_set_meta_count)), None),
            C::GetMetadata => (Some((&self.total_get_meta_count, &self.success_get_meta_count)), None),
            C::TruncateFile => (Some((&self.total_truncate_count, &self.success_truncate_count)), None),
            C::SyncCreateFile | C::SyncUpdateFile | C::SyncAppendFile | C::SyncModifyFile => {
                (None, Some((&self.total_sync_in_bytes, &self.success_sync_in_bytes)))
            }
            _ => (None, None),
        };
        if let Some((total, success)) = count_pair {
            count(total, success, ok);
        }
        if let Some((total, success)) = byte_pair {
            add(total, bytes);
            if ok {
                add(success, bytes);
            }
        }
    }

    /// `storage_stat.dat`: every counter plus the directory cursor.
    pub fn save(&self, data_dir: &Path, cursor: super::paths::DirCursor) -> std::io::Result<()> {
        let s = self.snapshot(0);
        let mut text = String::new();
        for (k, v) in Counters::NAMES.iter().zip(s.counters.values()) {
            text.push_str(&format!("{k}={v}\n"));
        }
        text.push_str(&format!(
            "dist_path_index_high={}\ndist_path_index_low={}\ndist_write_file_count={}\n",
            cursor.high, cursor.low, cursor.count
        ));
        crate::durable::write_atomic(data_dir, "storage_stat.dat", text.as_bytes())
    }

    pub fn load(&self, data_dir: &Path) -> super::paths::DirCursor {
        let Ok(ini) = Ini::load_state(&data_dir.join("storage_stat.dat")) else { return Default::default() };
        let k = ini.global();
        let mut c = Counters::default();
        for name in Counters::NAMES {
            c.set(name, k.int(name, 0).unwrap_or(0));
        }
        self.restore(&c);
        super::paths::DirCursor {
            high: k.int("dist_path_index_high", 0).unwrap_or(0).clamp(0, 255) as u32,
            low: k.int("dist_path_index_low", 0).unwrap_or(0).clamp(0, 255) as u32,
            count: k.int("dist_write_file_count", 0).unwrap_or(0).max(0) as u64,
        }
    }
}

/// `.data_init_flag`: who this storage is and how far its first sync got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitFlag {
    pub storage_join_time: i64,
    /// The first-join sync-source request was made (not: the copy is complete).
    pub sync_old_done: bool,
    pub sync_src_server: String,
    pub sync_until_timestamp: i64,
    pub last_ip_addr: String,
    pub last_server_port: u16,
    /// The highest trunk file id this storage created or was told of.
    pub current_trunk_file_id: u32,
    /// The keys we do not use (C's trunk compression state, `store_path_markN`), written back
    /// as read so a C storage started on this base_path again finds them.
    pub other: Vec<(String, String)>,
}

/// The keys [`InitFlag`] reads itself.
const INIT_FLAG_KEYS: &[&str] = &[
    "storage_join_time",
    "sync_old_done",
    "sync_src_server",
    "sync_until_timestamp",
    "last_ip_addr",
    "last_server_port",
    "current_trunk_file_id",
];

impl InitFlag {
    pub const FILE: &'static str = ".data_init_flag";

    /// A key we keep as read (C's trunk compression state and store path marks).
    pub fn other(&self, key: &str) -> Option<&str> {
        self.other.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn set_other(&mut self, key: &str, value: String) {
        match self.other.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.other.push((key.to_owned(), value)),
        }
    }

    pub fn load(data_dir: &Path) -> Option<Self> {
        let ini = Ini::load_state(&data_dir.join(Self::FILE)).ok()?;
        let k = ini.global();
        Some(Self {
            storage_join_time: k.int("storage_join_time", 0).ok()?,
            sync_old_done: k.bool("sync_old_done", false).ok()?,
            sync_src_server: k.string("sync_src_server", ""),
            sync_until_timestamp: k.int("sync_until_timestamp", 0).ok()?,
            last_ip_addr: k.string("last_ip_addr", ""),
            last_server_port: k.int("last_server_port", 0).ok()?.clamp(0, 65535) as u16,
            current_trunk_file_id: k.int("current_trunk_file_id", 0).ok()?.clamp(0, u32::MAX as i64) as u32,
            other: ini
                .entries
                .iter()
                .filter(|e| e.section.is_none() && !INIT_FLAG_KEYS.contains(&e.key.as_str()))
                .filter(|e| crate::protocol::is_safe_token(&e.key) && !e.value.contains('\n'))
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
        })
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let mut text = format!(
            "storage_join_time={}\nsync_old_done={}\nsync_src_server={}\nsync_until_timestamp={}\nlast_ip_addr={}\nlast_server_port={}\ncurrent_trunk_file_id={}\n",
            self.storage_join_time,
            self.sync_old_done as u8,
            self.sync_src_server,
            self.sync_until_timestamp,
            self.last_ip_addr,
            self.last_server_port,
            self.current_trunk_file_id,
        );
        let mut other = self.other.clone();
        for (k, v) in [("trunk_last_compress_time", "0"), ("trunk_binlog_compress_stage", "0")] {
            if !other.iter().any(|(key, _)| key == k) {
                other.push((k.into(), v.into()));
            }
        }
        for (k, v) in &other {
            text.push_str(&format!("{k}={v}\n"));
        }
        crate::durable::write_atomic(data_dir, Self::FILE, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_init_flag_persist() {
        let dir = tempfile::tempdir().unwrap();
        let s = Stats::default();
        count(&s.total_upload_count, &s.success_upload_count, true);
        count(&s.total_upload_count, &s.success_upload_count, false);
        s.save(dir.path(), super::super::paths::DirCursor { high: 1, low: 2, count: 3 }).unwrap();
        let back = Stats::default();
        let cur = back.load(dir.path());
        assert_eq!((cur.high, cur.low, cur.count), (1, 2, 3));
        let snap = back.snapshot(256);
        assert_eq!((snap.counters.total_upload_count, snap.counters.success_upload_count), (2, 1));

        assert_eq!(InitFlag::load(dir.path()), None);
        let f = InitFlag {
            storage_join_time: 5,
            sync_old_done: true,
            sync_src_server: "127.0.0.2".into(),
            ..Default::default()
        };
        f.save(dir.path()).unwrap();
        let mut back = InitFlag::load(dir.path()).unwrap();
        assert_eq!(back.other.len(), 2, "C's trunk compression keys are written");
        back.other.clear();
        assert_eq!(back, f);
        // C's keys we do not use survive a load and save.
        std::fs::write(dir.path().join(InitFlag::FILE), "current_trunk_file_id=2\nstore_path_mark0=MTI3\n").unwrap();
        let c = InitFlag::load(dir.path()).unwrap();
        assert_eq!(c.current_trunk_file_id, 2);
        c.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(InitFlag::FILE)).unwrap();
        assert!(text.contains("store_path_mark0=MTI3\n") && text.contains("current_trunk_file_id=2\n"), "{text}");
    }
}
