//! `storage_ids.conf` (PROTOCOL.md §7.7, §8.7): `<id> <group> <host[,host2]>[:port] [rw=...]`.

use std::path::Path;

use super::{ini::value_error, ConfigError, Entry};
use crate::protocol::valid_group_name;

/// Read/write mode of a storage in the cluster (6.13+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RwMode {
    #[default]
    Both,
    Read,
    Write,
    None,
}

impl RwMode {
    pub fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_lowercase().as_str() {
            "both" | "all" => RwMode::Both,
            "read" | "readonly" => RwMode::Read,
            "write" | "writeonly" => RwMode::Write,
            "none" => RwMode::None,
            _ => return None,
        })
    }

    /// The 6.13+ wire value of `rw_mode`.
    pub fn wire(self) -> u8 {
        match self {
            RwMode::None => 0,
            RwMode::Write => 2,
            RwMode::Read => 4,
            RwMode::Both => 6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageIdEntry {
    pub id: u32,
    pub group: String,
    pub hosts: Vec<String>,
    pub port: Option<u16>,
    pub rw: RwMode,
}

impl StorageIdEntry {
    /// As the tracker sends it in FETCH_STORAGE_IDS.
    pub fn to_line(&self) -> String {
        let mut hosts = self.hosts.join(",");
        if hosts.contains(':') {
            hosts = format!("[{hosts}]");
        }
        let mut s = format!("{} {} {}", self.id, self.group, hosts);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        if self.rw != RwMode::Both {
            s.push_str(&format!(" rw={}", ["none", "", "write", "", "read"][self.rw.wire() as usize]));
        }
        s
    }
}

/// The whole table, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageIds {
    pub entries: Vec<StorageIdEntry>,
}

impl StorageIds {
    /// Reads and parses the file, then resolves host names to addresses once, as C does at
    /// load (`storage_ids.conf` may name storages by host name; the tables compare addresses).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { file: path.to_owned(), source: e })?;
        let mut ids = Self::parse(&text, path)?;
        ids.resolve_host_names(path)?;
        Ok(ids)
    }

    /// Replaces every host name by its first address (IPv4 preferred); an unknown name is a
    /// startup error naming it.
    fn resolve_host_names(&mut self, path: &Path) -> Result<(), ConfigError> {
        use std::net::{IpAddr, ToSocketAddrs};
        for e in &mut self.entries {
            for host in &mut e.hosts {
                if host.parse::<IpAddr>().is_ok() {
                    continue;
                }
                let addrs: Vec<IpAddr> =
                    (host.as_str(), 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default();
                let Some(ip) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) else {
                    return Err(ConfigError::Syntax {
                        file: path.to_owned(),
                        line: 0,
                        msg: format!("storage {}: host name {host} does not resolve", e.id),
                    });
                };
                tracing::info!("storage_ids: {} {host} is {ip}", e.id);
                *host = ip.to_string();
            }
        }
        Ok(())
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut entries: Vec<StorageIdEntry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let entry =
                Entry { section: None, key: "storage id".into(), value: l.into(), file: path.into(), line: i + 1 };
            let e = Self::parse_line(l).ok_or_else(|| value_error(&entry, "`<id> <group> <host>[:port] [rw=mode]`"))?;
            if entries.iter().any(|x| x.id == e.id) {
                return Err(value_error(&entry, "a new id (duplicate)"));
            }
            entries.push(e);
        }
        Ok(Self { entries })
    }

    fn parse_line(l: &str) -> Option<StorageIdEntry> {
        let mut parts = l.split_whitespace();
        let id_text = parts.next()?;
        let id: u32 = id_text.parse().ok()?;
        if id == 0 || id > crate::file_id::MAX_SERVER_ID || id.to_string() != id_text {
            return None;
        }
        let group = parts.next()?.to_owned();
        if !valid_group_name(&group) {
            return None;
        }
        let host = parts.next()?;
        let (hosts, port) = if let Some(rest) = host.strip_prefix('[') {
            let (h, tail) = rest.split_once(']')?;
            (h, if tail.is_empty() { None } else { Some(tail.strip_prefix(':')?) })
        } else {
            match host.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
            None => None,
        };
        let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        if hosts.iter().any(String::is_empty) || hosts.len() > 2 {
            return None;
        }
        let mut rw = RwMode::Both;
        for opt in parts {
            let v = opt.strip_prefix("rw=")?;
            rw = RwMode::parse(v)?;
        }
        Some(StorageIdEntry { id, group, hosts, port, rw })
    }

    pub fn by_id(&self, id: u32) -> Option<&StorageIdEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Matches a joining storage by group, address and (if configured) port.
    pub fn find(&self, group: &str, ip: &str, port: u16) -> Option<&StorageIdEntry> {
        self.entries
            .iter()
            .find(|e| e.group == group && e.hosts.iter().any(|h| h == ip) && e.port.is_none_or(|p| p == port))
    }

    /// As [`Self::find`]; without a port any entry of that address matches.
    pub fn find_addr(&self, group: &str, ip: &str, port: Option<u16>) -> Option<&StorageIdEntry> {
        match port {
            Some(p) => self.find(group, ip, p),
            None => self.entries.iter().find(|e| e.group == group && e.hosts.iter().any(|h| h == ip)),
        }
    }

    /// Matches by address and port in any group (GET_GROUP_NAME).
    pub fn find_any_group(&self, ip: &str, port: u16) -> Option<&StorageIdEntry> {
        self.entries.iter().find(|e| e.hosts.iter().any(|h| h == ip) && e.port.is_none_or(|p| p == port || port == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_resolved_at_load_and_unknown_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage_ids.conf");
        std::fs::write(&path, "100001 group1 localhost\n100002 group1 127.0.0.27:23001\n").unwrap();
        let ids = StorageIds::load(&path).unwrap();
        assert_eq!(ids.by_id(100001).unwrap().hosts, ["127.0.0.1"], "localhost, as C's getIpaddrByName gives it");
        assert_eq!(ids.find_addr("group1", "127.0.0.1", None).map(|e| e.id), Some(100001));
        assert_eq!(ids.by_id(100002).unwrap().hosts, ["127.0.0.27"]);
        std::fs::write(&path, "100001 group1 no-such-storage.invalid\n").unwrap();
        let e = StorageIds::load(&path).unwrap_err().to_string();
        assert!(e.contains("no-such-storage.invalid"), "{e}");
    }
}
