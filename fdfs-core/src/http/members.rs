//! The members of this server's groups as the tracker lists them (92 LIST_STORAGE), so that a
//! file that should be here and is not (a disk replaced and not yet recovered, a file lost or
//! removed by hand) is fetched from a member that holds it instead of answered 404.
//!
//! The list is asked for with blocking sockets, never on an nginx worker's event loop: once
//! while nginx reads its configuration, then, when a miss finds it older than
//! [`MEMBERS_TTL_SECS`], on a short-lived thread of its own while that request uses what is
//! known.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ModFastdfsConfig;
use crate::protocol::stat::StorageStat;

/// How long a member list is trusted before a miss asks for a new one.
pub const MEMBERS_TTL_SECS: i64 = 30;

/// A storage of the group, as far as serving reads goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub ip: String,
    /// ACTIVE and readable (not write-only).
    pub readable: bool,
    /// The tracker's `last_synced_timestamp`: it holds every peer's file created before this.
    pub synced_until: i64,
}

impl Member {
    fn of(s: &StorageStat) -> Self {
        Self {
            ip: s.ip.clone(),
            readable: s.status == crate::protocol::status::ACTIVE && s.rw_mode & 4 != 0,
            synced_until: s.stat.counters.last_synced_timestamp,
        }
    }
}

#[derive(Debug, Default)]
struct Known {
    /// When the list was last asked for (answered or not): 0 never.
    asked_at: i64,
    groups: HashMap<String, Vec<Member>>,
}

/// The member lists of the groups a mod_fastdfs.conf serves, shared by its requests.
#[derive(Debug, Default)]
pub struct Members {
    known: Mutex<Known>,
    refreshing: AtomicBool,
}

/// What a miss knows of the file: its group, source and creation time.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub group: &'a str,
    /// The source storage's address, when the name's source maps to one.
    pub source: Option<&'a str>,
    pub created: i64,
    /// Spreads the files of one source over the members that hold them.
    pub spread: u32,
}

impl Members {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // The data is a plain cache: a panic while it was held cannot leave it inconsistent.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the lists (an answer), or only marks them asked for (`None`: no tracker answered).
    pub fn record(&self, groups: Option<HashMap<String, Vec<Member>>>, now: i64) {
        let mut known = self.known();
        known.asked_at = now;
        if let Some(groups) = groups {
            known.groups = groups;
        }
    }

    pub fn is_stale(&self, now: i64) -> bool {
        now - self.known().asked_at >= MEMBERS_TTL_SECS
    }

    /// A member other than this server (`is_here`) that holds the file, as the tracker decides
    /// who may serve a fetch: its source, any member once the file is older than
    /// `max_delay_secs`, or one that has synced up to the file's creation second (a guess,
    /// which may be wrong for files of the same second: the member then answers 404 after its
    /// one hop, which is what this server would have answered).
    pub fn holder(
        &self,
        want: Wanted<'_>,
        now: i64,
        max_delay_secs: i64,
        is_here: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let known = self.known();
        let old = now - want.created > max_delay_secs;
        let holders: Vec<&Member> = known
            .groups
            .get(want.group)?
            .iter()
            .filter(|m| m.readable && !is_here(&m.ip))
            .filter(|m| old || want.source == Some(m.ip.as_str()) || m.synced_until >= want.created)
            .collect();
        if holders.is_empty() {
            return None;
        }
        Some(holders[want.spread as usize % holders.len()].ip.clone())
    }

    /// Asks the trackers for fresh lists on a thread of its own, unless one is already asking.
    pub fn refresh_in_background(self: &Arc<Self>, config: &ModFastdfsConfig, now: i64) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let members = Arc::clone(self);
        let config = config.clone();
        let spawned = std::thread::Builder::new().name("fastdfs-members".into()).spawn(move || {
            members.record(fetch(&config).ok(), now);
            members.refreshing.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.record(None, now);
            self.refreshing.store(false, Ordering::Release);
        }
    }
}

/// 92 LIST_STORAGE for each group of `config`, with blocking sockets.
pub fn fetch(config: &ModFastdfsConfig) -> Result<HashMap<String, Vec<Member>>, String> {
    use crate::protocol::tracker::GroupStorageReq;
    use crate::protocol::Command;
    let mut groups = HashMap::new();
    for g in &config.groups {
        let req = GroupStorageReq { group: g.group_name.clone(), storage_id: None };
        let body = crate::net::call_blocking(
            &config.tracker_servers,
            Command::ServerListStorage,
            &req.encode(),
            config.connect_timeout,
            config.network_timeout,
        )
        .map_err(|e| e.to_string())?;
        let (list, _) = StorageStat::decode_list_any(&body).map_err(|e| e.to_string())?;
        groups.insert(g.group_name.clone(), list.iter().map(Member::of).collect());
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ip: &str, readable: bool, synced_until: i64) -> Member {
        Member { ip: ip.into(), readable, synced_until }
    }

    #[test]
    fn a_holder_is_a_readable_member_that_has_the_file() {
        let m = Members::default();
        assert!(m.is_stale(1000), "never asked");
        let list = vec![
            member("10.0.0.1", true, 0),
            member("10.0.0.2", true, 500),
            member("10.0.0.3", false, 900),
            member("10.0.0.4", true, 100),
        ];
        m.record(Some(HashMap::from([("group1".to_owned(), list)])), 1000);
        assert!(!m.is_stale(1000 + MEMBERS_TTL_SECS - 1));
        assert!(m.is_stale(1000 + MEMBERS_TTL_SECS));
        let here = |ip: &str| ip == "10.0.0.1";
        let want = Wanted { group: "group1", source: Some("10.0.0.1"), created: 300, spread: 0 };
        // Only .2 synced past 300; .3 is not readable; .1 is this server.
        for spread in 0..4 {
            assert_eq!(m.holder(Wanted { spread, ..want }, 1000, 86400, here).as_deref(), Some("10.0.0.2"));
        }
        // The source holds its own files whatever it synced.
        let from_4 = Wanted { source: Some("10.0.0.4"), created: 800, ..want };
        assert_eq!(m.holder(from_4, 1000, 86400, here).as_deref(), Some("10.0.0.4"));
        // Newer than every sync: nobody is known to hold it.
        assert_eq!(m.holder(Wanted { created: 950, ..want }, 1000, 86400, here), None);
        // Older than storage_sync_file_max_delay: every readable member holds it, spread.
        let old: Vec<_> = (0..4).filter_map(|spread| m.holder(Wanted { spread, ..want }, 1000, 100, here)).collect();
        assert_eq!(old, ["10.0.0.2", "10.0.0.4", "10.0.0.2", "10.0.0.4"]);
        assert_eq!(m.holder(Wanted { group: "group2", ..want }, 1000, 100, here), None);
        // A failed ask keeps the lists and waits a TTL before asking again.
        m.record(None, 2000);
        assert!(!m.is_stale(2001));
        assert!(m.holder(want, 2001, 86400, here).is_some());
    }
}
