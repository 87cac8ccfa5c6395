//! One connection to the tracker: read a request, answer it, until the peer leaves. A
//! malformed request or unknown command is answered EINVAL and the connection closed; other
//! errors keep it open. A storage's report connection ending takes it OFFLINE.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{cluster_stat, select, Tracker};
use crate::file_id::RemoteFilename;
use crate::protocol::codec::expect_len;
use crate::protocol::leader::{JoinLeaderReq, PingLeaderReq};
use crate::protocol::report::*;
use crate::protocol::stat::{GroupStat, StorageStat};
use crate::protocol::tracker::*;
use crate::protocol::{Command, DecodeError, Layout, Profile, Status};
use crate::server::frame::{next_header, read_body, write_answer, Waits};
use crate::server::{PeerStream, Shutdown};
use crate::timefmt::now_unix;

/// What a connection remembers between requests.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    local: Option<SocketAddr>,
    /// Set by a successful JOIN: (group, storage id).
    joined: Option<(String, String)>,
    /// The joined storage's layout (told by its JOIN body), used for briefs sent back to it.
    profile: Profile,
    /// Group change counter last pushed to this storage.
    sent_counter: Option<u64>,
    /// Leader epoch last announced to this storage.
    leader_sent: Option<u64>,
    /// Trunk-server epoch of its group last announced to this storage.
    trunk_sent: Option<u64>,
    /// The state files as 61 GET_SYS_FILES_START found them, for 63 to serve from.
    sys_files: Option<Box<[Vec<u8>; 4]>>,
    /// The trunk servers last told to the follower on this connection (65).
    trunk_servers_told: Option<Vec<u8>>,
    /// The follower (`ip:port` in the tracker list) that joined this leader on this
    /// connection (58); its pings are kept under that name.
    follower: Option<String>,
}

enum Outcome {
    Answer(Status, Vec<u8>),
    /// Answer, then close (malformed input).
    AnswerClose(Status),
    /// QUIT: no answer.
    Quit,
}

impl From<DecodeError> for Outcome {
    fn from(e: DecodeError) -> Self {
        tracing::debug!("malformed request: {e}");
        Outcome::AnswerClose(Status::EINVAL)
    }
}

fn ok(body: impl Into<Vec<u8>>) -> Outcome {
    Outcome::Answer(Status::OK, body.into())
}

fn err(s: Status) -> Outcome {
    Outcome::Answer(s, Vec::new())
}

fn from_result(r: Result<Vec<u8>, Status>) -> Outcome {
    match r {
        Ok(b) => ok(b),
        Err(s) => err(s),
    }
}

pub(super) async fn handle(tracker: Arc<Tracker>, mut sock: PeerStream, peer: SocketAddr, mut shutdown: Shutdown) {
    let mut conn = Conn {
        peer,
        local: sock.local_addr().ok(),
        joined: None,
        profile: tracker.profile,
        sent_counter: None,
        leader_sent: None,
        trunk_sent: None,
        sys_files: None,
        trunk_servers_told: None,
        follower: None,
    };
    let waits = Waits::from_network_timeout(tracker.config.network_timeout);
    let max_body = tracker.config.max_buff_size.max(8 << 10);
    let mut served = 0u64;
    loop {
        let Some(header) = next_header(&mut sock, peer, &mut shutdown, waits, served, max_body).await else { break };
        served += 1;
        let body = match read_body(&mut sock, header.pkg_len, waits.network).await {
            Ok(b) => b,
            Err(_) => break,
        };
        let outcome = match Command::try_from(header.cmd) {
            Ok(cmd) => {
                let started = std::time::Instant::now();
                if cmd == Command::StorageJoin {
                    // A tracker that starts empty next to others copies their state first.
                    super::bootstrap::before_join(&tracker, &body).await;
                }
                let outcome = dispatch(&tracker, &mut conn, cmd, &body);
                let ok = matches!(outcome, Outcome::Answer(s, _) if s.is_ok()) || matches!(outcome, Outcome::Quit);
                tracker.metrics.request(cmd.label(), ok, started.elapsed());
                outcome
            }
            Err(code) => {
                tracing::warn!("{peer}: unknown command {code}");
                Outcome::AnswerClose(Status::EINVAL)
            }
        };
        match outcome {
            Outcome::Answer(status, body) => {
                if write_answer(&mut sock, status, &body).await.is_err() {
                    break;
                }
            }
            Outcome::AnswerClose(status) => {
                let _ = write_answer(&mut sock, status, &[]).await;
                break;
            }
            Outcome::Quit => break,
        }
    }
    if let Some((group, id)) = conn.joined {
        tracker.lock().disconnected(&group, &id);
    }
}

