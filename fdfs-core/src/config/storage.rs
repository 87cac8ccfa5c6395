//! `storage.conf` (PROTOCOL.md §8.3).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::Layout;

use super::{log_level, seconds, store_paths, tracker_servers, ConfigError, Ini, LogLevel, ServerAddr};

/// What an acknowledged change survives (`durability` in storage.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced to the disk before the answer: survives a power cut.
    PowerLoss,
    /// Written (and renamed) before the answer, synced later by the kernel: survives the
    /// daemon's crash, not the machine's. What C FastDFS does with its default settings.
    ProcessCrash,
}

/// `file_signature_method`: how de-duplication tells contents apart (with the size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// C's four 32-bit hash codes (CRC32, ELF, simple, Time33).
    Hash,
    /// MD5 of the content.
    Md5,
}

impl SignatureMethod {
    fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "hash" => Some(Self::Hash),
            "md5" => Some(Self::Md5),
            _ => None,
        }
    }
}

impl Durability {
    fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "power_loss" => Some(Self::PowerLoss),
            "process_crash" => Some(Self::ProcessCrash),
            _ => None,
        }
    }
}

/// Settings of `fdfs_storaged`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// What loading found worth telling the operator (logged once the log is open): keys
    /// accepted without effect, values replaced by defaults.
    pub warnings: Vec<String>,
    /// `disabled` (false): refuse to start.
    pub disabled: bool,
    /// May be empty only with storage IDs (fetched from the tracker).
    pub group_name: String,
    /// `bind_addr` (empty = every address).
    pub bind_addr: String,
    /// `client_bind` (true): outgoing connections use `bind_addr` too.
    pub client_bind: bool,
    /// `port` (23000).
    pub port: u16,
    /// `connect_timeout` (10 s; 0 or less means the default).
    pub connect_timeout: Duration,
    /// `network_timeout` (60 s; 0 or less means the default): the longest wait for one read or write.
    pub network_timeout: Duration,
    /// `metrics_listen` (ours, `ip:port`, empty: off): where Prometheus metrics (`/metrics`)
    /// and a health check (`/healthz`) are served over HTTP.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `http_listen` (ours, `ip:port`, empty: off): where the nginx module on this host asks
    /// for thumbnails not made yet. Keep it on a loopback address: it is for that module only.
    pub http_listen: Option<std::net::SocketAddr>,
    /// The `thumbnail_*` keys of the mod_fastdfs.conf that `thumbnail_config` names (relative
    /// to this file; empty: none made), so the module and this daemon share one list.
    pub thumbnail: super::ThumbnailConfig,
    /// `http_upload_secret` (ours; empty: off): the secret upload grants are signed with
    /// (`fdfs_http_token`), for uploads over HTTP on `http_listen` (`POST /upload`).
    pub http_upload_secret: Option<String>,
    /// `http_upload_max_size` (ours, 1 GB): the largest HTTP upload whatever a grant says.
    pub http_upload_max_size: u64,
    /// `min_body_rate` (ours, bytes per second): after a grace of `network_timeout`, a request
    /// body must keep arriving at this average rate since it began, else the connection is
    /// closed.
    pub min_body_rate: u64,
    /// `heart_beat_interval` (30 s): beats to every tracker; also how long an idle replication sender waits.
    pub heart_beat_interval: Duration,
    /// `stat_report_interval` (300 s): disk usage reports.
    pub stat_report_interval: Duration,
    /// `base_path` (required): `data/` (state, binlog, marks) and `logs/`.
    pub base_path: PathBuf,
    /// `max_connections` (256).
    pub max_connections: usize,
    /// `max_connections_per_ip` (ours): at most this many at once from one address
    /// (default: half of `max_connections`).
    pub max_connections_per_ip: usize,
    /// `buff_size` (64 KiB, at least 8 KiB): the largest request read whole (metadata, delete...).
    pub buff_size: u64,
    /// `work_threads` (4): threads serving connections, each an event loop of its own (`server::threads`).
    pub work_threads: usize,
    /// `disk_rw_separated` (true): accepted, no effect (`unsupported.rs`).
    pub disk_rw_separated: bool,
    /// `disk_reader_threads` (1): accepted, no effect: reads run on the blocking pool (`unsupported.rs`).
    pub disk_reader_threads: usize,
    /// `disk_writer_threads` (1; 0 means 1): writer threads per store path, as C's dio threads;
    /// each commits what queued while it synced as one batch.
    pub disk_writer_threads: usize,
    /// `sync_wait_msec` (100 ms): honoured more strictly: replication senders are woken by each new record.
    pub sync_wait_msec: Duration,
    /// `sync_interval` (0 ms): pause after each replicated record.
    pub sync_interval: Duration,
    /// `sync_start_time` (00:00) .. `sync_end_time` (23:59), local time: when replication
    /// senders send (outside it they wait).
    pub sync_start_time: (u8, u8),
    pub sync_end_time: (u8, u8),
    /// `write_mark_file_freq` (500): rewrite a peer's mark file after this many records.
    pub write_mark_file_freq: u64,
    /// `disk_recovery_threads` (1): accepted, not supported yet (no disk recovery).
    pub disk_recovery_threads: usize,
    /// `store_path0..N`; the order defines `M00`, `M01`, ...
    pub store_paths: Vec<PathBuf>,
    /// `store_pathN_readonly` (6.13+).
    pub store_path_readonly: Vec<bool>,
    /// `subdir_count_per_path` (256, 1..=256): N×N data directories per store path.
    pub subdir_count_per_path: u32,
    /// `tracker_server` (repeatable, at least one).
    pub tracker_servers: Vec<ServerAddr>,
    /// `log_level` (info).
    pub log_level: LogLevel,
    /// The error log's rotation: the `log_file_*` keys, `[error-log]` (or the keys before 6.14).
    pub log_rotation: super::LogRotation,
    /// The access log's rotation: the `log_file_*` keys, `[access-log]` (or the keys before 6.14).
    pub access_log_rotation: super::LogRotation,
    /// `[access-log] time_precision` (ms): the access log's stamps and request times.
    pub access_time_precision: super::TimePrecision,
    /// `run_by_group` (empty): the group the daemon runs as once its port is bound.
    pub run_by_group: String,
    /// `run_by_user` (empty): the user the daemon runs as once its port is bound.
    pub run_by_user: String,
    /// `allow_hosts` (`*`), compiled at load.
    pub allow_hosts: super::AllowHosts,
    /// 0 round robin, 1 hash.
    pub file_distribute_path_mode: u8,
    /// `file_distribute_rotate_count` (100): files per directory before the next (mode 0).
    pub file_distribute_rotate_count: u64,
    /// `fsync_after_written_bytes` (0): while a file is written, fsync it after every this
    /// many bytes (C's meaning; 0 = never during the write). Decides durability only with
    /// `durability = process_crash`; with the default every change is synced before its answer.
    pub fsync_after_written_bytes: u64,
    /// `durability` (ours, `power_loss`): what an acknowledged change survives. `power_loss`:
    /// files, directory entries and binlog records are synced before the answer (concurrent
    /// changes share one sync). `process_crash`: C FastDFS's behaviour, written and renamed
    /// before the answer but synced only by `fsync_after_written_bytes` and the kernel.
    pub durability: Durability,
    /// `sync_log_buff_interval` (1 s): honoured more strictly: records are synced before the answer.
    pub sync_log_buff_interval: Duration,
    /// `sync_binlog_buff_interval` (60 s): honoured more strictly: records are synced before the answer.
    pub sync_binlog_buff_interval: Duration,
    /// `sync_stat_file_interval` (60 s): how often `storage_stat.dat` is written.
    pub sync_stat_file_interval: Duration,
    /// `upload_priority` (10): lower is preferred with the tracker's `store_server = 2`.
    pub upload_priority: i64,
    /// `if_alias_prefix` (empty): accepted, no effect.
    pub if_alias_prefix: String,
    /// `retention_*` (ours): files deleted by rule (see [`Retention`]).
    pub retention: Retention,
    /// `check_file_duplicate` (false): an upload whose content this store path holds already
    /// becomes a link to it (built in: no FastDHT).
    pub check_file_duplicate: bool,
    /// `file_signature_method` (hash): how contents are compared, with their size.
    pub file_signature_method: SignatureMethod,
    /// `key_namespace`: FastDHT's; accepted, unused (the index is local).
    pub key_namespace: String,
    /// `keep_alive` (false): FastDHT's; accepted, unused.
    pub keep_alive: bool,
    /// `use_access_log` (false; or `enabled` in 6.13's `[access-log]`): one line per client
    /// request in `logs/storage_access.log`, as C writes it.
    pub use_access_log: bool,
    /// `file_sync_skip_invalid_record` (false): a malformed binlog line stops replication to a
    /// member where it is (logged), as C; true: it is skipped.
    pub file_sync_skip_invalid_record: bool,
    /// `use_connection_pool` (false): accepted, no effect (replication connections stay open).
    pub use_connection_pool: bool,
    /// `connection_pool_max_idle_time` (3600 s): as above.
    pub connection_pool_max_idle_time: Duration,
    /// `compress_binlog` (false): every day at `compress_binlog_time` (01:30, local time) the
    /// binlog files before the one being written become `binlog.NNN.gz`. C's compressed
    /// binlogs are read either way.
    pub compress_binlog: bool,
    pub compress_binlog_time: (u8, u8),
    /// `check_store_path_mark` (true): a store path carrying another storage's mark
    /// (`data/.fastdfs_vars`) stops the start.
    pub check_store_path_mark: bool,
    /// Explicit storage ID (6.11+).
    pub server_id: String,
    /// `tracker_protocol_version` (ours): the generation to speak to trackers; `None`
    /// (`auto`, the default) detects each tracker's from its answers.
    pub tracker_protocol_version: Option<Layout>,
    /// `http.domain_name` (empty): reported in classic JOINs.
    pub http_domain_name: String,
    /// `http.server_port` (8888): reported in classic JOINs and listings.
    pub http_server_port: u16,
}

