//! The storage's side of the tracker protocol (PROTOCOL.md §7.2): one task per tracker joins,
//! settles its sync source on the first join, then beats every `heart_beat_interval` and
//! reports disk usage every `stat_report_interval`, reconnecting after any error.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::StorageServer;
use crate::client::reporter::ReportConnection;
use crate::client::{ClientError, ClientResult};
use crate::config::{ReservedSpace, ServerAddr};
use crate::protocol::parameters::Parameters;
use crate::protocol::report::{ChangeNotify, JoinReq, JoinResp, PathUsage, SyncSource, SyncTimestamp};
use crate::protocol::status;
use crate::protocol::{Layout, Profile, Status};
use crate::server::Shutdown;
use crate::timefmt::now_unix;

pub async fn report_loop(srv: Arc<StorageServer>, tracker: ServerAddr, mut shutdown: Shutdown) {
    // A store path being recovered is not joined with: the tracker would send clients here.
    tokio::select! {
        _ = shutdown.wait() => return,
        _ = srv.until_recovered() => {}
    }
    let retry = srv.config.heart_beat_interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let r = tokio::select! {
            _ = shutdown.wait() => return,
            r = session(&srv, &tracker) => r,
        };
        if let Err(e) = r {
            tracing::warn!("tracker {tracker}: {e}; retrying in {retry:?}");
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

fn apply_params(srv: &StorageServer, params: &Parameters) {
    srv.identity.update_params(|p| apply_params_to(p, params));
}

fn apply_params_to(p: &mut super::TrackerParams, params: &Parameters) {
    for (k, v) in params.pairs() {
        match k.as_str() {
            "reserved_storage_space" => {
                if let Some(r) = ReservedSpace::parse(v) {
                    p.reserved = r;
                }
            }
            "store_path" => p.store_path_most_free = v == "2",
            "use_storage_id" => p.use_storage_id = v == "1",
            "id_type_in_filename" => p.id_in_filename = v == "id",
            "response_ip_addr_size" => p.response_ip_size = if v.trim() == "46" { 46 } else { 16 },
            "use_trunk_file" => p.use_trunk_file = v == "1",
            "storage_ip_changed_auto_adjust" => p.ip_changed_auto_adjust = v == "1",
            "store_slave_file_use_link" => p.store_slave_file_use_link = v == "1",
            "slot_min_size" => p.trunk.slot_min_size = size(v, p.trunk.slot_min_size),
            "slot_max_size" => p.trunk.slot_max_size = size(v, p.trunk.slot_max_size),
            "trunk_alloc_alignment_size" => p.trunk.alignment = size(v, p.trunk.alignment),
            "trunk_file_size" => p.trunk.trunk_file_size = size(v, p.trunk.trunk_file_size),
            "trunk_free_space_merge" => p.trunk.merge = v == "1",
            "delete_unused_trunk_files" => p.delete_unused_trunk_files = v == "1",
            "trunk_compress_binlog_min_interval" => p.trunk_compress.min_interval = v.trim().parse().unwrap_or(0),
            "trunk_compress_binlog_interval" => p.trunk_compress.interval = v.trim().parse().unwrap_or(0),
            "trunk_compress_binlog_time_base" => p.trunk_compress.time_base = minutes(v, p.trunk_compress.time_base),
            "trunk_create_file_advance" => p.trunk_advance.enabled = v == "1",
            "trunk_create_file_time_base" => p.trunk_advance.time_base = minutes(v, p.trunk_advance.time_base),
            "trunk_create_file_interval" => p.trunk_advance.interval = v.trim().parse().unwrap_or(86_400),
            "trunk_create_file_space_threshold" => p.trunk_advance.threshold = v.trim().parse().unwrap_or(0),
            "trunk_binlog_max_backups" => p.trunk_compress.max_backups = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
}

/// `HH:MM` as minutes after midnight.
fn minutes(v: &str, old: i64) -> i64 {
    let Some((h, m)) = v.trim().split_once(':') else { return old };
    match (h.parse::<i64>(), m.parse::<i64>()) {
        (Ok(h), Ok(m)) if (0..24).contains(&h) && (0..60).contains(&m) => h * 60 + m,
        _ => old,
    }
}

/// A size the tracker sent (bytes), kept to what a trunk offset can hold.
fn size(v: &str, old: u32) -> u32 {
    v.trim().parse::<u64>().ok().and_then(|n| u32::try_from(n).ok()).unwrap_or(old)
}

/// Free and total space of every store path, measured (statfs) on the blocking pool.
async fn disk_usage(srv: &Arc<StorageServer>) -> Vec<PathUsage> {
    let s = srv.clone();
    tokio::task::spawn_blocking(move || measured_usage(&s)).await.unwrap_or_default()
}

fn measured_usage(srv: &StorageServer) -> Vec<PathUsage> {
    srv.paths.refresh_all();
    srv.paths
        .paths
        .iter()
        .map(|p| PathUsage {
            total_mb: p.total_mb.load(Ordering::Relaxed) as i64,
            free_mb: p.free_mb.load(Ordering::Relaxed) as i64,
        })
        .collect()
}

/// What the leader tells us: our own status and the group's members.
fn absorb(srv: &StorageServer, n: &ChangeNotify, my_id: &str) {
    if let Some(group) = &n.group {
        if let Some(me) = group.iter().find(|b| b.id == my_id) {
            srv.membership.set_status(me.status);
        }
        // Peer IDs name mark files and binlog lookups: a brief with anything but a plain
        // token in them is dropped.
        srv.membership.set_peers(
            group
                .iter()
                .filter(|b| {
                    b.id != my_id && crate::protocol::is_safe_token(&b.id) && crate::protocol::is_safe_token(&b.ip)
                })
                .cloned()
                .collect(),
        );
    }
}

/// A tracker's word on who leads (a flag-0x01 brief; only a leader sends one), as C's
/// `set_tracker_leader`: when it names another leader than the one we knew and that one still
/// says it leads (64), two trackers lead at once (split brain). Both are told to elect again
/// (68 NOTIFY_RESELECT_LEADER) and we know no leader until one is announced.
async fn leader_news(srv: &StorageServer, from: &str, n: &ChangeNotify) {
    let Some(b) = &n.leader else { return };
    if b.ip.is_empty() {
        srv.identity.set_tracker_leader(None);
        return;
    }
    let Ok(port) = u16::try_from(b.port) else { return };
    let new = crate::config::join_host_port(&b.ip, port);
    if !srv.config.tracker_servers.iter().any(|t| t.port == port && t.hosts.contains(&b.ip)) {
        tracing::warn!("tracker {from} names {new} the leader, which is not in our tracker_server list");
        return;
    }
    match srv.identity.tracker_leader() {
        Some(old) if old != new && claims_leadership(srv, &old).await => {
            tracing::warn!(
                "two tracker leaders occur, old leader is {old}, new leader is {new}: \
                 notifying both to select the leader again"
            );
            for addr in [&old, &new] {
                if let Err(e) =
                    short_call(&srv.config, addr, crate::protocol::Command::TrackerNotifyReselectLeader, &[]).await
                {
                    tracing::warn!("NOTIFY_RESELECT_LEADER to {addr}: {e}");
                }
            }
            srv.identity.set_tracker_leader(None);
        }
        Some(old) if old == new => {}
        _ => {
            tracing::info!("tracker {from}: the tracker leader is {new}");
            srv.identity.set_tracker_leader(Some(new));
        }
    }
}

/// Does the tracker at `addr` say it leads (64 TRACKER_GET_STATUS)?
async fn claims_leadership(srv: &StorageServer, addr: &str) -> bool {
    use crate::protocol::leader::TrackerStatus;
    match short_call(&srv.config, addr, crate::protocol::Command::TrackerGetStatus, &[]).await {
        Ok(body) => TrackerStatus::decode(&body, Profile::CLASSIC).is_ok_and(|s| s.is_leader == 1),
        Err(_) => false,
    }
}

/// One request to a tracker on a connection of its own (bound as report connections are, so
/// the tracker knows us by our address).
async fn short_call(
    c: &crate::config::StorageConfig,
    addr: &str,
    cmd: crate::protocol::Command,
    body: &[u8],
) -> ClientResult<bytes::Bytes> {
    let mut conn =
        crate::client::Connection::connect_from(addr, c.client_bind_ip(), c.connect_timeout, c.network_timeout).await?;
    let r = conn.call(cmd, body).await;
    conn.quit().await;
    r
}

/// What the leader says about the trunk server. Named ourselves, we ask for the group's trunk
/// file id (72) and take the role; as the trunk server we report a trunk id this tracker has
/// not had from us yet (73; `reported` is this connection's) and, with `free_too`, the free
/// trunk space (74).
async fn trunk_news(
    srv: &Arc<StorageServer>,
    conn: &mut ReportConnection,
    n: &ChangeNotify,
    reported: &mut Option<u32>,
    free_too: bool,
) -> ClientResult<()> {
    use crate::protocol::Command;
    if let Some(b) = &n.trunk {
        if srv.set_trunk_server(b.clone()) {
            let body = conn.connection().call(Command::StorageFetchTrunkFid, &[]).await?;
            let fid = <[u8; 4]>::try_from(&body[..]).map(i32::from_be_bytes).unwrap_or(0).max(0) as u32;
            let s = srv.clone();
            match tokio::task::spawn_blocking(move || s.become_trunk_server(fid)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("reading the trunk binlog: {e}; not serving as trunk server"),
                Err(e) => tracing::error!("becoming the trunk server: {e}"),
            }
        }
    }
    if let Some((id, free_mb)) = srv.trunk_report() {
        if id > 0 && *reported != Some(id) {
            conn.connection().call(Command::StorageReportTrunkFid, &(id as i32).to_be_bytes()).await?;
            *reported = Some(id);
        }
        if free_too {
            conn.connection().call(Command::StorageReportTrunkFree, &free_mb.to_be_bytes()).await?;
        }
    }
    Ok(())
}

/// Joins `tracker` and returns the logged-in report connection with our address as the tracker
/// sees it. The tracker's generation is the configured one, or the one it last accepted, or
/// found by trying each generation newest first: only 6.16 accepts the 21-byte GET_MY_IP, and
/// every generation refuses (EINVAL) a JOIN of another generation's length.
/// What this storage says of itself in a JOIN to `tracker` in `layout`'s generation.
fn join_request(srv: &StorageServer, tracker: &ServerAddr, layout: Layout) -> JoinReq {
    let (c, init, known) = (&srv.config, srv.identity.init_flag(), srv.membership.status());
    JoinReq {
        group: srv.group.clone(),
        storage_port: c.port as i64,
        storage_http_port: c.http_server_port as i64,
        store_path_count: srv.paths.paths.len() as i64,
        subdir_count_per_path: srv.paths.subdirs as i64,
        upload_priority: c.upload_priority,
        join_time: init.storage_join_time,
        up_time: srv.up_time,
        version: layout.version_text().into(),
        domain_name: c.http_domain_name.clone(),
        init_flag: !init.sync_old_done,
        status: if known == status::NONE { 0 } else { known.byte() as i8 },
        storage_id: if srv.identity.params().use_storage_id { srv.identity.my_id() } else { String::new() },
        current_tracker_ip: tracker.hosts[0].clone(),
        trackers: c.tracker_servers.iter().map(|t| t.to_string()).collect(),
    }
}

async fn join(srv: &Arc<StorageServer>, tracker: &ServerAddr) -> ClientResult<(ReportConnection, String, JoinResp)> {
    let c = &srv.config;
    let bind = c.client_bind_ip();
    let addr = tracker.primary();
    let candidates: Vec<Layout> = match c.tracker_protocol_version {
        Some(l) => vec![l],
        None => {
            let known = srv.identity.tracker_layout(&addr);
            known.into_iter().chain(Layout::ALL.into_iter().rev().filter(|l| Some(*l) != known)).collect()
        }
    };
    let probing = candidates.len() > 1;
    let mut refused = None;
    for layout in candidates {
        let profile = Profile::of(layout, false);
        let mut conn = ReportConnection::connect(&addr, bind, (c.connect_timeout, c.network_timeout), profile).await?;
        apply_params(srv, &conn.parameters().await?);
        let my_ip = match conn.my_ip(&srv.group, c.port).await.map(|ip| own_of(srv, &ip)) {
            // It goes into .data_init_flag and new file names: only a plain address will do.
            Ok(ip) if crate::protocol::is_safe_token(&ip) => ip,
            Ok(ip) => {
                tracing::warn!("tracker {addr} says our address is {ip:?}; ignored");
                String::new()
            }
            // Refused in 6.16's form: the tracker is older; try the older generations.
            Err(e @ ClientError::Status { .. }) if probing && layout == Layout::V616 => {
                refused = Some(e);
                continue;
            }
            // Before 6.00 there is no GET_MY_IP: keep the address we have.
            Err(ClientError::Status { .. }) => {
                conn = ReportConnection::connect(&addr, bind, (c.connect_timeout, c.network_timeout), profile).await?;
                String::new()
            }
            Err(e) => return Err(e),
        };
        if !my_ip.is_empty() {
            srv.identity.set_my_ip(my_ip.clone());
        }
        let my_ip = srv.identity.my_ip();
        if !srv.identity.params().use_storage_id && srv.identity.params().ip_changed_auto_adjust {
            if let Some(old) = srv.identity.ip_change_to_tell(&addr, &my_ip) {
                report_ip_changed(srv, &mut conn, profile, &old, &my_ip).await?;
                srv.identity.ip_change_told(&addr);
            }
        }
        if srv.identity.params().use_storage_id && c.server_id.is_empty() {
            learn_server_id(srv, &mut conn, layout, &my_ip).await?;
        }
        if srv.identity.params().use_storage_id {
            if let Err(e) = fetch_storage_ids(srv, &mut conn).await {
                tracing::warn!("fetching the storage ID table from {}: {e}", tracker.primary());
            }
        }
        match conn.join(&join_request(srv, tracker, layout)).await {
            Ok(joined) => {
                if srv.identity.tracker_layout(&addr) != Some(layout) {
                    tracing::info!("tracker {addr} speaks FastDFS {layout}");
                    srv.identity.set_tracker_layout(&addr, layout);
                }
                return Ok((conn, my_ip, joined));
            }
            Err(e @ ClientError::Status { status: Status::EINVAL }) if probing => refused = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(refused.unwrap_or_else(|| ClientError::Protocol {
        addr: addr.clone(),
        why: "no FastDFS generation accepted our JOIN".into(),
    }))
}

/// A storage.conf without `group_name` (storage-ID mode): the group the trackers'
/// storage_ids.conf gives this storage's address and port (109 GET_GROUP_NAME), as the C
/// storage asks at start. Each tracker is asked in turn, three rounds, before giving up.
pub async fn group_name_from_trackers(c: &crate::config::StorageConfig) -> Result<String, String> {
    use crate::protocol::report::GetGroupNameReq;
    use crate::protocol::tracker::GroupReq;
    let req = GetGroupNameReq { ip: c.bind_addr.clone(), port: i32::from(c.port) }.encode();
    let mut last = String::from("no tracker_server");
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for t in &c.tracker_servers {
            let addr = t.primary();
            match short_call(c, &addr, crate::protocol::Command::StorageGetGroupName, &req)
                .await
                .map(|b| GroupReq::decode(&b))
            {
                Ok(Ok(g)) if crate::protocol::valid_group_name(&g.group) => return Ok(g.group),
                Ok(Ok(g)) => last = format!("tracker {addr} answered the group name {:?}", g.group),
                Ok(Err(e)) => last = format!("tracker {addr}: {e}"),
                Err(e) => last = e.to_string(),
            }
        }
    }
    Err(last)
}

/// A storage-ID tracker answers GET_MY_IP with every address of our storage_ids.conf entry
/// (`inner,outer`): ours is the one on an interface here, else the first.
fn own_of(srv: &StorageServer, answer: &str) -> String {
    let mut addrs = answer.split(',').map(str::trim).filter(|a| !a.is_empty());
    let first = addrs.clone().next().unwrap_or_default().to_owned();
    addrs.find(|a| a.parse().is_ok_and(|ip| srv.is_own_host(ip))).map_or(first, str::to_owned)
}

/// 78 REPORT_IP_CHANGED, as C sends it after GET_MY_IP and before JOIN: the tracker moves our
/// record to the new address and tells the members (changelog), so nobody takes us for a new
/// storage and the sync positions carry over.
async fn report_ip_changed(
    srv: &StorageServer,
    conn: &mut ReportConnection,
    profile: Profile,
    old: &str,
    new: &str,
) -> ClientResult<()> {
    use crate::protocol::Command;
    let w = profile.ip_addr_size();
    let mut body = vec![0u8; 16 + 2 * w];
    let put = |b: &mut [u8], s: &str| {
        let n = s.len().min(b.len() - 1);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
    };
    put(&mut body[..16], &srv.group);
    put(&mut body[16..16 + w], old);
    put(&mut body[16 + w..], new);
    match conn.connection().call(Command::StorageReportIpChanged, &body).await {
        Ok(_) => {
            tracing::info!("our address changed from {old} to {new}: told tracker {}", conn.addr());
            let saved = srv.update_init_flag(|f| f.last_ip_addr = new.to_owned());
            if let Err(e) = saved {
                tracing::error!("writing .data_init_flag: {e}");
            }
            Ok(())
        }
        // Already moved (another start told it), or nothing to move: join as we are.
        Err(ClientError::Status { status }) => {
            tracing::warn!("tracker {} refused our address change {old} -> {new}: {status}", conn.addr());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The tracker's changelog lines for us (77): a member whose address changed (status 3) has
/// its mark files renamed, so the sync to it continues where it was; a deleted member's
/// (status 4) are removed. Storage IDs name mark files in ID mode: nothing to do there.
fn apply_changelog(srv: &StorageServer, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    if text.trim().is_empty() {
        return;
    }
    tracing::info!("tracker changelog: {}", text.trim_end());
    if srv.identity.params().use_storage_id {
        return;
    }
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 4 || f[1] != srv.group || !crate::protocol::is_safe_token(f[2]) {
            continue;
        }
        let port = srv.config.port;
        let old = format!("{}_{port}.mark", f[2]);
        for dir in ["sync", "trunk"] {
            let dir = srv.config.base_path.join("data").join(dir);
            match (f[3].parse::<u8>().map(crate::protocol::StorageStatus::from_byte), f.get(4).map(|s| s.trim())) {
                (Ok(status::IP_CHANGED), Some(new)) if crate::protocol::is_safe_token(new) => {
                    let to = dir.join(format!("{new}_{port}.mark"));
                    if dir.join(&old).exists() && !to.exists() {
                        match std::fs::rename(dir.join(&old), &to) {
                            Ok(()) => tracing::info!("member {} is now {new}: {} renamed", f[2], to.display()),
                            Err(e) => tracing::error!("renaming {old}: {e}"),
                        }
                    }
                }
                (Ok(status::DELETED), _) => {
                    let _ = std::fs::remove_file(dir.join(&old));
                }
                _ => {}
            }
        }
    }
}

/// 69 FETCH_STORAGE_IDS, page by page, as the C storage does at start in ID mode: file names
/// that embed another storage's ID are mapped to its address through it (QUERY_FILE_INFO).
async fn fetch_storage_ids(srv: &StorageServer, conn: &mut ReportConnection) -> ClientResult<()> {
    use crate::protocol::report::{FetchStorageIdsReq, StorageIdsPage};
    use crate::protocol::Command;
    let mut lines = Vec::new();
    loop {
        // In the joined generation's form: 6.11+ trackers (6.16.1 among them) refuse the 4-byte
        // body with EINVAL, older ones the 5-byte one.
        let req = FetchStorageIdsReq { start_index: lines.len() as i32, allow_empty: true }.encode(conn.profile());
        let body = conn.connection().call(Command::StorageFetchStorageIds, &req).await?;
        let page = StorageIdsPage::decode(&body)
            .map_err(|e| ClientError::Protocol { addr: conn.addr().to_owned(), why: e.to_string() })?;
        if page.add_to(&mut lines) {
            break;
        }
    }
    let text = lines.join("\n");
    match crate::config::StorageIds::parse(&text, std::path::Path::new("(tracker's storage_ids.conf)")) {
        Ok(ids) => srv.identity.set_storage_ids(ids),
        Err(e) => tracing::warn!("the tracker's storage ID table does not parse: {e}"),
    }
    Ok(())
}

/// 70 GET_SERVER_ID: a storage.conf without `server_id` (normal before 6.11) learns the ID the
/// tracker's storage_ids.conf gives its address, as the C storage does; file names embed it
/// with `id_type_in_filename = id`.
async fn learn_server_id(
    srv: &StorageServer,
    conn: &mut ReportConnection,
    layout: Layout,
    my_ip: &str,
) -> ClientResult<()> {
    use crate::protocol::report::StorageLookupReq;
    use crate::protocol::Command;
    // 6.16 names the storage by `ip:port` (several may share an address); older by address.
    let addr =
        if layout >= Layout::V616 { crate::config::join_host_port(my_ip, srv.config.port) } else { my_ip.to_owned() };
    let body = conn
        .connection()
        .call(Command::StorageGetServerId, &StorageLookupReq { group: srv.group.clone(), addr }.encode())
        .await?;
    let id = String::from_utf8_lossy(&body).trim_end_matches('\0').to_owned();
    match id.parse::<u32>() {
        Ok(n) if crate::protocol::is_safe_token(&id) => {
            if srv.identity.set_server_id(n) {
                tracing::info!("storage ID {n} (from the tracker's storage_ids.conf)");
            }
            Ok(())
        }
        _ => Err(ClientError::Protocol {
            addr: conn.addr().to_owned(),
            why: format!("storage ID {id:?} is not a number"),
        }),
    }
}

async fn session(srv: &Arc<StorageServer>, tracker: &ServerAddr) -> ClientResult<()> {
    let c = &srv.config;
    let addr = tracker.primary();
    let init = srv.identity.init_flag();
    let (mut conn, my_ip, joined) = join(srv, tracker).await?;
    // Before any member list is taken in: a member that changed its address must find its
    // mark file under the new name when its sync task starts.
    apply_changelog(srv, &conn.changelog().await?);
    srv.membership.set_status(joined.status);
    tracing::info!("joined tracker {addr} as {} ({})", my_ip, joined.status.name());
    // Our ID at the trackers is our IP unless storage IDs are in use.
    let my_id = srv.identity.my_id();
    if !init.sync_old_done {
        let src = conn.sync_dest_req().await?;
        let saved = srv.update_init_flag(|f| {
            f.sync_old_done = true;
            f.last_ip_addr = my_ip.clone();
            f.last_server_port = c.port;
            if let Some(s) = &src {
                f.sync_src_server = s.src_id.clone();
                f.sync_until_timestamp = s.until_timestamp;
            }
        });
        if let Err(e) = saved {
            tracing::error!("writing .data_init_flag: {e}");
        }
    } else {
        let src = SyncSource { src_id: init.sync_src_server.clone(), until_timestamp: init.sync_until_timestamp };
        conn.sync_notify(&src).await?;
    }
    let n = conn.disk_usage(&disk_usage(srv).await).await?;
    absorb(srv, &n, &my_id);
    leader_news(srv, &addr, &n).await;
    // The trunk id this tracker has had from us (73), on this connection.
    let mut reported_fid = None;
    trunk_news(srv, &mut conn, &n, &mut reported_fid, true).await?;
    let beat_every = c.heart_beat_interval.max(Duration::from_millis(100));
    let stat_every = c.stat_report_interval.max(Duration::from_millis(100));
    let mut last_stat = tokio::time::Instant::now();
    let mut last_counters = None;
    let mut last_synced: Option<Vec<SyncTimestamp>> = None;
    loop {
        apply_changelog(srv, &conn.changelog().await?);
        let snap = srv.stats.snapshot(c.max_connections as i32);
        let changed = last_counters != Some(snap.counters);
        last_counters = Some(snap.counters);
        let n = conn.beat(changed.then_some(&snap)).await?;
        absorb(srv, &n, &my_id);
        leader_news(srv, &addr, &n).await;
        trunk_news(srv, &mut conn, &n, &mut reported_fid, false).await?;
        srv.stats.last_heart_beat_time.store(now_unix(), Ordering::Relaxed);
        let synced: Vec<SyncTimestamp> = srv
            .membership
            .synced_from()
            .into_iter()
            .map(|(peer_id, timestamp)| SyncTimestamp { peer_id, timestamp })
            .collect();
        if !synced.is_empty() && last_synced.as_ref() != Some(&synced) {
            let n = conn.sync_report(&synced).await?;
            absorb(srv, &n, &my_id);
            leader_news(srv, &addr, &n).await;
            trunk_news(srv, &mut conn, &n, &mut reported_fid, false).await?;
            last_synced = Some(synced);
        }
        if last_stat.elapsed() >= stat_every {
            last_stat = tokio::time::Instant::now();
            let n = conn.disk_usage(&disk_usage(srv).await).await?;
            absorb(srv, &n, &my_id);
            leader_news(srv, &addr, &n).await;
            trunk_news(srv, &mut conn, &n, &mut reported_fid, true).await?;
        }
        tokio::time::sleep(beat_every).await;
    }
}