fn dispatch(t: &Tracker, conn: &mut Conn, cmd: Command, body: &[u8]) -> Outcome {
    use Command as C;
    let now = now_unix();
    let p = t.profile;
    match cmd {
        C::Quit => Outcome::Quit,
        C::ActiveTest => match expect_len(body, 0) {
            Ok(()) => ok(Vec::new()),
            Err(e) => e.into(),
        },

        // Client queries.
        C::QueryStoreWithoutGroupOne
        | C::QueryStoreWithoutGroupAll
        | C::QueryStoreWithGroupOne
        | C::QueryStoreWithGroupAll => query_store(t, conn.peer.ip().to_canonical(), cmd, body),
        C::QueryFetchOne | C::QueryUpdate | C::QueryFetchAll => {
            query_fetch(t, conn.peer.ip().to_canonical(), cmd, body, now)
        }
        C::ServerListAllGroups => {
            if let Err(e) = expect_len(body, 0) {
                return e.into();
            }
            let c = t.lock();
            let stats: Vec<GroupStat> = c.groups.values().map(|g| group_stat(t, g)).collect();
            ok(GroupStat::encode_list(&stats, p).to_vec())
        }
        C::ServerListOneGroup => {
            let req = match GroupReq::decode(body) {
                Ok(r) => r,
                Err(e) => return e.into(),
            };
            let c = t.lock();
            match c.groups.get(&req.group) {
                Some(g) => ok(GroupStat::encode_list(&[group_stat(t, g)], p).to_vec()),
                None => err(Status::ENOENT),
            }
        }
        C::ServerListStorage => list_storage(t, body),
        C::ServerDeleteStorage => match GroupStorageReq::decode_with_id(body) {
            Ok(r) => from_result(
                t.lock().delete_storage(&r.group, r.storage_id.as_deref().unwrap_or(""), now).map(|_| Vec::new()),
            ),
            Err(e) => e.into(),
        },
        C::ServerDeleteGroup => match GroupReq::decode(body) {
            Ok(r) => from_result(t.lock().delete_group(&r.group).map(|_| Vec::new())),
            Err(e) => e.into(),
        },
        C::ServerGetLeader => match t.leader.read().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(l) => ok(l.into_bytes()),
            None => err(Status::ENOENT),
        },
        // As C: a tracker with no groups yet is no candidate for leader (ENOENT).
        C::TrackerGetStatus => match expect_len(body, 0) {
            Ok(()) if t.lock().groups.is_empty() => err(Status::ENOENT),
            Ok(()) => ok(t.status().encode(p).to_vec()),
            Err(e) => e.into(),
        },
        C::TrackerNotifyReselectLeader => match expect_len(body, 0) {
            Ok(()) => {
                let peer_ip = conn.peer.ip().to_canonical().to_string();
                from_result(super::election::on_reselect(t, &peer_ip).map(|_| Vec::new()))
            }
            Err(e) => e.into(),
        },
        C::TrackerPingLeader => ping_leader(t, conn, body, now),
        C::ServerTrackerClusterStat => match TrackerClusterStatReq::decode(body, p) {
            Ok(req) => from_result(cluster_stat::trackers(t, &req, now).map(|s| s.encode().to_vec())),
            Err(e) => e.into(),
        },
        C::ServerStorageClusterStat => match StorageClusterStatReq::decode(body, p) {
            Ok(req) => ok(cluster_stat::storages(t, &req).encode().to_vec()),
            Err(e) => e.into(),
        },
        C::ServerStorageVolumnStat => match VolumeStatReq::decode(body, p) {
            Ok(req) => ok(cluster_stat::volumes(t, &req).encode().to_vec()),
            Err(e) => e.into(),
        },
        C::TrackerNotifyNextLeader | C::TrackerCommitNextLeader => {
            let peer_ip = conn.peer.ip().to_canonical().to_string();
            from_result(super::election::on_leader_message(t, &peer_ip, cmd, body).map(|_| Vec::new()))
        }

        // Storage side.
        C::StorageJoin => join(t, conn, body, now),
        C::StorageBeat => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            match decode_beat(body) {
                Ok(stat) => {
                    t.lock().beat(&g, &id, stat, now);
                    ok(notifications(t, conn))
                }
                Err(e) => e.into(),
            }
        }
        C::StorageReportDiskUsage => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            let paths = t.lock().groups.get(&g).map_or(1, |grp| grp.store_path_count);
            match decode_disk_usage(body, paths) {
                Ok(u) => {
                    t.lock().disk_usage(&g, &id, u, now);
                    ok(notifications(t, conn))
                }
                Err(e) => e.into(),
            }
        }
        C::StorageSyncReport => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            match decode_sync_report(body) {
                Ok(entries) => {
                    t.lock().sync_report(&g, &id, &entries);
                    ok(notifications(t, conn))
                }
                Err(e) => e.into(),
            }
        }
        C::StorageChangelogReq => {
            let who = match decode_changelog_req(body) {
                Ok(Some(r)) => Some((r.group, r.dest_id)),
                Ok(None) => conn.joined.clone(),
                Err(e) => return e.into(),
            };
            match who {
                Some((g, id)) => ok(t.lock().changelog_for(&g, &id)),
                None => err(Status::EACCES),
            }
        }
        C::StorageSyncDestReq => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            if let Err(e) = expect_len(body, 0) {
                return e.into();
            }
            from_result(t.lock().sync_dest_req(&g, &id, now).map(|src| sync_source_body(src, p)))
        }
        C::StorageSyncDestQuery => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            let c = t.lock();
            let s = c.storage(&g, &id);
            ok(s.filter(|s| !s.sync_src_id.is_empty())
                .map(|s| sync_source_body(Some((s.sync_src_id.clone(), s.sync_until_timestamp)), p))
                .unwrap_or_default())
        }
        C::StorageSyncNotify => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            match SyncSource::decode(body, p) {
                Ok(s) => from_result(t.lock().sync_notify(&g, &id, &s.src_id, s.until_timestamp).map(|_| Vec::new())),
                Err(e) => e.into(),
            }
        }
        C::StorageSyncSrcReq => match SyncSrcReq::decode(body, p) {
            Ok(r) => from_result(t.lock().sync_src_req(&r.group, &r.dest_id).map(|src| sync_source_body(src, p))),
            Err(e) => e.into(),
        },
        C::StorageReportStatus => {
            let rp = if body.len() == 16 + Profile::CLASSIC.brief_len() { Profile::CLASSIC } else { Profile::V6_16 };
            let peer_ip = conn.peer.ip().to_canonical().to_string();
            match ReportStatusReq::decode(body, rp) {
                Ok(r) => from_result(t.lock().report_status(&r.group, &r.brief, &peer_ip).map(|_| Vec::new())),
                Err(e) => e.into(),
            }
        }
        C::StorageChangeStatus => {
            let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
            match ChangeStatusReq::decode(body, p) {
                Ok(r) => {
                    t.lock().change_status(&g, &id, r.status);
                    ok(Vec::new())
                }
                Err(e) => e.into(),
            }
        }
        C::StorageReplicaChg => {
            // Only meaningful on non-leaders; as leader we answer and ignore it.
            let rp =
                if body.len().is_multiple_of(Profile::CLASSIC.brief_len()) { Profile::CLASSIC } else { Profile::V6_16 };
            match decode_briefs(body, rp) {
                Ok(_) => ok(Vec::new()),
                Err(e) => e.into(),
            }
        }
        C::StorageGetStatus | C::StorageGetServerId => status_or_server_id(t, conn, cmd, body),
        C::StorageGetMyIp => match GetMyIpReq::decode(body) {
            Ok(req) => ok(my_ip(t, conn, &req).into_bytes()),
            Err(e) => e.into(),
        },
        C::StorageGetGroupName => group_name(t, conn, body),
        C::StorageFetchStorageIds => storage_ids(t, body),
        C::StorageParameterReq => match expect_len(body, 0) {
            Ok(()) => ok(parameters(t)),
            Err(e) => e.into(),
        },
        C::StorageReportIpChanged => ip_changed(t, conn, body, now),
        C::TrackerGetSysFilesStart => match expect_len(body, 0) {
            Ok(()) => {
                let c = t.lock();
                if c.groups.is_empty() {
                    return err(Status::ENOENT);
                }
                let layout = if t.profile.layout.has_http_fields() { Layout::Classic } else { Layout::V616 };
                conn.sys_files = Some(Box::new(super::persist::sys_files(&c, t.ids.ids.is_some(), layout)));
                ok(Vec::new())
            }
            Err(e) => e.into(),
        },
        C::TrackerGetOneSysFile => {
            let (Some(files), Ok(req)) = (&conn.sys_files, <[u8; 9]>::try_from(body)) else {
                return Outcome::AnswerClose(Status::EINVAL);
            };
            let Some(file) = files.get(req[0] as usize) else { return err(Status::EINVAL) };
            let offset =
                i64::from_be_bytes(req[1..].try_into().unwrap_or_default()).clamp(0, file.len() as i64) as usize;
            let mut out = (file.len() as i64).to_be_bytes().to_vec();
            out.extend_from_slice(&file[offset..(offset + 8192).min(file.len())]);
            ok(out)
        }
        C::TrackerGetSysFilesEnd => {
            conn.sys_files = None;
            ok(Vec::new())
        }
        C::TrackerJoinLeader => join_leader(t, conn, body, now),
        C::StorageFetchTrunkFid | C::StorageReportTrunkFid | C::StorageReportTrunkFree => {
            trunk_report(t, conn, cmd, body)
        }
        C::ServerSetTrunkServer => set_trunk_server(t, body),

        _ => {
            tracing::debug!("{}: command {cmd:?} not supported", conn.peer);
            err(Status::EOPNOTSUPP)
        }
    }
}

