//! Several trackers (PROTOCOL.md §7.5): trackers learn each other from the tracker lists storages
//! send in JOIN, elect a leader by asking each other's status, and followers ping the leader,
//! electing again after three missed pings. Only the leader pushes change notifications.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Tracker;
use crate::client::Connection;
use crate::config::ServerAddr;
use crate::locked::RwLockExt;
use crate::protocol::leader::{decode_leader_addr, encode_leader_addr, JoinLeaderReq, PingLeaderReq, TrackerStatus};
use crate::protocol::{Command, Profile};
use crate::server::Shutdown;

/// A tracker's standing in an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub addr: String,
    pub status: TrackerStatus,
}

/// The ordering of §7.5: an existing leader, then the longest running, then the shortest
/// restart gap, then the greatest address (C: `strcmp` of the IP texts, then the port). The
/// last element wins. Every tracker of a set must rank alike, or each waits for another to
/// take the lead: comparing `ip:port` texts whole put `127.0.0.1:22122` after
/// `127.0.0.10:22122`, where C puts it before.
pub fn winner(mut c: Vec<Candidate>) -> Option<Candidate> {
    fn ip_then_port(addr: &str) -> (String, u16) {
        match ServerAddr::parse(addr) {
            Some(a) => (a.hosts.first().cloned().unwrap_or_default(), a.port),
            None => (addr.to_owned(), 0),
        }
    }
    c.sort_by(|a, b| {
        (a.status.is_leader, a.status.running_time)
            .cmp(&(b.status.is_leader, b.status.running_time))
            .then(b.status.restart_interval.cmp(&a.status.restart_interval))
            .then(ip_then_port(&a.addr).cmp(&ip_then_port(&b.addr)))
    });
    c.pop()
}

/// A connection to another tracker, from `bind_addr` when one is set: a C leader accepts 58
/// JOIN_LEADER only from the address (and port) it knows the follower by (ENOENT otherwise),
/// and on a host with several addresses the kernel would pick another.
async fn connect(t: &Tracker, addr: &str) -> Option<Connection> {
    let d = t.config.connect_timeout.min(Duration::from_secs(2));
    let bind = t.config.bind_addr.parse().ok();
    Connection::connect_from(addr, bind, d, d).await.ok()
}

async fn call(addr: &str, t: &Tracker, cmd: Command, body: &[u8]) -> Option<bytes::Bytes> {
    let mut c = connect(t, addr).await?;
    let r = c.call(cmd, body).await.ok();
    c.quit().await;
    r
}

/// Is `addr` (`ip:port` from a storage's list) this tracker?
pub(super) fn is_me(t: &Tracker, addr: &str) -> bool {
    let Some(a) = ServerAddr::parse(addr) else { return false };
    a.port == t.port.load(Ordering::Relaxed) && a.hosts.iter().any(|h| t.is_own_ip(h))
}

/// A follower's connection to the leader, kept as C keeps it: JOIN_LEADER (58) once (6.15.5+),
/// then PING_LEADER (65) on the same connection, which a C 6.16 leader requires.
struct LeaderLink {
    addr: String,
    conn: Connection,
}

/// Whether this tracker speaks the 6.15.5+ follower protocol (58, then 65 with counts).
fn joins_leader(t: &Tracker) -> bool {
    t.profile.layout >= crate::protocol::Layout::V616
}

/// One ping of the leader `addr` (joining it first on a new connection); its answer.
async fn ping(t: &Tracker, link: &mut Option<LeaderLink>, addr: &str) -> Option<bytes::Bytes> {
    if link.as_ref().is_none_or(|l| l.addr != addr) {
        *link = None;
        let mut conn = connect(t, addr).await?;
        if joins_leader(t) {
            let join = JoinLeaderReq {
                up_time: t.up_time,
                version: t.profile.layout.version_text().to_owned(),
                server_port: i64::from(t.port.load(Ordering::Relaxed)),
            };
            if let Err(e) = conn.call(Command::TrackerJoinLeader, &join.encode(Profile::V6_16)).await {
                tracing::warn!("joining leader {addr}: {e}");
                return None;
            }
        }
        *link = Some(LeaderLink { addr: addr.to_owned(), conn });
    }
    let l = link.as_mut()?;
    let body = if joins_leader(t) {
        let (current, max) = t.conns.get();
        PingLeaderReq { conn_alloc: max.max(current), conn_current: current, conn_max: max }.encode(Profile::V6_16)
    } else {
        bytes::BytesMut::new()
    };
    match l.conn.call(Command::TrackerPingLeader, &body).await {
        Ok(answer) => Some(answer),
        Err(_) => {
            *link = None;
            None
        }
    }
}