impl StorageConfig {
    /// Blocking-pool threads each runtime may start (file reads and other calls that block):
    /// a few per disk thread C would run.
    pub fn blocking_threads(&self) -> usize {
        (self.disk_writer_threads + self.disk_reader_threads).max(2) * self.store_paths.len() * 8
    }

    /// The local address outgoing connections are made from (`client_bind` with a `bind_addr`,
    /// as C binds them): peers and trackers know this storage by it.
    pub fn client_bind_ip(&self) -> Option<std::net::IpAddr> {
        if self.client_bind && !self.bind_addr.is_empty() {
            self.bind_addr.parse().ok()
        } else {
            None
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_ini(&Ini::load(path)?)
    }

    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let k = ini.global();
        let base_path = PathBuf::from(&k.required("base_path")?.value);
        let count = k.int_in("store_path_count", 1, 1..=256)? as usize;
        let store_paths = store_paths(&k, count, Some(&base_path))?;
        let store_path_readonly =
            (0..count).map(|i| k.bool(&format!("store_path{i}_readonly"), false)).collect::<Result<_, _>>()?;
        let access_log = ini.has_section("access-log") && ini.section(Some("access-log")).bool("enabled", false)?;
        let max_connections = super::max_connections(&k)?;
        let config = Self {
            warnings: Vec::new(),
            disabled: k.bool("disabled", false)?,
            group_name: k.string("group_name", ""),
            bind_addr: k.string("bind_addr", ""),
            client_bind: k.bool("client_bind", true)?,
            port: k.int_in("port", 23000, 0..=65535)? as u16,
            connect_timeout: super::timeout(&k, "connect_timeout", 10)?,
            network_timeout: super::timeout(&k, "network_timeout", 60)?,
            min_body_rate: k.size("min_body_rate", 16 << 10)?.max(1),
            metrics_listen: k.parsed("metrics_listen", None, |v| v.parse().ok().map(Some), "an ip:port")?,
            http_listen: k.parsed("http_listen", None, |v| v.parse().ok().map(Some), "an ip:port")?,
            thumbnail: thumbnail_config(ini)?,
            http_upload_secret: k.opt_string("http_upload_secret"),
            http_upload_max_size: k.size("http_upload_max_size", 1 << 30)?,
            heart_beat_interval: seconds(&k, "heart_beat_interval", 30)?,
            stat_report_interval: seconds(&k, "stat_report_interval", 300)?,
            base_path,
            max_connections,
            max_connections_per_ip: super::per_ip_limit(&k, max_connections)?,
            buff_size: k.size("buff_size", 64 << 10)?.max(8 << 10),
            work_threads: k.int_in("work_threads", 4, 1..=1024)? as usize,
            disk_rw_separated: k.bool("disk_rw_separated", true)?,
            disk_reader_threads: k.int_in("disk_reader_threads", 1, 0..=256)? as usize,
            disk_writer_threads: k.int_in("disk_writer_threads", 1, 0..=256)? as usize,
            sync_wait_msec: Duration::from_millis(k.int_in("sync_wait_msec", 100, 0..=3_600_000)? as u64),
            sync_interval: Duration::from_millis(k.int_in("sync_interval", 0, 0..=3_600_000)? as u64),
            sync_start_time: k.time_of_day("sync_start_time", (0, 0))?,
            sync_end_time: k.time_of_day("sync_end_time", (23, 59))?,
            write_mark_file_freq: k.int_in("write_mark_file_freq", 500, 1..=i64::MAX)? as u64,
            disk_recovery_threads: k.int_in("disk_recovery_threads", 1, 1..=256)? as usize,
            store_paths,
            store_path_readonly,
            subdir_count_per_path: k.int_in("subdir_count_per_path", 256, 1..=256)? as u32,
            tracker_servers: tracker_servers(&k)?,
            log_level: log_level(&k)?,
            log_rotation: super::log_rotation(ini, super::LogKind::Error)?,
            access_log_rotation: super::log_rotation(ini, super::LogKind::Access)?,
            access_time_precision: super::time_precision(&ini.section(Some("access-log")))?,
            run_by_group: k.string("run_by_group", ""),
            run_by_user: k.string("run_by_user", ""),
            allow_hosts: super::allow_hosts(&k)?,
            file_distribute_path_mode: k.int_in("file_distribute_path_mode", 0, 0..=1)? as u8,
            file_distribute_rotate_count: k.int_in("file_distribute_rotate_count", 100, 1..=i64::MAX)? as u64,
            fsync_after_written_bytes: k.size("fsync_after_written_bytes", 0)?,
            durability: k.parsed(
                "durability",
                Durability::PowerLoss,
                Durability::parse,
                "power_loss or process_crash",
            )?,
            sync_log_buff_interval: seconds(&k, "sync_log_buff_interval", 1)?,
            sync_binlog_buff_interval: seconds(&k, "sync_binlog_buff_interval", 60)?,
            sync_stat_file_interval: seconds(&k, "sync_stat_file_interval", 60)?,
            upload_priority: k.int("upload_priority", 10)?,
            if_alias_prefix: k.string("if_alias_prefix", ""),
            retention: Retention::from_keys(&k)?,
            check_file_duplicate: k.bool("check_file_duplicate", false)?,
            file_signature_method: k.parsed(
                "file_signature_method",
                SignatureMethod::Hash,
                SignatureMethod::parse,
                "hash or md5",
            )?,
            key_namespace: k.string("key_namespace", ""),
            keep_alive: k.bool("keep_alive", false)?,
            use_access_log: access_log || k.bool("use_access_log", false)?,
            file_sync_skip_invalid_record: k.bool("file_sync_skip_invalid_record", false)?,
            use_connection_pool: k.bool("use_connection_pool", false)?,
            connection_pool_max_idle_time: seconds(&k, "connection_pool_max_idle_time", 3600)?,
            compress_binlog: k.bool("compress_binlog", false)?,
            compress_binlog_time: k.time_of_day("compress_binlog_time", (1, 30))?,
            check_store_path_mark: k.bool("check_store_path_mark", true)?,
            server_id: k.string("server_id", ""),
            tracker_protocol_version: k.parsed(
                "tracker_protocol_version",
                None,
                |v| if v.trim().eq_ignore_ascii_case("auto") { Some(None) } else { v.parse().ok().map(Some) },
                "auto or a FastDFS version: classic, 6.11, 6.12, 6.13, 6.15 or 6.16",
            )?,
            http_domain_name: k.string("http.domain_name", ""),
            http_server_port: k.int_in("http.server_port", 8888, 1..=65535)? as u16,
        };
        if config.thumbnail.enabled && config.http_listen.is_none() {
            k.warn("thumbnail_config", "thumbnails are on there but http_listen is empty: none is made here");
        }
        super::unsupported::check(&k, super::unsupported::STORAGE);
        // Under process_crash it paces the fsyncs of a file being written, as in C; under
        // power_loss every file is synced whole before the answer anyway.
        if config.durability == Durability::PowerLoss && config.fsync_after_written_bytes > 0 {
            k.warn(
                "fsync_after_written_bytes",
                "has no effect with durability = power_loss: every file is fsynced before the upload is answered",
            );
        }
        Ok(Self { warnings: ini.take_warnings(), ..config })
    }
}

