//! What clients and `fdfs_monitor` ask a tracker: where to upload or download (101-107), the
//! groups and storages (90-93, 108), the leader, the cluster's stats (96-98), and the trunk
//! server set by hand (94).

use crate::file_id::RemoteFilename;
use crate::locked::RwLockExt;
use crate::protocol::codec::expect_len;
use crate::protocol::stat::{GroupStat, StorageStat};
use crate::protocol::tracker::*;
use crate::protocol::{Command, Status};
use crate::tracker::{cluster_stat, select, Tracker};

use super::{closing, err, from_result, ok, Call, Outcome};

/// 91 SERVER_LIST_ALL_GROUPS.
pub(super) fn list_all_groups(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    expect_len(body, 0)?;
    let stats: Vec<GroupStat> = t.lock().groups.values().map(|g| group_stat(t, g)).collect();
    ok(GroupStat::encode_list(&stats, t.profile).to_vec())
}

/// 90 SERVER_LIST_ONE_GROUP.
pub(super) fn list_one_group(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let req = GroupReq::decode(body)?;
    match t.lock().groups.get(&req.group) {
        Some(g) => ok(GroupStat::encode_list(&[group_stat(t, g)], t.profile).to_vec()),
        None => err(Status::ENOENT),
    }
}

/// 93 SERVER_DELETE_STORAGE.
pub(super) fn delete_storage(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now) = (c.t, c.now);
    let r = GroupStorageReq::decode_with_id(body)?;
    let id = r.storage_id.as_deref().unwrap_or("");
    from_result(t.lock().delete_storage(&r.group, id, now).map(|_| Vec::new()))
}

/// 108 SERVER_DELETE_GROUP.
pub(super) fn delete_group(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let r = GroupReq::decode(body)?;
    from_result(t.lock().delete_group(&r.group).map(|_| Vec::new()))
}

/// 95 SERVER_GET_LEADER.
pub(super) fn get_leader(c: &mut Call<'_>, _body: &[u8]) -> Outcome {
    match c.t.leader.read_locked().clone() {
        Some(l) => ok(l.into_bytes()),
        None => err(Status::ENOENT),
    }
}

/// 96 SERVER_TRACKER_CLUSTER_STAT.
pub(super) fn tracker_cluster_stat(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, now) = (c.t, c.now);
    let req = TrackerClusterStatReq::decode(body, t.profile)?;
    from_result(cluster_stat::trackers(t, &req, now).map(|s| s.encode().to_vec()))
}

/// 97 SERVER_STORAGE_CLUSTER_STAT.
pub(super) fn storage_cluster_stat(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let req = StorageClusterStatReq::decode(body, t.profile)?;
    ok(cluster_stat::storages(t, &req).encode().to_vec())
}

/// 98 SERVER_STORAGE_VOLUMN_STAT.
pub(super) fn volume_stat(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let req = VolumeStatReq::decode(body, t.profile)?;
    ok(cluster_stat::volumes(t, &req).encode().to_vec())
}

/// 94 SERVER_SET_TRUNK_SERVER (`fdfs_monitor … set_trunk_server`), with C 6.16.1's answers
/// (captured): an empty ID asks who it is; EALREADY if the named storage already is; EEXIST
/// while another storage is the ACTIVE trunk server; ENOENT, ENONET, EACCES for a storage
/// unknown, not ACTIVE, not writable. The answer is the ID and a NUL.
pub(super) fn set_trunk_server(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    if !t.config.use_trunk_file || !t.is_leader() {
        return err(Status::EOPNOTSUPP);
    }
    if body.len() < 16 || body.len() > 16 + 16 {
        return Err(closing(Status::EINVAL));
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
    tokio::spawn(crate::tracker::trunk::tell_storage(
        t.config.connect_timeout,
        t.config.network_timeout,
        new,
        Command::TrunkDeleteBinlogMarks,
    ));
    ok(encode_trunk_server_id(&id).to_vec())
}

/// 101-107 QUERY_STORE_*: where an upload goes.
pub(super) fn query_store(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, cmd, client) = (c.t, c.cmd, c.conn.peer.ip().to_canonical());
    use Command as C;
    let p = t.profile;

    let with_group = matches!(cmd, C::QueryStoreWithGroupOne | C::QueryStoreWithGroupAll);
    let all = matches!(cmd, C::QueryStoreWithoutGroupAll | C::QueryStoreWithGroupAll);
    let group = if with_group {
        Some(GroupReq::decode(body)?.group)
    } else {
        expect_len(body, 0)?;
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
pub(super) fn query_fetch(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let (t, cmd, client, now) = (c.t, c.cmd, c.conn.peer.ip().to_canonical(), c.now);
    use Command as C;
    let p = t.profile;

    let req = match FileReq::decode(body) {
        Ok(r) if r.filename.len() >= 22 => r,
        Ok(_) => return Err(closing(Status::EINVAL)),
        Err(e) => return Err(e.into()),
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
pub(super) fn list_storage(c: &mut Call<'_>, body: &[u8]) -> Outcome {
    let t = c.t;
    let p = t.profile;

    let req = GroupStorageReq::decode(body)?;
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

/// A group's line of 90/91. Without trunk files the trunk file id is -1, as C 6.16.1 answers:
/// its `fdfs_monitor` prints the trunk lines only for an id of 0 or more.
fn group_stat(t: &Tracker, g: &crate::tracker::state::Group) -> GroupStat {
    let mut stat = g.stat(reserved_mb(t, g.space().0));
    if !t.config.use_trunk_file {
        stat.current_trunk_file_id = -1;
    }
    stat
}

fn reserved_mb(t: &Tracker, total_mb: i64) -> i64 {
    t.config.reserved_storage_space.reserved_mb(total_mb)
}