/// 72 FETCH_TRUNK_FID, 73 REPORT_TRUNK_FID, 74 REPORT_TRUNK_FREE: the group's trunk file id and
/// free trunk space; reports only from the group's trunk server.
fn trunk_report(t: &Tracker, conn: &Conn, cmd: Command, body: &[u8]) -> Outcome {
    let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
    let mut c = t.lock();
    let Some(group) = c.groups.get_mut(&g) else { return err(Status::ENOENT) };
    match cmd {
        Command::StorageFetchTrunkFid => match expect_len(body, 0) {
            Ok(()) => ok((group.current_trunk_file_id.clamp(0, i32::MAX as i64) as i32).to_be_bytes().to_vec()),
            Err(e) => e.into(),
        },
        _ if group.trunk_server != id => err(Status::EINVAL),
        Command::StorageReportTrunkFid => match <[u8; 4]>::try_from(body) {
            Ok(b) => {
                let fid = i32::from_be_bytes(b) as i64;
                if fid > group.current_trunk_file_id {
                    group.current_trunk_file_id = fid;
                    c.dirty = true;
                }
                ok(Vec::new())
            }
            Err(_) => Outcome::AnswerClose(Status::EINVAL),
        },
        _ => match <[u8; 8]>::try_from(body) {
            Ok(b) => {
                group.trunk_free_mb = i64::from_be_bytes(b).max(0);
                ok(Vec::new())
            }
            Err(_) => Outcome::AnswerClose(Status::EINVAL),
        },
    }
}

