//! `mod_fastdfs.conf`, the nginx module's config (PROTOCOL.md §8.5).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_level, seconds, store_paths, tracker_servers, ConfigError, HttpConfig, Ini, LogLevel, ServerAddr};

/// `response_mode`: what to do with a file that is not on this server yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    #[default]
    Proxy,
    Redirect,
}

/// One local group: the top-level keys, or a `[groupN]` section when `group_count > 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModGroup {
    pub group_name: String,
    pub storage_server_port: u16,
    pub store_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModFastdfsConfig {
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
    pub load_fdfs_parameters_from_tracker: bool,
    pub storage_sync_file_max_delay: Duration,
    pub use_storage_id: bool,
    pub storage_ids_filename: PathBuf,
    pub tracker_servers: Vec<ServerAddr>,
    pub url_have_group_name: bool,
    pub log_level: LogLevel,
    /// Empty = nginx's error log.
    pub log_filename: String,
    pub response_mode: ResponseMode,
    pub if_alias_prefix: String,
    pub flv_support: bool,
    pub flv_extension: String,
    /// The groups served from this host: one, or `group_count` sections.
    pub groups: Vec<ModGroup>,
    pub anti_steal_bypass_header: Option<(String, String)>,
    pub http: HttpConfig,
    /// Image derivatives on request (ours).
    pub thumbnail: super::ThumbnailConfig,
}

impl ModFastdfsConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_ini(&Ini::load(path)?)
    }

    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let k = ini.global();
        let dir = ini.path.parent().unwrap_or(Path::new("."));
        let group_count = k.int_in("group_count", 0, 0..=512)? as usize;
        let url_have_group_name = k.bool("url_have_group_name", false)?;
        let read_group = |keys: &super::Keys<'_>| -> Result<ModGroup, ConfigError> {
            let count = keys.int_in("store_path_count", 1, 1..=256)? as usize;
            Ok(ModGroup {
                group_name: keys.required("group_name")?.value.clone(),
                storage_server_port: keys.int_in("storage_server_port", 23000, 1..=65535)? as u16,
                store_paths: store_paths(keys, count, None)?,
            })
        };
        let groups = if group_count == 0 {
            vec![read_group(&k)?]
        } else {
            if !url_have_group_name {
                let e = k.entry("group_count").expect("group_count > 0 came from the file");
                return Err(super::ini::value_error(e, "usable without url_have_group_name = true"));
            }
            (1..=group_count).map(|i| read_group(&ini.section(Some(&format!("group{i}"))))).collect::<Result<_, _>>()?
        };
        let response_mode = match k.entry("response_mode") {
            None => ResponseMode::Proxy,
            Some(e) if e.value == "proxy" => ResponseMode::Proxy,
            Some(e) if e.value == "redirect" => ResponseMode::Redirect,
            Some(e) => return Err(super::ini::value_error(e, "proxy or redirect")),
        };
        let bypass =
            match (k.opt_string("anti_steal_bypass_header_name"), k.opt_string("anti_steal_bypass_header_value")) {
                (Some(n), Some(v)) => Some((n, v)),
                _ => None,
            };
        Ok(Self {
            connect_timeout: super::timeout(&k, "connect_timeout", 10)?,
            network_timeout: super::timeout(&k, "network_timeout", 30)?,
            base_path: PathBuf::from(k.string("base_path", "/tmp")),
            load_fdfs_parameters_from_tracker: k.bool("load_fdfs_parameters_from_tracker", false)?,
            storage_sync_file_max_delay: seconds(&k, "storage_sync_file_max_delay", 86400)?,
            use_storage_id: k.bool("use_storage_id", false)?,
            storage_ids_filename: dir.join(k.string("storage_ids_filename", "storage_ids.conf")),
            tracker_servers: tracker_servers(&k)?,
            url_have_group_name,
            log_level: log_level(&k)?,
            log_filename: k.string("log_filename", ""),
            response_mode,
            if_alias_prefix: k.string("if_alias_prefix", ""),
            flv_support: k.bool("flv_support", false)?,
            flv_extension: k.string("flv_extension", "flv"),
            groups,
            anti_steal_bypass_header: bypass,
            http: HttpConfig::from_keys(&k, dir)?,
            thumbnail: super::ThumbnailConfig::from_keys(&k)?,
        })
    }
}
