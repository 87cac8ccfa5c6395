//! Trackers among themselves: leader election (64, 66-68), a follower's join and pings (58,
//! 65), and the state files a new tracker copies (61-63).

use crate::protocol::codec::expect_len;
use crate::protocol::leader::{JoinLeaderReq, PingLeaderReq};
use crate::protocol::{Layout, Profile, Status};
use crate::tracker::Tracker;

use super::{closing, err, from_result, ok, Call, Outcome};

/// 64 TRACKER_GET_STATUS. As C: a tracker with no groups yet is no candidate for leader
/// (ENOENT).
pub(super) fn tracker_status(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    expect_len(body, 0)?;
    if t.lock().groups.is_empty() {
        return err(Status::ENOENT);
    }
    ok(t.status().encode(t.profile).to_vec())
}

/// 68 TRACKER_NOTIFY_RESELECT_LEADER.
pub(super) fn reselect_leader(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, peer_ip) = (c.t, c.peer_ip());
    expect_len(body, 0)?;
    from_result(crate::tracker::election::on_reselect(t, &peer_ip).map(|_| Vec::new()))
}

/// 66 TRACKER_NOTIFY_NEXT_LEADER, 67 TRACKER_COMMIT_NEXT_LEADER.
pub(super) fn next_leader(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let peer_ip = c.peer_ip();
    from_result(crate::tracker::election::on_leader_message(c.t, &peer_ip, c.cmd, body).map(|_| Vec::new()))
}

/// 61 TRACKER_GET_SYS_FILES_START: the state files as they are now, kept on the connection for
/// 63 to serve from.
pub(super) fn sys_files_start(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, conn) = (c.t, &mut *c.conn);
    expect_len(body, 0)?;
    let cluster = t.lock();
    if cluster.groups.is_empty() {
        return err(Status::ENOENT);
    }
    let layout = if t.profile.layout.has_http_fields() { Layout::Classic } else { Layout::V616 };
    conn.sys_files = Some(Box::new(crate::tracker::persist::sys_files(&cluster, t.ids.ids.is_some(), layout)));
    ok(Vec::new())
}

/// 63 TRACKER_GET_ONE_SYS_FILE: file index[1] + offset[8]; the file's size, then up to 8 KiB
/// from the offset.
pub(super) fn one_sys_file(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (Some(files), Ok(req)) = (&c.conn.sys_files, <[u8; 9]>::try_from(body)) else {
        return Err(closing(Status::EINVAL));
    };
    let Some(file) = files.get(req[0] as usize) else { return err(Status::EINVAL) };
    let offset = i64::from_be_bytes(req[1..].try_into().unwrap_or_default()).clamp(0, file.len() as i64) as usize;
    let mut out = (file.len() as i64).to_be_bytes().to_vec();
    out.extend_from_slice(&file[offset..(offset + 8192).min(file.len())]);
    ok(out)
}

/// 62 TRACKER_GET_SYS_FILES_END.
pub(super) fn sys_files_end(c: &mut Call<'_>, _body: &[u8]) -> Outcome {
    c.conn.sys_files = None;
    ok(Vec::new())
}

/// 58 JOIN_LEADER (6.15.5+), as a C 6.16 leader answers it: only the leader (EOPNOTSUPP),
/// once per connection (EEXIST), from a tracker of the cluster at the port it names (ENOENT).
/// The follower's version and start time are kept for 96.
pub(super) fn join_leader(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now, conn) = (c.t, c.now, &mut *c.conn);
    if !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    let req = JoinLeaderReq::decode(body, Profile::V6_16)?;
    if conn.follower.is_some() {
        return err(Status::EEXIST);
    }
    let Ok(port) = u16::try_from(req.server_port) else { return err(Status::EINVAL) };
    let Some(follower) = crate::tracker::election::tracker_at(t, conn.peer.ip(), port) else {
        tracing::warn!("{}: JOIN_LEADER from a tracker this cluster does not know (port {port})", conn.peer);
        return err(Status::ENOENT);
    };
    t.follower_pings.joined(follower.clone(), now, req.version, req.up_time);
    conn.follower = Some(follower);
    ok(Vec::new())
}

/// 65 TRACKER_PING_LEADER: a follower tracker checks in.
pub(super) fn ping_leader(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now, conn) = (c.t, c.now, &mut *c.conn);
    let p = t.profile;

    if !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    // Classic followers ping with an empty body, 6.15.5+ with their connection counts.
    let counts = match body.len() {
        0 => None,
        _ => Some(PingLeaderReq::decode(body, p)?),
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