/// 94 SERVER_SET_TRUNK_SERVER (`fdfs_monitor … set_trunk_server`), with C 6.16.1's answers
/// (captured): an empty ID asks who it is; EALREADY if the named storage already is; EEXIST
/// while another storage is the ACTIVE trunk server; ENOENT, ENONET, EACCES for a storage
/// unknown, not ACTIVE, not writable. The answer is the ID and a NUL.
fn set_trunk_server(t: &Tracker, body: &[u8]) -> Outcome {
    if !t.config.use_trunk_file || !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    if body.len() < 16 || body.len() > 16 + 16 {
        return Outcome::AnswerClose(Status::EINVAL);
    }
    let group = String::from_utf8_lossy(&body[..16]).trim_end_matches('\0').to_owned();
    let id = String::from_utf8_lossy(&body[16..]).trim_end_matches('\0').to_owned();
    let new = {
        let mut c = t.lock();
        let Some(g) = c.groups.get_mut(&group) else { return err(Status::ENOENT) };
        if id.is_empty() {
            if g.trunk_server.is_empty() {
                return err(Status::ENOENT);
            }
            return ok(encode_trunk_server_id(&g.trunk_server).to_vec());
        }
        let Some(s) = g.storages.get(&id) else { return err(Status::ENOENT) };
        if g.trunk_server == id {
            return err(Status::EALREADY);
        }
        if s.status != crate::protocol::status::ACTIVE {
            return err(Status::ENONET);
        }
        if !s.writable() {
            return err(Status::EACCES);
        }
        if g.storages.get(&g.trunk_server).is_some_and(|cur| cur.status == crate::protocol::status::ACTIVE) {
            return err(Status::EEXIST);
        }
        let target = (s.ip.clone(), s.storage_port);
        g.set_trunk_server(&id);
        c.dirty = true;
        target
    };
    // The new trunk server pushes its whole trunk binlog to the others.
    tokio::spawn(super::trunk::tell_storage(
        t.config.connect_timeout,
        t.config.network_timeout,
        new,
        Command::TrunkDeleteBinlogMarks,
    ));
    ok(encode_trunk_server_id(&id).to_vec())
}