/// Retention rules (ours; `storage/retention.rs` applies them): off unless `retention_days` or
/// `retention_metadata_key` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `retention_days` (0: off): files created this many days ago or more are deleted.
    pub days: u32,
    /// `retention_extensions` (empty: all): `retention_days` applies to these only (`tmp, log`).
    pub extensions: Vec<String>,
    /// `retention_metadata_key` (empty: off): a file whose metadata has this key with a whole
    /// number N is deleted N days after its creation (e.g. `expire_days` set at upload).
    pub metadata_key: Option<String>,
    /// `retention_interval` (3600 s): between two passes over the binlog.
    pub interval: Duration,
    /// `retention_rate` (100): deletes per second at most.
    pub rate: u32,
    /// `retention_dry_run` (false): log what would be deleted, delete nothing.
    pub dry_run: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: 0,
            extensions: Vec::new(),
            metadata_key: None,
            interval: Duration::from_secs(3600),
            rate: 100,
            dry_run: false,
        }
    }
}

impl Retention {
    fn from_keys(k: &super::Keys<'_>) -> Result<Self, ConfigError> {
        let extensions = k.parsed(
            "retention_extensions",
            Vec::new(),
            |v| {
                let exts: Vec<String> = v
                    .split([',', ' '])
                    .map(|e| e.trim().trim_start_matches('.').to_owned())
                    .filter(|e| !e.is_empty())
                    .collect();
                exts.iter().all(|e| crate::protocol::storage::valid_ext(e)).then_some(exts)
            },
            "file extensions such as tmp, log",
        )?;
        let key = k.parsed(
            "retention_metadata_key",
            None,
            |v| {
                let v = v.trim();
                (v.len() <= crate::protocol::storage::META_NAME_MAX && !v.bytes().any(|b| b < 0x20 || b == 0x7f))
                    .then(|| Some(v.to_owned()))
            },
            "a metadata name of at most 64 bytes",
        )?;
        Ok(Self {
            days: k.int_in("retention_days", 0, 0..=36_500)? as u32,
            extensions,
            metadata_key: key.filter(|k| !k.is_empty()),
            interval: Duration::from_secs(k.int_in("retention_interval", 3600, 1..=30 * 86_400)? as u64),
            rate: k.int_in("retention_rate", 100, 1..=1_000_000)? as u32,
            dry_run: k.bool("retention_dry_run", false)?,
        })
    }

