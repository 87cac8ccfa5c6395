//! `client.conf` (PROTOCOL.md §8.4).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_level, seconds, tracker_servers, ConfigError, Ini, LogLevel, ServerAddr};

/// Settings of the client tools and the async client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
    pub tracker_servers: Vec<ServerAddr>,
    pub log_level: LogLevel,
    pub use_connection_pool: bool,
    pub connection_pool_max_idle_time: Duration,
    pub load_fdfs_parameters_from_tracker: bool,
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    pub http_tracker_server_port: u16,
    pub anti_steal_check_token: bool,
    pub anti_steal_secret_key: String,
    /// `connect_first_by` (`tracker`; or `last-connected`, 6.11): which of a storage's
    /// addresses to try first. The tracker answers every query with the one address of the
    /// client's class (two-address storage IDs), so both orders try that address.
    pub connect_first_by: ConnectFirstBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectFirstBy {
    #[default]
    Tracker,
    LastConnected,
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_ini(&Ini::load(path)?)
    }

    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let k = ini.global();
        let tracker_servers = tracker_servers(&k)?;
        if tracker_servers.is_empty() {
            return Err(ConfigError::Missing { file: ini.path.clone(), key: "tracker_server".into() });
        }
        let dir = ini.path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            connect_timeout: super::timeout(&k, "connect_timeout", 10)?,
            network_timeout: super::timeout(&k, "network_timeout", 30)?,
            base_path: PathBuf::from(k.string("base_path", "/tmp")),
            tracker_servers,
            log_level: log_level(&k)?,
            use_connection_pool: k.bool("use_connection_pool", false)?,
            connection_pool_max_idle_time: seconds(&k, "connection_pool_max_idle_time", 3600)?,
            load_fdfs_parameters_from_tracker: k.bool("load_fdfs_parameters_from_tracker", false)?,
            use_storage_id: k.bool("use_storage_id", false)?,
            storage_ids_filename: dir.join(k.string("storage_ids_filename", "storage_ids.conf")),
            http_tracker_server_port: k.int_in("http.tracker_server_port", 80, 1..=65535)? as u16,
            anti_steal_check_token: k.bool("http.anti_steal.check_token", false)?,
            anti_steal_secret_key: k.string("http.anti_steal.secret_key", ""),
            connect_first_by: match k.entry("connect_first_by") {
                None => ConnectFirstBy::Tracker,
                Some(e) => match e.value.to_ascii_lowercase().as_str() {
                    "tracker" => ConnectFirstBy::Tracker,
                    "last-connected" | "last_connected" => ConnectFirstBy::LastConnected,
                    _ => return Err(super::ini::value_error(e, "tracker or last-connected")),
                },
            },
        })
    }

    /// A config for tools given `--tracker HOST:PORT` instead of a file.
    pub fn for_tracker(addr: ServerAddr) -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            network_timeout: Duration::from_secs(30),
            base_path: PathBuf::from("/tmp"),
            tracker_servers: vec![addr],
            log_level: LogLevel::Info,
            use_connection_pool: true,
            connection_pool_max_idle_time: Duration::from_secs(3600),
            load_fdfs_parameters_from_tracker: false,
            use_storage_id: false,
            storage_ids_filename: PathBuf::from("storage_ids.conf"),
            http_tracker_server_port: 80,
            anti_steal_check_token: false,
            anti_steal_secret_key: String::new(),
            connect_first_by: ConnectFirstBy::Tracker,
        }
    }
}