/// 101-107 QUERY_STORE_*: where an upload goes.
fn query_store(t: &Tracker, client: std::net::IpAddr, cmd: Command, body: &[u8]) -> Outcome {
    use Command as C;
    let p = t.profile;

    let with_group = matches!(cmd, C::QueryStoreWithGroupOne | C::QueryStoreWithGroupAll);
    let all = matches!(cmd, C::QueryStoreWithoutGroupAll | C::QueryStoreWithGroupAll);
    let group = if with_group {
        match GroupReq::decode(body) {
            Ok(g) => Some(g.group),
            Err(e) => return e.into(),
        }
    } else {
        if let Err(e) = expect_len(body, 0) {
            return e.into();
        }
        None
    };
    let target = select::store(&mut t.lock(), &t.policy, &t.config.store_group, group.as_deref(), all);
    from_result(target.map(|tg| {
        let servers: Vec<ServerAddr> = tg
            .servers
            .iter()
            .map(|(ip, port)| ServerAddr { ip: t.ids.for_client(ip, client), port: *port as i64 })
            .collect();
        if all {
            StoreTargets { group: tg.group, servers, store_path_index: tg.store_path_index }.encode(p).to_vec()
        } else {
            let s = &servers[0];
            StoreTarget { group: tg.group, ip: s.ip.clone(), port: s.port, store_path_index: tg.store_path_index }
                .encode(p)
                .to_vec()
        }
    }))
}

/// 102/103/105 QUERY_FETCH_ONE / QUERY_UPDATE / QUERY_FETCH_ALL: who serves a file.
fn query_fetch(t: &Tracker, client: std::net::IpAddr, cmd: Command, body: &[u8], now: i64) -> Outcome {
    use Command as C;
    let p = t.profile;

    let req = match FileReq::decode(body) {
        Ok(r) if r.filename.len() >= 22 => r,
        Ok(_) => return Outcome::AnswerClose(Status::EINVAL),
        Err(e) => return e.into(),
    };
    let Ok(name) = RemoteFilename::parse(&req.filename, None) else {
        return err(Status::EINVAL);
    };
    let info = name.info();
    let r =
        select::fetch(&mut t.lock(), &t.policy, &req.group, &info, cmd == C::QueryUpdate, cmd == C::QueryFetchAll, now);
    from_result(r.map(|servers| {
        let list: Vec<ServerAddr> = servers
            .iter()
            .map(|(ip, port)| ServerAddr { ip: t.ids.for_client(ip, client), port: *port as i64 })
            .collect();
        if cmd == C::QueryFetchAll {
            FetchTargets { group: req.group.clone(), servers: list }.encode(p).to_vec()
        } else {
            FetchTarget { group: req.group.clone(), ip: list[0].ip.clone(), port: list[0].port }.encode(p).to_vec()
        }
    }))
}

/// 92 SERVER_LIST_STORAGE: one group's storages, or one of them.
fn list_storage(t: &Tracker, body: &[u8]) -> Outcome {
    let p = t.profile;

    let req = match GroupStorageReq::decode(body) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let c = t.lock();
    let Some(g) = c.groups.get(&req.group) else { return err(Status::ENOENT) };
    let list: Vec<StorageStat> = g
        .storages
        .values()
        .filter(|s| req.storage_id.as_ref().is_none_or(|id| *id == s.id))
        .map(|s| StorageStat { if_trunk_server: g.trunk_server == s.id, ..s.stat_record(reserved_mb(t, s.total_mb)) })
        .collect();
    if list.is_empty() && req.storage_id.is_some() {
        return err(Status::ENOENT);
    }
    ok(StorageStat::encode_list(&list, p).to_vec())
}