/// Runs until shutdown: elect when there is no leader, ping it when there is one.
pub async fn run(t: Arc<Tracker>, mut shutdown: Shutdown) {
    let mut misses = 0;
    let mut link: Option<LeaderLink> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let others: Vec<String> = {
            let c = t.lock();
            c.trackers.iter().filter(|a| !is_me(&t, a)).cloned().collect()
        };
        let leader = t.leader.read_locked().clone();
        match leader {
            Some(l) if l == t.self_addr() => misses = 0,
            Some(l) => {
                if let Some(body) = ping(&t, &mut link, &l).await {
                    misses = 0;
                    learn_trunk_servers(&t, &body);
                } else {
                    misses += 1;
                    if misses >= 3 {
                        tracing::warn!("leader {l} is gone; electing a new one");
                        *t.leader.write_locked() = None;
                        misses = 0;
                    }
                }
            }
            None => elect(&t, &others).await,
        }
    }
}

/// A follower keeps the leader's trunk servers (65's answer), so it names the same ones
/// should it lead one day.
fn learn_trunk_servers(t: &Tracker, body: &[u8]) {
    if !body.len().is_multiple_of(32) {
        return;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned();
    let mut c = t.lock();
    for entry in body.chunks(32) {
        let (group, id) = (text(&entry[..16]), text(&entry[16..]));
        if let Some(g) = c.groups.get_mut(&group) {
            if g.trunk_server != id && crate::protocol::is_safe_token(&id) {
                g.set_trunk_server(&id);
                c.dirty = true;
            }
        }
    }
}

/// One election round, as C's `relationship_select_leader`: only once a storage has told us of
/// the tracker set, among the trackers that have groups (64 answers ENOENT otherwise). A
/// tracker that just started knows neither: electing itself then made a second leader beside
/// a running one (split brain), which nothing re-checked.
async fn elect(t: &Arc<Tracker>, others: &[String]) {
    let (told, have_groups) = {
        let c = t.lock();
        (!c.trackers.is_empty(), !c.groups.is_empty())
    };
    if !told {
        return;
    }
    let me = t.self_addr();
    let mut cands = Vec::new();
    if have_groups {
        cands.push(Candidate { addr: me.clone(), status: t.status() });
    }
    for o in others {
        if let Some(body) = call(o, t, Command::TrackerGetStatus, &[]).await {
            if let Ok(status) = TrackerStatus::decode(&body, Profile::CLASSIC) {
                cands.push(Candidate { addr: o.clone(), status });
            }
        }
    }
    let reachable = cands.len() - usize::from(have_groups);
    let Some(w) = winner(cands) else { return };
    if w.addr == me {
        let body = encode_leader_addr(&me, Profile::V6_16);
        let mut notified = 0;
        for o in others {
            notified += call(o, t, Command::TrackerNotifyNextLeader, &body).await.is_some() as usize;
        }
        // Alone (or the only one left): lead without anyone to tell.
        if notified > 0 || reachable == 0 {
            for o in others {
                let _ = call(o, t, Command::TrackerCommitNextLeader, &body).await;
            }
            tracing::info!("this tracker ({me}) is the leader");
            t.set_leader(Some(me));
        }
    } else if w.status.is_leader == 1 {
        tracing::info!("tracker {} is the leader", w.addr);
        t.set_leader(Some(w.addr));
    }
}

/// Is `addr` a tracker of this cluster: this one, or one the storages named in their JOINs?
fn is_known_tracker(t: &Tracker, addr: &str) -> bool {
    let Some(a) = ServerAddr::parse(addr) else { return false };
    is_me(t, addr)
        || t.lock()
            .trackers
            .iter()
            .filter_map(|k| ServerAddr::parse(k))
            .any(|k| k.port == a.port && k.hosts.iter().any(|h| a.hosts.contains(h)))
}

/// The tracker of this cluster (`ip:port` as storages list it) that a connection from `ip`
/// naming `port` comes from: the one at that address and port, or, for a connection from this
/// very host (a follower beside us: C does not bind those connections, so they come from the
/// host's own address), the one at that port on one of our addresses or aliases.
pub(super) fn tracker_at(t: &Tracker, ip: std::net::IpAddr, port: u16) -> Option<String> {
    let ip = ip.to_canonical().to_string();
    let known: Vec<String> = t.lock().trackers.iter().filter(|k| !is_me(t, k)).cloned().collect();
    let at = |host_matches: &dyn Fn(&str) -> bool| {
        known
            .iter()
            .find(|k| ServerAddr::parse(k).is_some_and(|a| a.port == port && a.hosts.iter().any(|h| host_matches(h))))
    };
    at(&|h| h == ip)
        .or_else(|| {
            if t.is_own_ip(&ip) || ip.starts_with("127.") {
                at(&|h| h.starts_with("127.") || t.is_own_ip(h))
            } else {
                None
            }
        })
        .cloned()
}

/// Does a connection from `ip` come from a tracker host of this cluster?
fn is_tracker_host(t: &Tracker, ip: &str) -> bool {
    t.is_own_ip(ip)
        || t.lock().trackers.iter().filter_map(|k| ServerAddr::parse(k)).any(|k| k.hosts.iter().any(|h| h == ip))
}

/// 68 NOTIFY_RESELECT_LEADER from `peer_ip`: a storage saw two trackers claim the lead (C
/// storages send it to both; ours too) and the leader steps down, so the next round elects one
/// for the whole set. Not leader: EOPNOTSUPP, as C. Only a storage of this cluster or a tracker
/// host may ask (C takes it from anyone; a stranger could keep the set electing).
pub fn on_reselect(t: &Tracker, peer_ip: &str) -> Result<(), crate::protocol::Status> {
    let known_storage = t.lock().groups.values().any(|g| g.storages.values().any(|s| s.ip == peer_ip));
    if !known_storage && !is_tracker_host(t, peer_ip) {
        tracing::warn!("{peer_ip}: refused NOTIFY_RESELECT_LEADER: not a storage or tracker of this cluster");
        return Err(crate::protocol::Status::EACCES);
    }
    if !t.is_leader() {
        tracing::warn!("{peer_ip}: NOTIFY_RESELECT_LEADER, but this tracker is not the leader");
        return Err(crate::protocol::Status::EOPNOTSUPP);
    }
    tracing::warn!("{peer_ip}: two tracker leaders were seen; stepping down to elect one again");
    t.set_leader(None);
    Ok(())
}

/// 66 NOTIFY_NEXT_LEADER / 67 COMMIT_NEXT_LEADER from `peer_ip`: record the candidate (66),
/// make it the leader (67). The candidate must be a
/// tracker of this cluster (C answers ENOENT otherwise) and the message must come from a
/// tracker host: anyone else could make itself leader.
pub fn on_leader_message(t: &Tracker, peer_ip: &str, cmd: Command, body: &[u8]) -> Result<(), crate::protocol::Status> {
    let addr = decode_leader_addr(body).map_err(|_| crate::protocol::Status::EINVAL)?;
    if !is_known_tracker(t, &addr) || !is_tracker_host(t, peer_ip) {
        tracing::warn!("{peer_ip}: refused {cmd:?} naming {addr}: not a tracker of this cluster");
        return Err(crate::protocol::Status::ENOENT);
    }
    match cmd {
        Command::TrackerNotifyNextLeader => {
            *t.candidate.write_locked() = Some(addr.clone());
            // A leader told of another candidate steps down and says so (C answers EINVAL).
            if t.is_leader() && addr != t.self_addr() {
                t.set_leader(None);
                return Err(crate::protocol::Status::EINVAL);
            }
            Ok(())
        }
        _ => {
            let expected = t.candidate.read_locked().clone();
            if expected.as_deref() != Some(addr.as_str()) {
                return Err(crate::protocol::Status::EINVAL);
            }
            t.set_leader(Some(addr));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(addr: &str, is_leader: u8, running: i64, restart: i64) -> Candidate {
        Candidate {
            addr: addr.into(),
            status: TrackerStatus { is_leader, running_time: running, restart_interval: restart },
        }
    }

    #[test]
    fn ordering() {
        assert_eq!(winner(vec![c("a:1", 0, 900, 0), c("b:1", 1, 0, 0)]).unwrap().addr, "b:1", "a leader stays");
        assert_eq!(winner(vec![c("a:1", 0, 900, 0), c("b:1", 0, 300, 0)]).unwrap().addr, "a:1", "longest running");
        assert_eq!(
            winner(vec![c("a:1", 0, 300, 0), c("b:1", 0, 300, 600)]).unwrap().addr,
            "a:1",
            "shortest restart gap"
        );
        assert_eq!(winner(vec![c("a:1", 0, 300, 0), c("b:1", 0, 300, 0)]).unwrap().addr, "b:1", "greatest address");
        assert_eq!(
            winner(vec![c("127.0.0.1:22122", 0, 0, 0), c("127.0.0.10:22122", 0, 0, 0)]).unwrap().addr,
            "127.0.0.10:22122",
            "the IP compared as C's strcmp does, before the port"
        );
        assert_eq!(winner(vec![c("10.0.0.1:2", 0, 0, 0), c("10.0.0.1:10", 0, 0, 0)]).unwrap().addr, "10.0.0.1:10");
        assert_eq!(winner(vec![]), None);
    }
}
