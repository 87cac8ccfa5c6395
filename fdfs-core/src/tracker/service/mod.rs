//! One connection to the tracker: read a request, answer it, until the peer leaves. A
//! malformed request or unknown command is answered EINVAL and the connection closed; other
//! errors keep it open. A storage's report connection ending takes it OFFLINE.
//!
//! Every command has one function ([`handler`] is the table), which decodes the body once and
//! answers; they live by who sends them: `clients`, `trackers` (each other), `storages`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Tracker;
use crate::protocol::codec::expect_len;
use crate::protocol::{Command, Profile, Status};
use crate::server::answer::{self, closing, OpError, OpResult, Reply};
use crate::server::frame::{next_header, read_body, Waits};
use crate::server::{PeerStream, Shutdown};
use crate::timefmt::now_unix;

mod clients;
mod storages;
mod trackers;

use clients::{
    delete_group, delete_storage, get_leader, list_all_groups, list_one_group, list_storage, query_fetch, query_store,
    set_trunk_server, storage_cluster_stat, tracker_cluster_stat, volume_stat,
};
use storages::{
    beat, change_status, changelog, disk_usage, get_my_ip, group_name, ip_changed, join, parameters, replica_change,
    report_status, status_or_server_id, storage_ids, sync_dest_query, sync_dest_req, sync_notify, sync_report,
    sync_src_req, trunk_report,
};
use trackers::{
    join_leader, next_leader, one_sys_file, ping_leader, reselect_leader, sys_files_end, sys_files_start,
    tracker_status,
};

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

/// A command's answer: the answer type both daemons share. An error answer carries no body;
/// a malformed request closes the connection after it.
type Outcome = OpResult<Reply>;

fn ok(body: impl Into<Vec<u8>>) -> Outcome {
    Ok(Reply::Body(body.into()))
}

/// An error answer; the connection stays open.
fn err(status: Status) -> Outcome {
    Err(OpError { status, close: false })
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
                let ok = outcome.is_ok();
                tracker.metrics.request(cmd.label(), ok, started.elapsed());
                outcome
            }
            Err(code) => {
                tracing::warn!("{peer}: unknown command {code}");
                Err(closing(Status::EINVAL))
            }
        };
        if !answer::send(&mut sock, peer, header.cmd, outcome).await {
            break;
        }
    }
    if let Some((group, id)) = conn.joined {
        tracker.lock().disconnected(&group, &id);
    }
}

/// What a command's function gets: the tracker, the connection, the command (for the functions
/// that answer several) and the time the request was read.
struct Call<'a> {
    t: &'a Tracker,
    conn: &'a mut Conn,
    cmd: Command,
    now: i64,
}

impl Call<'_> {
    /// The peer's address as text (IPv4 in IPv6 unmapped), as the cluster's tables hold it.
    fn peer_ip(&self) -> String {
        self.conn.peer.ip().to_canonical().to_string()
    }

    /// The group and ID of the storage that joined on this connection, or EACCES.
    fn joined(&self) -> OpResult<(String, String)> {
        self.conn.joined.clone().ok_or(OpError { status: Status::EACCES, close: false })
    }
}

/// A command's function: decodes the body (the one place it is decoded) and answers.
type Handler = fn(&mut Call<'_>, &[u8]) -> Outcome;

/// The function that answers `cmd`; `None` for a command a tracker does not answer.
fn handler(cmd: Command) -> Option<Handler> {
    use Command as C;
    Some(match cmd {
        C::Quit => |_, _| Ok(Reply::Close),
        C::ActiveTest => |_, body| {
            expect_len(body, 0)?;
            ok(Vec::new())
        },

        // Client queries.
        C::QueryStoreWithoutGroupOne
        | C::QueryStoreWithoutGroupAll
        | C::QueryStoreWithGroupOne
        | C::QueryStoreWithGroupAll => query_store,
        C::QueryFetchOne | C::QueryUpdate | C::QueryFetchAll => query_fetch,
        C::ServerListAllGroups => list_all_groups,
        C::ServerListOneGroup => list_one_group,
        C::ServerListStorage => list_storage,
        C::ServerDeleteStorage => delete_storage,
        C::ServerDeleteGroup => delete_group,
        C::ServerGetLeader => get_leader,
        C::ServerTrackerClusterStat => tracker_cluster_stat,
        C::ServerStorageClusterStat => storage_cluster_stat,
        C::ServerStorageVolumnStat => volume_stat,
        C::ServerSetTrunkServer => set_trunk_server,

        // Trackers among themselves.
        C::TrackerGetStatus => tracker_status,
        C::TrackerNotifyReselectLeader => reselect_leader,
        C::TrackerPingLeader => ping_leader,
        C::TrackerNotifyNextLeader | C::TrackerCommitNextLeader => next_leader,
        C::TrackerJoinLeader => join_leader,
        C::TrackerGetSysFilesStart => sys_files_start,
        C::TrackerGetOneSysFile => one_sys_file,
        C::TrackerGetSysFilesEnd => sys_files_end,

        // Storages.
        C::StorageJoin => join,
        C::StorageBeat => beat,
        C::StorageReportDiskUsage => disk_usage,
        C::StorageSyncReport => sync_report,
        C::StorageChangelogReq => changelog,
        C::StorageSyncDestReq => sync_dest_req,
        C::StorageSyncDestQuery => sync_dest_query,
        C::StorageSyncNotify => sync_notify,
        C::StorageSyncSrcReq => sync_src_req,
        C::StorageReportStatus => report_status,
        C::StorageChangeStatus => change_status,
        C::StorageReplicaChg => replica_change,
        C::StorageGetStatus | C::StorageGetServerId => status_or_server_id,
        C::StorageGetMyIp => get_my_ip,
        C::StorageGetGroupName => group_name,
        C::StorageFetchStorageIds => storage_ids,
        C::StorageParameterReq => |c, body| {
            expect_len(body, 0)?;
            ok(parameters(c.t))
        },
        C::StorageReportIpChanged => ip_changed,
        C::StorageFetchTrunkFid | C::StorageReportTrunkFid | C::StorageReportTrunkFree => trunk_report,
        _ => return None,
    })
}

/// Runs `cmd`'s function on `body`.
fn dispatch(t: &Tracker, conn: &mut Conn, cmd: Command, body: &[u8]) -> Outcome {
    let Some(run) = handler(cmd) else {
        tracing::debug!("{}: command {cmd:?} not supported", conn.peer);
        return err(Status::EOPNOTSUPP);
    };
    run(&mut Call { t, conn, cmd, now: now_unix() }, body)
}