/// 58 JOIN_LEADER (6.15.5+), as a C 6.16 leader answers it: only the leader (EOPNOTSUPP),
/// once per connection (EEXIST), from a tracker of the cluster at the port it names (ENOENT).
/// The follower's version and start time are kept for 96.
fn join_leader(t: &Tracker, conn: &mut Conn, body: &[u8], now: i64) -> Outcome {
    if !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    let req = match JoinLeaderReq::decode(body, Profile::V6_16) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    if conn.follower.is_some() {
        return err(Status::EEXIST);
    }
    let Ok(port) = u16::try_from(req.server_port) else { return err(Status::EINVAL) };
    let Some(follower) = super::election::tracker_at(t, conn.peer.ip(), port) else {
        tracing::warn!("{}: JOIN_LEADER from a tracker this cluster does not know (port {port})", conn.peer);
        return err(Status::ENOENT);
    };
    t.follower_pings.joined(follower.clone(), now, req.version, req.up_time);
    conn.follower = Some(follower);
    ok(Vec::new())
}

/// 65 TRACKER_PING_LEADER: a follower tracker checks in.
fn ping_leader(t: &Tracker, conn: &mut Conn, body: &[u8], now: i64) -> Outcome {
    let p = t.profile;

    if !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    // Classic followers ping with an empty body, 6.15.5+ with their connection counts.
    let counts = match body.len() {
        0 => None,
        _ => match PingLeaderReq::decode(body, p) {
            Ok(c) => Some(c),
            Err(e) => return e.into(),
        },
    };
    // Under the name it joined with (58), else (a classic follower) its address.
    let who = conn.follower.clone().unwrap_or_else(|| conn.peer.ip().to_canonical().to_string());
    t.follower_pings.record(who, now, counts);
    // As C: the list once per connection, then only when it changed (an empty answer).
    let list = trunk_servers_body(t);
    if conn.trunk_servers_told.as_ref() == Some(&list) {
        return ok(Vec::new());
    }
    conn.trunk_servers_told = Some(list.clone());
    ok(list)
}

