//! `tracker.conf` (PROTOCOL.md §8.2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_level, reserved_space, seconds, ConfigError, Ini, LogLevel, ReservedSpace};
use crate::protocol::parameters::Parameters;
use crate::protocol::Layout;

/// `store_lookup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLookup {
    /// 0: the groups in turn.
    RoundRobin,
    /// 1: always `store_group`.
    SpecifiedGroup,
    /// 2: the group with the most free space.
    LoadBalance,
}

/// `store_server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreServer {
    /// 0: the writable storages in turn.
    RoundRobin,
    /// 1: the first by ID (address).
    FirstById,
    /// 2: the lowest `upload_priority`.
    FirstByPriority,
}

/// `store_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorePath {
    /// 0: the paths in turn.
    RoundRobin,
    /// 2: the path with the most free space.
    MostFree,
}

impl StorePath {
    /// The value as tracker.conf and PARAMETER_REQ write it.
    pub fn wire(self) -> u8 {
        match self {
            StorePath::RoundRobin => 0,
            StorePath::MostFree => 2,
        }
    }
}

/// `download_server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadServer {
    /// 0: any storage that has the file, in turn.
    RoundRobin,
    /// 1: the storage that received the upload.
    SourceFirst,
}

/// `response_ip_addr_size` (C 6.15+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseIpSize {
    /// 16 bytes, unless `storage_ids.conf` (with `use_storage_id`) holds an IPv6 address.
    Auto,
    /// 16 bytes. (C 6.15/6.16 reads every value but `auto` as 46; this one keeps its name's
    /// meaning, and the tracker warns about the difference at startup.)
    V4,
    /// 46 bytes.
    V6,
}

impl ResponseIpSize {
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "ipv4" | "16" => Some(Self::V4),
            "ipv6" | "46" => Some(Self::V6),
            _ => None,
        }
    }
}

