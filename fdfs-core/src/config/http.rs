//! `http.conf`, normally included by `mod_fastdfs.conf` (PROTOCOL.md §8.6).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{seconds, ConfigError, Keys};

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub disabled: bool,
    pub server_port: u16,
    pub need_find_content_type: bool,
    /// Also read under its historical spelling `http.multi_range.enabed` (≤ V6.15.1).
    pub multi_range_enabled: bool,
    pub mime_types_filename: Option<PathBuf>,
    pub default_content_type: String,
    pub check_token: bool,
    pub token_ttl: Duration,
    pub secret_key: String,
    /// File served (HTTP 200) when a token check fails; `None` → HTTP 400.
    pub token_check_fail: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            disabled: false,
            server_port: 80,
            need_find_content_type: true,
            multi_range_enabled: true,
            mime_types_filename: None,
            default_content_type: "application/octet-stream".into(),
            check_token: false,
            token_ttl: Duration::from_secs(600),
            secret_key: String::new(),
            token_check_fail: None,
        }
    }
}

impl HttpConfig {
    /// Reads the `http.*` keys of a section; relative paths resolve against `dir`.
    pub fn from_keys(k: &Keys<'_>, dir: &Path) -> Result<Self, ConfigError> {
        let d = HttpConfig::default();
        let multi = match k.entry("http.multi_range.enabled") {
            Some(_) => k.bool("http.multi_range.enabled", true)?,
            None => k.bool("http.multi_range.enabed", true)?,
        };
        let check_token = k.bool("http.anti_steal.check_token", false)?;
        let secret_key = k.string("http.anti_steal.secret_key", "");
        if check_token && secret_key.is_empty() {
            k.required("http.anti_steal.secret_key")?;
        }
        Ok(Self {
            disabled: k.bool("http.disabled", false)?,
            server_port: k.int_in("http.server_port", 80, 1..=65535)? as u16,
            need_find_content_type: k.bool("http.need_find_content_type", true)?,
            multi_range_enabled: multi,
            mime_types_filename: k.opt_string("http.mime_types_filename").map(|p| dir.join(p)),
            default_content_type: k.string("http.default_content_type", &d.default_content_type),
            check_token,
            token_ttl: seconds(k, "http.anti_steal.token_ttl", 600)?,
            secret_key,
            token_check_fail: k.opt_string("http.anti_steal.token_check_fail").map(|p| dir.join(p)),
        })
    }
}