/// 78 REPORT_IP_CHANGED: group[16] + old IP + new IP (16 bytes each before 6.11, 46 after);
/// the new one must be the address the request comes from. Not with storage IDs (C neither).
fn ip_changed(t: &Tracker, conn: &Conn, body: &[u8], now: i64) -> Outcome {
    if t.ids.ids.is_some() {
        return err(Status::EOPNOTSUPP);
    }
    let width = match body.len().checked_sub(16).map(|n| n / 2) {
        Some(w @ (16 | 46)) if body.len() == 16 + 2 * w => w,
        _ => return Outcome::AnswerClose(Status::EINVAL),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned();
    let (group, old, new) = (text(&body[..16]), text(&body[16..16 + width]), text(&body[16 + width..]));
    let peer = conn.peer.ip().to_canonical().to_string();
    if new != peer || !crate::protocol::is_safe_token(&old) || old.parse::<std::net::IpAddr>().is_err() {
        return err(Status::EINVAL);
    }
    from_result(t.lock().ip_changed(&group, &old, &new, now).map(|()| Vec::new()))
}

/// The trunk server of every group for a follower (65's answer): group[16] + ID[16] each, an
/// empty ID for none; listed with or without trunk files, as C lists them.
fn trunk_servers_body(t: &Tracker) -> Vec<u8> {
    let c = t.lock();
    let mut out = Vec::with_capacity(c.groups.len() * 32);
    for g in c.groups.values() {
        for text in [&g.name, &g.trunk_server] {
            let mut field = [0u8; 16];
            let n = text.len().min(16);
            field[..n].copy_from_slice(&text.as_bytes()[..n]);
            out.extend_from_slice(&field);
        }
    }
    out
}

/// 81 STORAGE_JOIN, in whichever generation the storage speaks (found from the body's shape).
fn join(t: &Tracker, conn: &mut Conn, body: &[u8], now: i64) -> Outcome {
    let p = t.profile;

    let Some(layout) = JoinReq::detect(body) else {
        return Outcome::AnswerClose(Status::EINVAL);
    };
    let jp = Profile::of(layout, false);
    let req = match JoinReq::decode(body, jp) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let peer_ip = conn.peer.ip().to_canonical().to_string();
    let joined = {
        let mut c = t.lock();
        let j = c.join(&req, &peer_ip, &t.ids, &t.limits, now);
        if let Some(s) = j.as_ref().ok().and_then(|j| c.storage_mut(&j.group, &j.id)) {
            s.layout = Some(layout);
        }
        j
    };
    match joined {
        Ok(j) => {
            // The address this storage reached us at is ours, whatever our interfaces say (as
            // C: the socket's local address, and the one the storage dialled, which differs
            // behind NAT).
            if let Some(local) = conn.local {
                t.learn_own_ip(&local.ip().to_canonical().to_string());
            }
            t.learn_own_ip(&req.current_tracker_ip);
            if let Some((g, id)) = conn.joined.take() {
                // A second JOIN on one connection replaces the first.
                t.lock().disconnected(&g, &id);
            }
            conn.joined = Some((j.group.clone(), j.id.clone()));
            if conn.profile != jp {
                tracing::info!("{}: storage {} speaks FastDFS {layout}", conn.peer, j.id);
            }
            conn.profile = jp;
            conn.sent_counter = None;
            ok(JoinResp { status: j.status, sync_src_id: j.sync_src_id }.encode(p).to_vec())
        }
        Err(s) => err(s),
    }
}

/// 71 STORAGE_GET_STATUS / 70 STORAGE_GET_SERVER_ID: a storage asks about itself on a
/// short connection.
fn status_or_server_id(t: &Tracker, conn: &Conn, cmd: Command, body: &[u8]) -> Outcome {
    use Command as C;

    let req = match StorageLookupReq::decode(body) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let peer_ip = conn.peer.ip().to_canonical().to_string();
    let (ip, port) = split_addr(&req.addr, &peer_ip);
    let c = t.lock();
    // The group may not exist yet: a new storage asks for its ID before its first JOIN.
    let found = c
        .groups
        .get(&req.group)
        .and_then(|g| g.storages.values().find(|s| s.ip == ip && port.is_none_or(|p| p == s.storage_port)));
    match (cmd, found) {
        // A short connection without a JOIN: answer in the generation the storage
        // announced with its version text.
        (C::StorageGetStatus, Some(s)) => ok(s.brief().encode(s.profile()).to_vec()),
        (C::StorageGetServerId, Some(s)) => ok(s.id.clone().into_bytes()),
        (C::StorageGetServerId, None) => match &t.ids.ids {
            None => ok(ip.into_bytes()),
            // A storage that has not joined yet learns its ID from the table (C does the
            // same for storages whose storage.conf has no server_id).
            Some(table) => match table.find_addr(&req.group, &ip, port) {
                Some(e) => ok(e.id.to_string().into_bytes()),
                None => err(Status::ENOENT),
            },
        },
        _ => err(Status::ENOENT),
    }
}

/// 60 GET_MY_IP: the address the storage connects from; in storage-ID mode, as C 6.16.1
/// answers, every address its storage_ids.conf entry lists, private (inner) ones first
/// (`inner,outer`), so a storage behind two networks learns both.
fn my_ip(t: &Tracker, conn: &Conn, req: &GetMyIpReq) -> String {
    let peer = conn.peer.ip().to_canonical().to_string();
    let port = u16::try_from(req.port).ok().filter(|p| *p > 0);
    match t.ids.ids.as_ref().and_then(|ids| ids.find_addr(&req.group, &peer, port)) {
        Some(e) => {
            let private = |h: &String| h.parse().is_ok_and(|ip| super::state::is_private(&ip));
            let (mut inner, outer): (Vec<&String>, Vec<&String>) = e.hosts.iter().partition(|h| private(h));
            inner.extend(outer);
            inner.into_iter().map(String::as_str).collect::<Vec<_>>().join(",")
        }
        None => peer,
    }
}

/// 109 STORAGE_GET_GROUP_NAME: the group storage_ids.conf gives an address.
fn group_name(t: &Tracker, conn: &Conn, body: &[u8]) -> Outcome {
    let req = match GetGroupNameReq::decode(body) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let Some(ids) = &t.ids.ids else { return err(Status::EOPNOTSUPP) };
    let ip = if req.ip.is_empty() { conn.peer.ip().to_canonical().to_string() } else { req.ip };
    match ids.find_any_group(&ip, req.port as u16) {
        Some(e) => ok(GroupReq { group: e.group.clone() }.encode().to_vec()),
        None => err(Status::ENOENT),
    }
}

/// 69 STORAGE_FETCH_STORAGE_IDS: storage_ids.conf, a page at a time.
fn storage_ids(t: &Tracker, body: &[u8]) -> Outcome {
    let req = match FetchStorageIdsReq::decode(body) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    match &t.ids.ids {
        None if req.allow_empty => ok(vec![0u8; 8]),
        None => err(Status::EOPNOTSUPP),
        Some(ids) => {
            let start = req.start_index as usize;
            if start > ids.entries.len() {
                return err(Status::EINVAL);
            }
            let mut lines = Vec::new();
            let mut size = 8;
            for e in &ids.entries[start..] {
                let l = e.to_line();
                if size + l.len() + 1 > 8 << 10 {
                    break;
                }
                size += l.len() + 1;
                lines.push(l);
            }
            ok(StorageIdsPage { total: ids.entries.len() as i32, lines }.encode().to_vec())
        }
    }
}

/// A group's line of 90/91. Without trunk files the trunk file id is -1, as C 6.16.1 answers:
/// its `fdfs_monitor` prints the trunk lines only for an id of 0 or more.
fn group_stat(t: &Tracker, g: &super::state::Group) -> GroupStat {
    let mut stat = g.stat(reserved_mb(t, g.space().0));
    if !t.config.use_trunk_file {
        stat.current_trunk_file_id = -1;
    }
    stat
}

fn reserved_mb(t: &Tracker, total_mb: i64) -> i64 {
    t.config.reserved_storage_space.reserved_mb(total_mb)
}

fn sync_source_body(src: Option<(String, i64)>, p: Profile) -> Vec<u8> {
    src.map(|(src_id, until_timestamp)| SyncSource { src_id, until_timestamp }.encode(p).to_vec()).unwrap_or_default()
}

/// `ip` or `ip:port` (IPv6 bracketed); empty means the peer's address.
fn split_addr(addr: &str, peer_ip: &str) -> (String, Option<u16>) {
    if addr.is_empty() {
        return (peer_ip.to_owned(), None);
    }
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once("]:") {
            return (ip.to_owned(), port.parse().ok());
        }
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip.to_owned(), port.parse().ok()),
        _ => (addr.to_owned(), None),
    }
}