    pub fn enabled(&self) -> bool {
        self.days > 0 || self.metadata_key.is_some()
    }

    /// The rules in words, for the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.days > 0 {
            let which =
                if self.extensions.is_empty() { "files".to_owned() } else { self.extensions.join(", ") + " files" };
            parts.push(format!("{which} older than {} day(s)", self.days));
        }
        if let Some(key) = &self.metadata_key {
            parts.push(format!("files whose metadata {key} = N days has passed"));
        }
        format!(
            "{} deleted every {}s, at most {}/s{}",
            parts.join(" and "),
            self.interval.as_secs(),
            self.rate,
            if self.dry_run { " (dry run: nothing is deleted)" } else { "" }
        )
    }
}

/// The thumbnail settings of the mod_fastdfs.conf that `thumbnail_config` names.
fn thumbnail_config(ini: &Ini) -> Result<super::ThumbnailConfig, ConfigError> {
    let k = ini.global();
    let Some(name) = k.opt_string("thumbnail_config") else { return Ok(Default::default()) };
    let path = ini.path.parent().unwrap_or(Path::new(".")).join(name);
    let module = Ini::load(&path)?;
    super::ThumbnailConfig::from_keys(&module.global())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> StorageConfig {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("base_path = {}\ntracker_server = 10.0.0.1:22122\n{text}", dir.path().display());
        StorageConfig::from_ini(&Ini::parse(&text, Path::new("storage.conf")).unwrap()).unwrap()
    }

    #[test]
    fn retention_keys_are_read_and_checked_at_load() {
        assert!(!load("").retention.enabled(), "off by default");
        let r = load(
            "retention_days = 30\nretention_extensions = .tmp, log\nretention_metadata_key = expire_days\n\
             retention_interval = 60\nretention_rate = 5\nretention_dry_run = true\n",
        )
        .retention;
        assert_eq!(
            (r.days, r.extensions.clone(), r.metadata_key.as_deref()),
            (30, vec!["tmp".into(), "log".into()], Some("expire_days"))
        );
        assert_eq!((r.interval, r.rate, r.dry_run), (Duration::from_secs(60), 5, true));
        assert!(r.describe().contains("tmp, log files older than 30 day(s)"), "{}", r.describe());
        let refused = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let text = format!("base_path = {}\ntracker_server = 10.0.0.1:22122\n{text}", dir.path().display());
            StorageConfig::from_ini(&Ini::parse(&text, Path::new("storage.conf")).unwrap()).is_err()
        };
        assert!(refused("retention_extensions = a/b\n"));
        assert!(refused("retention_days = -1\n"));
        assert!(refused("retention_rate = 0\n"));
        assert!(refused(&format!("retention_metadata_key = {}\n", "k".repeat(65))));
    }

    /// `fsync_after_written_bytes` works under process_crash (C's guarantee) and is said to do
    /// nothing under power_loss, where whole files are synced anyway.
    #[test]
    fn fsync_after_written_bytes_is_warned_about_only_where_it_does_nothing() {
        let crash = load("durability = process_crash\nfsync_after_written_bytes = 1MB\n");
        assert_eq!(crash.fsync_after_written_bytes, 1 << 20);
        assert!(!crash.warnings.iter().any(|w| w.contains("fsync_after_written_bytes")), "{:?}", crash.warnings);
        let power = load("durability = power_loss\nfsync_after_written_bytes = 1MB\n");
        assert!(power.warnings.iter().any(|w| w.contains("fsync_after_written_bytes")), "{:?}", power.warnings);
    }
}