/// Settings of `fdfs_trackerd`. Defaults are those of the C code when a key is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// What loading found worth telling the operator (logged once the log is open): keys
    /// accepted without effect, values replaced by defaults.
    pub warnings: Vec<String>,
    /// `disabled` (false): refuse to start.
    pub disabled: bool,
    /// Empty = all addresses.
    pub bind_addr: String,
    /// `port` (22122).
    pub port: u16,
    /// `connect_timeout` (10 s; 0 or less means the default).
    pub connect_timeout: Duration,
    /// `network_timeout` (60 s; 0 or less means the default).
    pub network_timeout: Duration,
    /// `base_path` (required): `data/` (state files) and `logs/`.
    pub base_path: PathBuf,
    /// `max_connections` (256).
    pub max_connections: usize,
    /// `max_connections_per_ip` (ours): at most this many at once from one address
    /// (default: half of `max_connections`), so one host cannot take the daemon off the air.
    pub max_connections_per_ip: usize,
    /// `max_groups` (ours; C's fixed limit is 512).
    pub max_groups: usize,
    /// `max_storages_per_group` (ours; C's fixed limit is 32).
    pub max_storages_per_group: usize,
    /// `work_threads` (4): threads serving connections, each an event loop of its own (`server::threads`).
    pub work_threads: usize,
    /// `min_buff_size` (= `buff_size`): accepted, no effect.
    pub min_buff_size: u64,
    /// `max_buff_size` (= `buff_size`, 256 KiB): the largest request accepted.
    pub max_buff_size: u64,
    /// `log_level` (info).
    pub log_level: LogLevel,
    /// The error log's rotation: the `log_file_*` keys, `[error-log]` (or the keys before 6.14).
    pub log_rotation: super::LogRotation,
    /// `run_by_group` (empty): the group the daemon runs as once its port is bound.
    pub run_by_group: String,
    /// `run_by_user` (empty): the user the daemon runs as once its port is bound.
    pub run_by_user: String,
    /// `*`, IPs, CIDRs or ranges; repeatable.
    pub allow_hosts: super::AllowHosts,
    /// Which group takes an upload that names none (C default: round robin).
    pub store_lookup: StoreLookup,
    /// `store_group`: required with `store_lookup = 1`.
    pub store_group: String,
    /// Which storage of the group takes it (round robin; first by ID with trunk files).
    pub store_server: StoreServer,
    /// Which store path (round robin).
    pub store_path: StorePath,
    /// Which storage serves a download (round robin among those that have the file).
    pub download_server: DownloadServer,
    /// `reserved_storage_space` (1024 MB, or a percentage): space kept free on every storage.
    pub reserved_storage_space: ReservedSpace,
    /// `check_active_interval` (100 s): an ACTIVE storage silent this long goes OFFLINE.
    pub check_active_interval: Duration,
    /// `storage_ip_changed_auto_adjust` (true): passed to storages.
    pub storage_ip_changed_auto_adjust: bool,
    /// `storage_sync_file_max_delay` (86400 s): after this, every member is assumed to have a file.
    pub storage_sync_file_max_delay: Duration,
    /// `storage_sync_file_max_time` (300 s).
    pub storage_sync_file_max_time: Duration,
    /// `use_trunk_file` (false): small files go into trunk files.
    pub use_trunk_file: bool,
    /// `slot_min_size` (256, at most 64 KiB): the smallest slot.
    pub slot_min_size: u64,
    /// `slot_max_size` (trunk_file_size / 8): larger files are regular files.
    pub slot_max_size: u64,
    /// `trunk_file_size` (64 MiB, at least 4 MiB).
    pub trunk_file_size: u64,
    /// `trunk_alloc_alignment_size` (0: none): slot sizes are rounded up to it.
    pub trunk_alloc_alignment_size: u64,
    /// `trunk_free_space_merge` (false): freed slots join their free neighbours.
    pub trunk_free_space_merge: bool,
    /// `delete_unused_trunk_files` (false): trunk files with no slot in use are removed.
    pub delete_unused_trunk_files: bool,
    /// `trunk_init_check_occupying` and `trunk_init_reload_from_binlog` (false): passed on to
    /// the storages as C's tracker passes them (a C trunk server acts on them; ours says at
    /// startup what it does instead).
    pub trunk_init_check_occupying: bool,
    pub trunk_init_reload_from_binlog: bool,
    /// `trunk_compress_binlog_min_interval` (0: never): the trunk server compresses its trunk
    /// binlog when it takes the role, if this long has passed since the last time.
    pub trunk_compress_binlog_min_interval: Duration,
    /// `trunk_compress_binlog_interval` (0: never): and every this long, from the time base.
    pub trunk_compress_binlog_interval: Duration,
    /// `trunk_compress_binlog_time_base` (03:00).
    pub trunk_compress_binlog_time_base: (u8, u8),
    /// `trunk_binlog_max_backups` (0: none kept): compressed-away binlogs kept as backups.
    pub trunk_binlog_max_backups: u32,
    /// `trunk_create_file_advance` (false): the trunk server creates trunk files ahead of need,
    /// from `trunk_create_file_time_base` every `trunk_create_file_interval`, until the free
    /// trunk space reaches `trunk_create_file_space_threshold`.
    pub trunk_create_file_advance: bool,
    pub trunk_create_file_time_base: (u8, u8),
    pub trunk_create_file_interval: Duration,
    pub trunk_create_file_space_threshold: u64,
    /// `use_storage_id` (false): storages named by the IDs of `storage_ids_filename`.
    pub use_storage_id: bool,
    /// Resolved against the config file's directory.
    pub storage_ids_filename: PathBuf,
    /// `true` when `id_type_in_filename = id`.
    pub id_type_in_filename_is_id: bool,
    /// `trust_storage_server_id` (true): accept the ID a storage sends in JOIN (6.11+).
    pub trust_storage_server_id: bool,
    /// `store_slave_file_use_link` (false): passed to storages, which then store a slave as a
    /// link to a content file of its own.
    pub store_slave_file_use_link: bool,
    /// Width of IPs in answers to clients (6.15+ generations only).
    pub response_ip_addr_size: ResponseIpSize,
    /// `metrics_listen` (ours, `ip:port`, empty: off): Prometheus metrics and `/healthz`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Which FastDFS generation client-facing answers imitate (`client_protocol_version`,
    /// ours): the LIST_GROUPS / LIST_STORAGE record layouts, per-server ports in
    /// QUERY_FETCH_ALL, IP widths before 6.15. Storages are always answered in their own
    /// generation, detected from their JOIN.
    pub client_protocol_version: Layout,
    /// `use_connection_pool` (false): accepted, no effect.
    pub use_connection_pool: bool,
    /// `connection_pool_max_idle_time` (3600 s): accepted, no effect.
    pub connection_pool_max_idle_time: Duration,
    /// `sync_log_buff_interval` (1 s): accepted, no effect (state files are written when changed).
    pub sync_log_buff_interval: Duration,
    /// `http.server_port` (8080): the group's HTTP port in classic listings.
    pub http_server_port: u16,
}

