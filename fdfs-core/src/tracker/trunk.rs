//! The trunk server of each group (PROTOCOL.md §7.8): with `use_trunk_file`, the leader names
//! one storage per group to allocate trunk space. Among the ACTIVE writable members it asks each
//! for the size of its trunk binlog (31) and takes the longest, preferring the last trunk server
//! on a tie, as C does; the longest binlog knows the most allocations, so a new trunk server
//! never hands out space an old one gave away. A trunk server that stops beating for
//! `check_active_interval` is replaced, and the new one is told to push its whole binlog to
//! the others (32).

use std::sync::Arc;
use std::time::Duration;

use super::Tracker;
use crate::client::Connection;
use crate::protocol::status::ACTIVE;
use crate::protocol::Command;
use crate::server::Shutdown;
use crate::timefmt::now_unix;

/// Sends an empty-bodied command to a storage; its answer body, if it answered.
pub async fn tell_storage(
    connect_timeout: Duration,
    network_timeout: Duration,
    (ip, port): (String, u16),
    cmd: Command,
) -> Option<Vec<u8>> {
    let addr = crate::config::join_host_port(&ip, port);
    let mut c = match Connection::connect(&addr, connect_timeout, network_timeout).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("storage {addr}: {cmd:?}: {e}");
            return None;
        }
    };
    let r = match c.call(cmd, &[]).await {
        Ok(b) => Some(b.to_vec()),
        Err(e) => {
            tracing::warn!("storage {addr}: {cmd:?}: {e}");
            None
        }
    };
    c.quit().await;
    r
}

/// A group that needs a trunk server.
struct Vacancy {
    group: String,
    last: String,
    /// Who could be it: (id, ip, port), sorted by ID.
    candidates: Vec<(String, String, u16)>,
}

fn vacancies(t: &Tracker, now: i64) -> Vec<Vacancy> {
    let check = t.config.check_active_interval.as_secs() as i64;
    let c = t.lock();
    c.groups
        .values()
        .filter(|g| match g.storages.get(&g.trunk_server) {
            None => true,
            Some(s) => s.status != ACTIVE && now - s.last_heart_beat_time >= check,
        })
        .map(|g| Vacancy {
            group: g.name.clone(),
            last: g.last_trunk_server.clone(),
            candidates: g.writable().map(|s| (s.id.clone(), s.ip.clone(), s.storage_port)).collect(),
        })
        .filter(|v| !v.candidates.is_empty())
        .collect()
}

/// Elects trunk servers while this tracker leads and trunk files are on.
pub async fn run(t: Arc<Tracker>, mut shutdown: Shutdown) {
    if !t.config.use_trunk_file {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let alone = t.lock().trackers.len() <= 1;
        if !alone && !t.is_leader() {
            continue;
        }
        for Vacancy { group, last, candidates } in vacancies(&t, now_unix()) {
            let mut best: Option<(i64, bool, String, (String, u16))> = None;
            for (id, ip, port) in candidates {
                let timeout = t.config.connect_timeout.min(Duration::from_secs(2));
                let answer = tell_storage(timeout, timeout, (ip.clone(), port), Command::TrunkGetBinlogSize).await;
                let Some(size) = answer.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok()).map(i64::from_be_bytes) else {
                    continue;
                };
                let key = (size, id == last);
                if best.as_ref().is_none_or(|b| key > (b.0, b.1)) {
                    best = Some((size, id == last, id, (ip, port)));
                }
            }
            let Some((size, _, id, target)) = best else { continue };
            let had_one = {
                let mut c = t.lock();
                let Some(g) = c.groups.get_mut(&group) else { continue };
                let had_one = !g.trunk_server.is_empty();
                g.set_trunk_server(&id);
                c.dirty = true;
                had_one
            };
            tracing::info!("group {group}: trunk server {id} (trunk binlog {size} bytes)");
            if had_one {
                tell_storage(
                    t.config.connect_timeout,
                    t.config.network_timeout,
                    target,
                    Command::TrunkDeleteBinlogMarks,
                )
                .await;
            }
        }
    }
}
