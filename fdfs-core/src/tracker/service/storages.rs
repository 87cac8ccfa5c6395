//! What storages send a tracker: the join and the report connection (81, 83, 84, 89 answered
//! with change notifications), sync scheduling (77, 79, 86-88), status (59, 76, 85), who they
//! are (60, 69, 70, 71, 109), the parameters (75), an IP change (78) and trunk reports (72-74).

use crate::protocol::codec::expect_len;
use crate::protocol::report::*;
use crate::protocol::tracker::*;
use crate::protocol::{Command, Profile, Status};
use crate::tracker::Tracker;

use super::{closing, err, from_result, ok, Call, Conn, Outcome};

/// 83 STORAGE_BEAT: the storage's counters; answered with the change notifications.
pub(super) fn beat(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let stat = decode_beat(body)?;
    c.t.lock().beat(&g, &id, stat, c.now);
    ok(notifications(c.t, c.conn))
}

/// 84 STORAGE_REPORT_DISK_USAGE: space per store path (as many as the group has).
pub(super) fn disk_usage(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let paths = c.t.lock().groups.get(&g).map_or(1, |grp| grp.store_path_count);
    let u = decode_disk_usage(body, paths)?;
    c.t.lock().disk_usage(&g, &id, u, c.now);
    ok(notifications(c.t, c.conn))
}

/// 89 STORAGE_SYNC_REPORT: how far the storage has synced from each member.
pub(super) fn sync_report(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let entries = decode_sync_report(body)?;
    c.t.lock().sync_report(&g, &id, &entries);
    ok(notifications(c.t, c.conn))
}

/// 77 STORAGE_CHANGELOG_REQ: for the joined storage, or the one the body names.
pub(super) fn changelog(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let who = match decode_changelog_req(body)? {
        Some(r) => Some((r.group, r.dest_id)),
        None => c.conn.joined.clone(),
    };
    match who {
        Some((g, id)) => ok(c.t.lock().changelog_for(&g, &id)),
        None => err(Status::EACCES),
    }
}

/// 87 STORAGE_SYNC_DEST_REQ: a new storage asks which member to copy the group from.
pub(super) fn sync_dest_req(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let (t, now) = (c.t, c.now);
    expect_len(body, 0)?;
    from_result(t.lock().sync_dest_req(&g, &id, now).map(|src| sync_source_body(src, t.profile)))
}

/// 79 STORAGE_SYNC_DEST_QUERY: the member this storage copies from, if any.
pub(super) fn sync_dest_query(c: &mut Call<'_>, _body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let cluster = c.t.lock();
    let src = cluster.storage(&g, &id).filter(|s| !s.sync_src_id.is_empty());
    ok(src
        .map(|s| sync_source_body(Some((s.sync_src_id.clone(), s.sync_until_timestamp)), c.t.profile))
        .unwrap_or_default())
}

/// 88 STORAGE_SYNC_NOTIFY: the copy source a storage was given, confirmed.
pub(super) fn sync_notify(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let t = c.t;
    let s = SyncSource::decode(body, t.profile)?;
    from_result(t.lock().sync_notify(&g, &id, &s.src_id, s.until_timestamp).map(|_| Vec::new()))
}

/// 86 STORAGE_SYNC_SRC_REQ: the member a storage copies from, asked by that member.
pub(super) fn sync_src_req(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let r = SyncSrcReq::decode(body, t.profile)?;
    from_result(t.lock().sync_src_req(&r.group, &r.dest_id).map(|src| sync_source_body(src, t.profile)))
}

/// 76 STORAGE_REPORT_STATUS: a storage reports another's status (in either brief layout).
pub(super) fn report_status(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let rp = if body.len() == 16 + Profile::CLASSIC.brief_len() { Profile::CLASSIC } else { Profile::V6_16 };
    let (t, peer_ip) = (c.t, c.peer_ip());
    let r = ReportStatusReq::decode(body, rp)?;
    from_result(t.lock().report_status(&r.group, &r.brief, &peer_ip).map(|_| Vec::new()))
}

/// 59 STORAGE_CHANGE_STATUS: the joined storage's own status.
pub(super) fn change_status(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (g, id) = c.joined()?;
    let t = c.t;
    let r = ChangeStatusReq::decode(body, t.profile)?;
    t.lock().change_status(&g, &id, r.status);
    ok(Vec::new())
}

/// 85 STORAGE_REPLICA_CHG: meaningful only on followers; as leader it is answered and dropped.
pub(super) fn replica_change(_c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let rp = if body.len().is_multiple_of(Profile::CLASSIC.brief_len()) { Profile::CLASSIC } else { Profile::V6_16 };
    decode_briefs(body, rp)?;
    ok(Vec::new())
}