impl TrackerConfig {
    /// What the tracker answers 75 STORAGE_PARAMETER_REQ: C 6.16.1's keys in its order, with
    /// `response_ip_size` the IP width of its client answers (storages size their
    /// QUERY_FILE_INFO answers by it).
    pub fn parameters(&self, response_ip_size: usize) -> Parameters {
        let b = |v: bool| u8::from(v);
        let hm = |(h, m): (u8, u8)| format!("{h:02}:{m:02}");
        let mut p = Parameters::new();
        p.push("use_storage_id", b(self.use_storage_id));
        p.push("id_type_in_filename", if self.id_type_in_filename_is_id { "id" } else { "ip" });
        p.push("trust_storage_server_id", b(self.trust_storage_server_id));
        p.push("response_ip_addr_size", response_ip_size);
        p.push("storage_ip_changed_auto_adjust", b(self.storage_ip_changed_auto_adjust));
        p.push("storage_sync_file_max_delay", self.storage_sync_file_max_delay.as_secs());
        p.push("store_path", self.store_path.wire());
        p.push("reserved_storage_space", self.reserved_storage_space);
        p.push("use_trunk_file", b(self.use_trunk_file));
        p.push("slot_min_size", self.slot_min_size);
        p.push("slot_max_size", self.slot_max_size);
        p.push("trunk_alloc_alignment_size", self.trunk_alloc_alignment_size);
        p.push("trunk_file_size", self.trunk_file_size);
        p.push("trunk_create_file_advance", b(self.trunk_create_file_advance));
        p.push("trunk_create_file_time_base", hm(self.trunk_create_file_time_base));
        p.push("trunk_create_file_interval", self.trunk_create_file_interval.as_secs());
        p.push("trunk_create_file_space_threshold", self.trunk_create_file_space_threshold);
        p.push("trunk_init_check_occupying", b(self.trunk_init_check_occupying));
        p.push("trunk_init_reload_from_binlog", b(self.trunk_init_reload_from_binlog));
        p.push("trunk_free_space_merge", b(self.trunk_free_space_merge));
        p.push("delete_unused_trunk_files", b(self.delete_unused_trunk_files));
        p.push("trunk_compress_binlog_min_interval", self.trunk_compress_binlog_min_interval.as_secs());
        p.push("trunk_compress_binlog_interval", self.trunk_compress_binlog_interval.as_secs());
        p.push("trunk_compress_binlog_time_base", hm(self.trunk_compress_binlog_time_base));
        p.push("trunk_binlog_max_backups", self.trunk_binlog_max_backups);
        p.push("store_slave_file_use_link", b(self.store_slave_file_use_link));
        p
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_ini(&Ini::load(path)?)
    }

    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let k = ini.global();
        let buff = k.size("buff_size", 256 << 10)?;
        let (min_buff, max_buff) = match (k.entry("min_buff_size"), k.entry("max_buff_size")) {
            (Some(_), Some(_)) => (k.size("min_buff_size", buff)?, k.size("max_buff_size", buff)?),
            _ => (buff, buff),
        };
        let trunk_file_size = k.size("trunk_file_size", 64 << 20)?.max(4 << 20);
        let use_trunk_file = k.bool("use_trunk_file", false)?;
        let mut store_server = match k.int_in("store_server", 0, 0..=2)? {
            1 => StoreServer::FirstById,
            2 => StoreServer::FirstByPriority,
            _ => StoreServer::RoundRobin,
        };
        if use_trunk_file && store_server == StoreServer::RoundRobin {
            store_server = StoreServer::FirstById;
        }
        let store_lookup = match k.int_in("store_lookup", 0, 0..=2)? {
            1 => StoreLookup::SpecifiedGroup,
            2 => StoreLookup::LoadBalance,
            _ => StoreLookup::RoundRobin,
        };
        let store_group = k.string("store_group", "");
        if store_lookup == StoreLookup::SpecifiedGroup {
            k.required("store_group")?;
        }
        let dir = ini.path.parent().unwrap_or(Path::new("."));
        let max_connections = super::max_connections(&k)?;
        let config = Self {
            warnings: Vec::new(),
            disabled: k.bool("disabled", false)?,
            bind_addr: k.string("bind_addr", ""),
            port: k.int_in("port", 22122, 0..=65535)? as u16,
            connect_timeout: super::timeout(&k, "connect_timeout", 10)?,
            network_timeout: super::timeout(&k, "network_timeout", 60)?,
            base_path: PathBuf::from(&k.required("base_path")?.value),
            max_connections,
            max_connections_per_ip: super::per_ip_limit(&k, max_connections)?,
            max_groups: k.int_in("max_groups", crate::protocol::MAX_GROUPS as i64, 1..=65_536)? as usize,
            max_storages_per_group: k.int_in(
                "max_storages_per_group",
                crate::protocol::MAX_SERVERS_EACH_GROUP as i64,
                1..=1024,
            )? as usize,
            work_threads: k.int_in("work_threads", 4, 1..=1024)? as usize,
            min_buff_size: min_buff,
            max_buff_size: max_buff,
            log_level: log_level(&k)?,
            log_rotation: super::log_rotation(ini, super::LogKind::Error)?,
            run_by_group: k.string("run_by_group", ""),
            run_by_user: k.string("run_by_user", ""),
            allow_hosts: super::allow_hosts(&k)?,
            store_lookup,
            store_group,
            store_server,
            // As C: 2 is load balance, anything else round robin.
            store_path: if k.int("store_path", 0)? == 2 { StorePath::MostFree } else { StorePath::RoundRobin },
            download_server: if k.int_in("download_server", 0, 0..=1)? == 1 {
                DownloadServer::SourceFirst
            } else {
                DownloadServer::RoundRobin
            },
            reserved_storage_space: reserved_space(&k)?,
            check_active_interval: seconds(&k, "check_active_interval", 100)?,
            storage_ip_changed_auto_adjust: k.bool("storage_ip_changed_auto_adjust", true)?,
            storage_sync_file_max_delay: seconds(&k, "storage_sync_file_max_delay", 86400)?,
            storage_sync_file_max_time: seconds(&k, "storage_sync_file_max_time", 300)?,
            use_trunk_file,
            slot_min_size: k.size("slot_min_size", 256)?.min(64 << 10),
            slot_max_size: k.size("slot_max_size", trunk_file_size / 8)?.min(trunk_file_size / 2),
            trunk_file_size,
            trunk_alloc_alignment_size: k.size("trunk_alloc_alignment_size", 0)?.min(64 << 10),
            trunk_free_space_merge: k.bool("trunk_free_space_merge", false)?,
            delete_unused_trunk_files: k.bool("delete_unused_trunk_files", false)?,
            trunk_init_check_occupying: k.bool("trunk_init_check_occupying", false)?,
            trunk_init_reload_from_binlog: k.bool("trunk_init_reload_from_binlog", false)?,
            trunk_compress_binlog_min_interval: seconds(&k, "trunk_compress_binlog_min_interval", 0)?,
            trunk_compress_binlog_interval: seconds(&k, "trunk_compress_binlog_interval", 0)?,
            trunk_compress_binlog_time_base: k.time_of_day("trunk_compress_binlog_time_base", (3, 0))?,
            trunk_binlog_max_backups: k.int_in("trunk_binlog_max_backups", 0, 0..=10_000)? as u32,
            trunk_create_file_advance: k.bool("trunk_create_file_advance", false)?,
            trunk_create_file_time_base: k.time_of_day("trunk_create_file_time_base", (2, 0))?,
            trunk_create_file_interval: seconds(&k, "trunk_create_file_interval", 86400)?,
            trunk_create_file_space_threshold: k.size("trunk_create_file_space_threshold", 0)?,
            use_storage_id: k.bool("use_storage_id", false)?,
            storage_ids_filename: dir.join(k.string("storage_ids_filename", "storage_ids.conf")),
            id_type_in_filename_is_id: k.string("id_type_in_filename", "ip").eq_ignore_ascii_case("id"),
            trust_storage_server_id: k.bool("trust_storage_server_id", true)?,
            store_slave_file_use_link: k.bool("store_slave_file_use_link", false)?,
            response_ip_addr_size: k.parsed(
                "response_ip_addr_size",
                ResponseIpSize::Auto,
                ResponseIpSize::parse,
                "auto, IPv4 or IPv6",
            )?,
            metrics_listen: k.parsed("metrics_listen", None, |v| v.parse().ok().map(Some), "an ip:port")?,
            client_protocol_version: k.parsed(
                "client_protocol_version",
                Layout::V616,
                |v| v.parse().ok(),
                "a FastDFS version: classic, 6.11, 6.12, 6.13, 6.15 or 6.16",
            )?,
            use_connection_pool: k.bool("use_connection_pool", false)?,
            connection_pool_max_idle_time: seconds(&k, "connection_pool_max_idle_time", 3600)?,
            sync_log_buff_interval: seconds(&k, "sync_log_buff_interval", 1)?,
            http_server_port: k.int_in("http.server_port", 8080, 1..=65535)? as u16,
        };
        super::unsupported::check(&k, super::unsupported::TRACKER);
        Ok(Self { warnings: ini.take_warnings(), ..config })
    }
}
