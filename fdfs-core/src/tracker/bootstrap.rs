//! A tracker that starts with no state next to others (PROTOCOL.md §7.5): on the first storage
//! JOIN it receives, it copies the four state files from a tracker that has groups
//! (61 GET_SYS_FILES_START, 63 GET_ONE_SYS_FILE per file, 62 GET_SYS_FILES_END), loads them,
//! and only then answers that JOIN, so its answers are right at once. The serving side of
//! 61/62/63 answers from one snapshot taken at 61.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{persist, Tracker};
use crate::client::Connection;
use crate::protocol::Command;

/// Not decided yet.
pub const NOT_TRIED: u8 = 0;
/// Copied, or nothing to copy: JOINs go straight through.
pub const DONE: u8 = 2;

/// Most bytes of one state file accepted from another tracker (a cluster of thousands of
/// storages writes well under 1 MiB).
const MAX_FILE: u64 = 8 << 20;
/// How long the whole copy from one tracker may take: JOINs wait for it.
const COPY_TIME: Duration = Duration::from_secs(10);

/// Before a JOIN is handled: a tracker with no groups, told of other trackers by the joining
/// storage, copies their state first (once; concurrent JOINs wait for it). A tracker that is
/// unreachable or has nothing is skipped, as C does, so the JOIN then goes on as on a fresh
/// tracker.
pub async fn before_join(t: &Arc<Tracker>, body: &[u8]) {
    if t.bootstrap.load(Ordering::Acquire) == DONE {
        return;
    }
    let Some(req) = crate::protocol::report::JoinReq::detect(body)
        .and_then(|l| crate::protocol::report::JoinReq::decode(body, crate::protocol::Profile::of(l, false)).ok())
    else {
        return;
    };
    let _one_at_a_time = t.bootstrap_lock.lock().await;
    if t.bootstrap.load(Ordering::Acquire) == DONE {
        return;
    }
    let others: Vec<String> = req.trackers.iter().filter(|a| !super::election::is_me(t, a)).cloned().collect();
    if !t.lock().groups.is_empty() {
        t.bootstrap.store(DONE, Ordering::Release);
        return;
    }
    if others.is_empty() {
        return;
    }
    copy_state(t, &others).await;
    t.bootstrap.store(DONE, Ordering::Release);
}

async fn copy_state(t: &Tracker, others: &[String]) {
    for addr in others {
        let fetched = tokio::time::timeout(COPY_TIME, fetch(t, addr)).await.unwrap_or_else(|_| Err("timed out".into()));
        match fetched {
            Ok(Some(files)) => match install(t, files) {
                Ok(groups) => {
                    tracing::info!("copied the cluster state from tracker {addr}: {groups} group(s)");
                    return;
                }
                Err(e) => tracing::warn!("loading the state copied from {addr}: {e}"),
            },
            Ok(None) => tracing::info!("tracker {addr} has no groups to copy"),
            Err(e) => tracing::warn!("copying the cluster state from {addr}: {e}"),
        }
    }
}

/// The four files from `addr`, or `None` if it has no groups (61 answers ENOENT).
async fn fetch(t: &Tracker, addr: &str) -> Result<Option<Vec<Vec<u8>>>, String> {
    let timeout = t.config.connect_timeout.min(Duration::from_secs(5));
    let mut c = Connection::connect(addr, timeout, t.config.network_timeout).await.map_err(|e| e.to_string())?;
    match c.call(Command::TrackerGetSysFilesStart, &[]).await {
        Ok(_) => {}
        Err(crate::client::ClientError::Status { status: crate::protocol::Status::ENOENT }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let mut files = Vec::new();
    for index in 0..persist::SYS_FILES.len() as u8 {
        let mut content = Vec::new();
        loop {
            let mut req = vec![index];
            req.extend_from_slice(&(content.len() as i64).to_be_bytes());
            let answer = c.call(Command::TrackerGetOneSysFile, &req).await.map_err(|e| e.to_string())?;
            let size =
                answer.get(..8).map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default())).ok_or("short answer")?;
            let size = u64::try_from(size).ok().filter(|&n| n <= MAX_FILE).ok_or("bad file size")?;
            content.extend_from_slice(&answer[8..]);
            if content.len() as u64 >= size || answer.len() == 8 {
                content.truncate(size as usize);
                break;
            }
        }
        files.push(content);
    }
    let _ = c.call(Command::TrackerGetSysFilesEnd, &[]).await;
    Ok(Some(files))
}

/// Loads the copied files from a staging folder and, only if they load, writes them as ours:
/// a copy that does not load (another tracker's garbage) never replaces our state files, so
/// it cannot stop our next start.
fn install(t: &Tracker, files: Vec<Vec<u8>>) -> Result<usize, String> {
    let dir = &t.data_dir;
    let staging = dir.join(".copied_state");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    for (name, text) in persist::SYS_FILES.iter().zip(&files) {
        std::fs::write(staging.join(name), text).map_err(|e| e.to_string())?;
    }
    let loaded = persist::load(&staging, &t.limits);
    let _ = std::fs::remove_dir_all(&staging);
    let loaded = loaded.map_err(|e| e.to_string())?;
    for (name, text) in persist::SYS_FILES.iter().zip(&files) {
        crate::durable::write_atomic(dir, name, text).map_err(|e| e.to_string())?;
    }
    let mut c = t.lock();
    let trackers = std::mem::take(&mut c.trackers);
    *c = loaded;
    for tr in trackers {
        if !c.trackers.contains(&tr) {
            c.trackers.push(tr);
        }
    }
    Ok(c.groups.len())
}