/// The change-notification answer to BEAT, DISK_USAGE and SYNC_REPORT (§3.6.3): a follower
/// sends one zero byte; the leader announces itself once per connection (and after a change),
/// and the group's briefs whenever the group changed since this connection last heard. A
/// tracker that knows of no other tracker is its own leader.
fn notifications(t: &Tracker, conn: &mut Conn) -> Vec<u8> {
    let Some((group, _)) = &conn.joined else { return vec![0] };
    let alone = t.lock().trackers.len() <= 1;
    if !alone && !t.is_leader() {
        return vec![0];
    }
    let epoch = t.leader_epoch.load(std::sync::atomic::Ordering::Relaxed);
    let c = t.lock();
    let Some(g) = c.groups.get(group) else { return vec![0] };
    let mut n = ChangeNotify::default();
    if conn.leader_sent != Some(epoch) {
        if let Some(local) = conn.local {
            let ip = local.ip().to_canonical().to_string();
            let port = t.port.load(std::sync::atomic::Ordering::Relaxed);
            n.leader = Some(Brief { status: 0, port: port as i32, id: ip.clone(), ip });
        }
        conn.leader_sent = Some(epoch);
    }
    if t.config.use_trunk_file && conn.trunk_sent != Some(g.trunk_epoch) {
        if let Some(b) = g.trunk_brief() {
            n.trunk = Some(b);
            conn.trunk_sent = Some(g.trunk_epoch);
        }
    }
    if conn.sent_counter != Some(g.change_counter) {
        n.group = Some(g.briefs());
        conn.sent_counter = Some(g.change_counter);
    }
    n.encode(conn.profile).to_vec()
}

/// 75: the cluster-wide settings storages and clients read at start.
fn parameters(t: &Tracker) -> Vec<u8> {
    t.config.parameters(t.profile.response_ip_size).encode()
}