/// 60 STORAGE_GET_MY_IP.
pub(super) fn get_my_ip(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let req = GetMyIpReq::decode(body)?;
    ok(my_ip(c.t, c.conn, &req).into_bytes())
}

/// 72 FETCH_TRUNK_FID, 73 REPORT_TRUNK_FID, 74 REPORT_TRUNK_FREE: the group's trunk file id and
/// free trunk space; reports only from the group's trunk server.
pub(super) fn trunk_report(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, conn, cmd) = (c.t, &*c.conn, c.cmd);
    let Some((g, id)) = conn.joined.clone() else { return err(Status::EACCES) };
    let mut c = t.lock();
    let Some(group) = c.groups.get_mut(&g) else { return err(Status::ENOENT) };
    match cmd {
        Command::StorageFetchTrunkFid => match expect_len(body, 0) {
            Ok(()) => ok((group.current_trunk_file_id.clamp(0, i32::MAX as i64) as i32).to_be_bytes().to_vec()),
            Err(e) => Err(e.into()),
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
            Err(_) => Err(closing(Status::EINVAL)),
        },
        _ => match <[u8; 8]>::try_from(body) {
            Ok(b) => {
                group.trunk_free_mb = i64::from_be_bytes(b).max(0);
                ok(Vec::new())
            }
            Err(_) => Err(closing(Status::EINVAL)),
        },
    }
}

/// 78 REPORT_IP_CHANGED: group[16] + old IP + new IP (16 bytes each before 6.11, 46 after);
/// the new one must be the address the request comes from. Not with storage IDs (C neither).
pub(super) fn ip_changed(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now, conn) = (c.t, c.now, &*c.conn);
    if t.ids.ids.is_some() {
        return err(Status::EOPNOTSUPP);
    }
    let width = match body.len().checked_sub(16).map(|n| n / 2) {
        Some(w @ (16 | 46)) if body.len() == 16 + 2 * w => w,
        _ => return Err(closing(Status::EINVAL)),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned();
    let (group, old, new) = (text(&body[..16]), text(&body[16..16 + width]), text(&body[16 + width..]));
    let peer = conn.peer.ip().to_canonical().to_string();
    if new != peer || !crate::protocol::is_safe_token(&old) || old.parse::<std::net::IpAddr>().is_err() {
        return err(Status::EINVAL);
    }
    from_result(t.lock().ip_changed(&group, &old, &new, now).map(|()| Vec::new()))
}

/// 81 STORAGE_JOIN, in whichever generation the storage speaks (found from the body's shape).
pub(super) fn join(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now, conn) = (c.t, c.now, &mut *c.conn);
    let p = t.profile;

    let Some(layout) = JoinReq::detect(body) else {
        return Err(closing(Status::EINVAL));
    };
    let jp = Profile::of(layout, false);
    let req = JoinReq::decode(body, jp)?;
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
pub(super) fn status_or_server_id(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, cmd, conn) = (c.t, c.cmd, &*c.conn);
    use Command as C;

    let req = StorageLookupReq::decode(body)?;
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
            let private = |h: &String| h.parse().is_ok_and(|ip| crate::tracker::state::is_private(&ip));
            let (mut inner, outer): (Vec<&String>, Vec<&String>) = e.hosts.iter().partition(|h| private(h));
            inner.extend(outer);
            inner.into_iter().map(String::as_str).collect::<Vec<_>>().join(",")
        }
        None => peer,
    }
}

/// 109 STORAGE_GET_GROUP_NAME: the group storage_ids.conf gives an address.
pub(super) fn group_name(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, conn) = (c.t, &*c.conn);
    let req = GetGroupNameReq::decode(body)?;
    let Some(ids) = &t.ids.ids else { return err(Status::EOPNOTSUPP) };
    let ip = if req.ip.is_empty() { conn.peer.ip().to_canonical().to_string() } else { req.ip };
    match ids.find_any_group(&ip, req.port as u16) {
        Some(e) => ok(GroupReq { group: e.group.clone() }.encode().to_vec()),
        None => err(Status::ENOENT),
    }
}

/// 69 STORAGE_FETCH_STORAGE_IDS: storage_ids.conf, a page at a time.
pub(super) fn storage_ids(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let req = FetchStorageIdsReq::decode(body)?;
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
            n.leader = Some(Brief { status: crate::protocol::status::INIT, port: port as i32, id: ip.clone(), ip });
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
pub(super) fn parameters(t: &Tracker) -> Vec<u8> {
    t.config.parameters(t.profile.response_ip_size).encode()
}
