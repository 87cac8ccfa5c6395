//! Sending replication (PROTOCOL.md §6.2, §6.3): one task per other member of the group reads
//! the binlog from where that peer's mark file says and replays each record with the SYNC_*
//! commands. A task wakes as soon as a record is written, so a change reaches the peers in
//! milliseconds; a failed record is retried on a new connection, so nothing is skipped.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::binlog::{BinlogReader, Line, Op, Record};
use super::disk::Disk;
use super::StorageServer;
use crate::client::reporter::{report_status, sync_src_req};
use crate::client::{ClientError, Connection};
use crate::config::Ini;
use crate::protocol::peer::{ReportServerId, SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq};
use crate::protocol::report::Brief;
use crate::protocol::status;
use crate::protocol::storage::StreamedHead;
use crate::protocol::{Command, Profile, Status};
use crate::server::Shutdown;

/// Where a destination is in our binlog (`<peer>.mark`, 7 keys as FastDFS writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub binlog_index: u32,
    pub binlog_offset: u64,
    pub need_sync_old: bool,
    pub sync_old_done: bool,
    pub until_timestamp: i64,
    pub scan_row_count: u64,
    pub sync_row_count: u64,
}

impl Mark {
    pub fn load(path: &Path) -> Option<Self> {
        let ini = Ini::load_state(path).ok()?;
        let k = ini.global();
        let keys = [
            "binlog_index",
            "binlog_offset",
            "need_sync_old",
            "sync_old_done",
            "until_timestamp",
            "scan_row_count",
            "sync_row_count",
        ];
        if keys.iter().any(|key| k.entry(key).is_none()) {
            return None;
        }
        Some(Self {
            binlog_index: k.int("binlog_index", 0).ok()?.max(0) as u32,
            binlog_offset: k.int("binlog_offset", 0).ok()?.max(0) as u64,
            need_sync_old: k.bool("need_sync_old", false).ok()?,
            sync_old_done: k.bool("sync_old_done", false).ok()?,
            until_timestamp: k.int("until_timestamp", 0).ok()?,
            scan_row_count: k.int("scan_row_count", 0).ok()?.max(0) as u64,
            sync_row_count: k.int("sync_row_count", 0).ok()?.max(0) as u64,
        })
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "binlog_index={}\nbinlog_offset={}\nneed_sync_old={}\nsync_old_done={}\nuntil_timestamp={}\nscan_row_count={}\nsync_row_count={}\n",
            self.binlog_index,
            self.binlog_offset,
            self.need_sync_old as u8,
            self.sync_old_done as u8,
            self.until_timestamp,
            self.scan_row_count,
            self.sync_row_count
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::durable::write_atomic(dir, &path.file_name().unwrap_or_default().to_string_lossy(), text.as_bytes())
    }
}

/// A destination's mark file, as C names it: after the peer's ID in storage-ID mode (so a
/// position survives its address changing), else `ip_port`.
fn mark_file_name(peer: &Brief, use_storage_id: bool) -> String {
    if use_storage_id {
        format!("{}.mark", peer.id)
    } else {
        format!("{}_{}.mark", peer.ip, peer.port)
    }
}

/// Binlog lines a sender reads in one go.
const READ_AHEAD: usize = 256;

/// How long a caught-up sender waits for more records before saving its mark.
const MARK_IDLE_SAVE: Duration = Duration::from_secs(1);

/// Minutes since local midnight.
fn local_minutes() -> u32 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    now.hour() * 60 + now.minute()
}

/// Whether replication may run now. The local time is looked up only for a window that is not
/// all day: each lookup stats /etc/localtime, once per record sent.
fn sync_window_open(start: (u8, u8), end: (u8, u8)) -> bool {
    all_day(start, end) || in_sync_window(start, end, local_minutes())
}

/// C's 00:00-23:59 default, or an empty window, which C also reads as all day.
fn all_day(start: (u8, u8), end: (u8, u8)) -> bool {
    start == end || (start == (0, 0) && end >= (23, 59))
}

/// Whether `now` (minutes since midnight) lies in the replication window `start..=end`
/// (`sync_start_time`, `sync_end_time`; C's 00:00-23:59 default is all day; a window may run
/// past midnight).
fn in_sync_window(start: (u8, u8), end: (u8, u8), now: u32) -> bool {
    if all_day(start, end) {
        return true;
    }
    let (s, e) = (u32::from(start.0) * 60 + u32::from(start.1), u32::from(end.0) * 60 + u32::from(end.1));
    if s < e {
        (s..=e).contains(&now)
    } else {
        now >= s || now <= e
    }
}

/// Writes a mark file off the async workers (it is fsynced).
async fn save_mark(mark: &Mark, path: &Path) -> Result<(), String> {
    let (mark, path) = (mark.clone(), path.to_owned());
    match tokio::task::spawn_blocking(move || mark.save(&path)).await {
        Ok(r) => r.map_err(|e| format!("saving the mark file: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until the group's member list changes (or shutdown); false on shutdown.
async fn peers_changed(rx: &mut tokio::sync::watch::Receiver<Vec<Brief>>, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.wait() => false,
        r = rx.changed() => r.is_ok(),
    }
}

/// Keeps one sync task per peer that is not deleted.
pub async fn manager(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut changes = srv.watch_peers();
    loop {
        // A task that ended (its peer was gone) is started again when the member comes back;
        // one that failed restarts itself.
        for p in srv.peers() {
            if matches!(p.status, status::DELETED | status::IP_CHANGED | status::NONE) {
                continue;
            }
            if tasks.get(&p.id).is_some_and(|t| !t.is_finished()) {
                continue;
            }
            tasks.insert(p.id.clone(), tokio::spawn(peer_task(srv.clone(), p.id.clone(), shutdown.clone())));
        }
        if !peers_changed(&mut changes, &mut shutdown).await {
            break;
        }
    }
    for (_, t) in tasks {
        let _ = t.await;
    }
}

async fn peer_task(srv: Arc<StorageServer>, peer: String, mut shutdown: Shutdown) {
    let sd = shutdown.clone();
    let what = format!("sync to {peer}");
    shutdown.retry(&what, Duration::from_millis(500), || run_peer(&srv, &peer, sd.clone())).await;
}

/// Sends to every tracker (status reports must reach all of them).
pub(super) async fn report_to_trackers(srv: &StorageServer, brief: Brief) {
    for t in &srv.config.tracker_servers {
        let addr = t.primary();
        let (bind, timeout, profile) =
            (srv.config.client_bind_ip(), srv.config.connect_timeout, srv.tracker_profile(&addr));
        if let Err(e) = report_status(&addr, bind, timeout, &srv.group, brief.clone(), profile).await {
            tracing::warn!("reporting {} as {} to {t}: {e}", brief.id, status::name(brief.status));
        }
    }
}

async fn ask_sync_source(srv: &StorageServer, peer: &str) -> Result<Option<(String, i64)>, String> {
    let mut last = String::from("no tracker");
    for t in &srv.config.tracker_servers {
        match sync_src_req(&t.primary(), srv.config.connect_timeout, &srv.group, peer).await {
            Ok(s) => return Ok(s.map(|s| (s.src_id, s.until_timestamp))),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

async fn run_peer(srv: &Arc<StorageServer>, peer_id: &str, mut shutdown: Shutdown) -> Result<(), String> {
    // Only ACTIVE, WAIT_SYNC and SYNCING destinations are sent to.
    let mut changes = srv.watch_peers();
    let peer = loop {
        match srv.peer(peer_id) {
            None => return Ok(()),
            Some(b) if matches!(b.status, status::DELETED | status::IP_CHANGED) => return Ok(()),
            Some(b) if matches!(b.status, status::ACTIVE | status::WAIT_SYNC | status::SYNCING) => break b,
            Some(_) => {}
        }
        if !peers_changed(&mut changes, &mut shutdown).await {
            return Ok(());
        }
    };
    let sync_dir = srv.binlog.dir().to_owned();
    let mark_path = sync_dir.join(mark_file_name(&peer, srv.params().use_storage_id));
    let me = srv.my_id();
    let mut mark = match Mark::load(&mark_path) {
        Some(m) => m,
        None => {
            let src = ask_sync_source(srv, peer_id).await?;
            let (need_sync_old, until) = match src {
                Some((src, until)) => (src == me, until),
                None => (false, 0),
            };
            let mut m = Mark { need_sync_old, until_timestamp: until, ..Default::default() };
            if !need_sync_old && until > 0 {
                skip_to(&sync_dir, srv.binlog.position(), &mut m, until).map_err(|e| e.to_string())?;
            }
            m.save(&mark_path).map_err(|e| e.to_string())?;
            tracing::info!("sync to {peer_id}: new mark, need_sync_old={need_sync_old}, until={until}");
            m
        }
    };
    if !mark.need_sync_old {
        // Others fill a new member; we only add what is newer, once it is ACTIVE.
        loop {
            match srv.peer(peer_id) {
                Some(b) if b.status == status::ACTIVE => break,
                Some(b) if matches!(b.status, status::DELETED | status::IP_CHANGED) => return Ok(()),
                None => return Ok(()),
                _ => {}
            }
            if !peers_changed(&mut changes, &mut shutdown).await {
                return Ok(());
            }
        }
    }
    let addr = crate::config::join_host_port(&peer.ip, peer.port as u16);
    let mut conn = srv.connect_to_peer(&addr).await.map_err(|e| e.to_string())?;
    let id = ReportServerId { id: me.clone() }.encode(Profile::CLASSIC);
    conn.call(Command::ReportServerId, &id).await.map_err(|e| e.to_string())?;
    if mark.need_sync_old && !mark.sync_old_done && peer.status == status::WAIT_SYNC {
        report_to_trackers(srv, Brief { status: status::SYNCING, ..peer.clone() }).await;
    }
    let mut reader = BinlogReader::at(&sync_dir, mark.binlog_index, mark.binlog_offset);
    // Lines read ahead (on the blocking pool, a batch at a time), each with the position after it.
    let mut ahead: VecDeque<(Line, (u32, u64))> = VecDeque::new();
    let mut unsaved = 0u64;
    loop {
        // Registered before the binlog is read: a record committed while this sender reads or
        // saves its mark then still wakes it (a waiter registered afterwards would sleep until
        // the next heartbeat).
        let notified = srv.binlog_news();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if ahead.is_empty() {
            let writing = srv.binlog.position();
            let lines = if reader.near_end(writing) {
                // Caught up: a few lines just written (a hand-off would cost more than the read).
                reader.next_batch(writing, READ_AHEAD)
            } else {
                let (r, lines) = tokio::task::spawn_blocking(move || {
                    let lines = reader.next_batch(writing, READ_AHEAD);
                    (reader, lines)
                })
                .await
                .map_err(|e| e.to_string())?;
                reader = r;
                lines
            };
            ahead = lines.map_err(|e| e.to_string())?.into();
        }
        let Some((line, after)) = ahead.pop_front() else {
            if mark.need_sync_old && !mark.sync_old_done {
                mark.sync_old_done = true;
                mark.binlog_index = reader.index();
                mark.binlog_offset = reader.offset();
                save_mark(&mark, &mark_path).await?;
                unsaved = 0;
                if srv.peer(peer_id).is_some_and(|b| matches!(b.status, status::SYNCING | status::WAIT_SYNC)) {
                    report_to_trackers(srv, Brief { status: status::OFFLINE, ..peer.clone() }).await;
                }
                tracing::info!("sync to {peer_id}: full copy done");
            }
            mark.binlog_index = reader.index();
            mark.binlog_offset = reader.offset();
            srv.note_sent(peer_id, (reader.index(), reader.offset()), 0);
            // Caught up: the mark is saved once the peer has been idle a moment, not after every
            // record (a lost position only re-sends records, which the peer skips).
            let idle_save = async {
                if unsaved > 0 {
                    tokio::time::sleep(MARK_IDLE_SAVE).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = shutdown.wait() => {
                    if unsaved > 0 {
                        save_mark(&mark, &mark_path).await?;
                    }
                    return Ok(());
                }
                _ = &mut notified => {}
                _ = idle_save => {
                    save_mark(&mark, &mark_path).await?;
                    unsaved = 0;
                    continue;
                }
                _ = tokio::time::sleep(srv.config.heart_beat_interval.max(Duration::from_millis(200))) => {
                    conn.active_test().await.map_err(|e| e.to_string())?;
                }
            }
            if srv.peer(peer_id).is_none_or(|b| matches!(b.status, status::DELETED | status::IP_CHANGED)) {
                return Ok(());
            }
            continue;
        };
        mark.scan_row_count += 1;
        match line {
            // C's meaning of file_sync_skip_invalid_record: by default a damaged record stops
            // replication to this member where it is (retrying would only log it again), so the
            // operator learns of it before the members drift apart; with the key set it is skipped.
            Line::Invalid(text) if !srv.config.file_sync_skip_invalid_record => {
                tracing::error!(
                    "sync to {peer_id}: bad binlog line {text:?} at {}/{}; replication to it stops here until \
                     a restart with file_sync_skip_invalid_record = true",
                    mark.binlog_index,
                    mark.binlog_offset
                );
                if unsaved > 0 {
                    save_mark(&mark, &mark_path).await?;
                }
                shutdown.wait().await;
                return Ok(());
            }
            Line::Invalid(text) => tracing::warn!("sync to {peer_id}: skipping a bad binlog line: {text:?}"),
            Line::Record(r) => {
                if wanted(&r, &mark) {
                    // Outside `sync_start_time`..`sync_end_time` the sender waits (its
                    // connection kept alive), as C's does.
                    while !sync_window_open(srv.config.sync_start_time, srv.config.sync_end_time) {
                        tokio::select! {
                            _ = shutdown.wait() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                        }
                        conn.active_test().await.map_err(|e| e.to_string())?;
                    }
                    send(srv, &mut conn, &r).await.map_err(|e| format!("{}: {e}", r.line().trim_end()))?;
                    mark.sync_row_count += 1;
                }
                srv.note_sent(peer_id, after, r.timestamp);
            }
        }
        unsaved += 1;
        if unsaved >= srv.config.write_mark_file_freq {
            (mark.binlog_index, mark.binlog_offset) = after;
            save_mark(&mark, &mark_path).await?;
            unsaved = 0;
        }
        if !srv.config.sync_interval.is_zero() {
            tokio::time::sleep(srv.config.sync_interval).await;
        }
    }
}

/// Our own records always go; replicated ones only during a full copy we are the source of,
/// and never appends/modifies/truncates (the copy already has their effect).
fn wanted(r: &Record, mark: &Mark) -> bool {
    if !r.replica {
        return true;
    }
    matches!(r.op, Op::Create | Op::Delete | Op::Update | Op::Link | Op::Rename)
        && mark.need_sync_old
        && !mark.sync_old_done
        && r.timestamp <= mark.until_timestamp
}

/// Moves a new mark past the records older than `until` (another member copies those).
fn skip_to(dir: &Path, writing: (u32, u64), mark: &mut Mark, until: i64) -> std::io::Result<()> {
    let mut reader = BinlogReader::at(dir, 0, 0);
    loop {
        match reader.next(writing)? {
            Some(Line::Record(r)) if r.timestamp >= until => {
                // Valid lines re-format to exactly what was read.
                (mark.binlog_index, mark.binlog_offset) = (reader.index(), reader.offset() - r.line().len() as u64);
                return Ok(());
            }
            Some(_) => {}
            None => {
                (mark.binlog_index, mark.binlog_offset) = (reader.index(), reader.offset());
                return Ok(());
            }
        }
    }
}

/// The answer status of one exchange (`Ok` carries EEXIST/ENOENT too).
async fn exchange(
    conn: &mut Connection,
    cmd: Command,
    status: u8,
    head: &[u8],
    file: Option<(&std::fs::File, u64, u64)>,
) -> Result<Status, ClientError> {
    match file {
        None => conn.send(cmd, status, head, 0).await?,
        Some((f, offset, len)) => {
            conn.send(cmd, status, head, len).await?;
            conn.send_file(f, offset, len).await?;
        }
    }
    match conn.recv_header().await {
        // 6.16.1 echoes the request on a successful rename (captures README): drop the body.
        Ok(h) => conn.recv_body(h.pkg_len, 1 << 20).await.map(|_| Status::OK),
        Err(ClientError::Status { status }) if status != Status::EINVAL => Ok(status),
        Err(e) => Err(e),
    }
}

/// SYNC_CREATE_FILE / SYNC_UPDATE_FILE with the file's current content (gone: nothing to do).
async fn send_whole(
    srv: &StorageServer,
    conn: &mut Connection,
    name: &str,
    ts: i32,
    update: bool,
) -> Result<Status, ClientError> {
    let Ok((_, path)) = srv.resolve_any(name) else { return Ok(Status::OK) };
    // Under the file's lock: an append or modify in progress (and possibly rolled back) must
    // not be half copied to the peer.
    let _lock = srv.lock_file(&path).await;
    let Some((file, base, size)) = open_local(srv, name, path).await else { return Ok(Status::OK) };
    let head = SyncFileHead {
        file_size: size,
        timestamp: ts,
        group: srv.group.clone(),
        filename: name.to_owned(),
        content_omitted: false,
    };
    let cmd = if update { Command::SyncUpdateFile } else { Command::SyncCreateFile };
    exchange(conn, cmd, 0, &head.encode_head(), Some((&file, base, size))).await
}

/// Opens a file to send: the file, where the content starts in it (a trunk-resident file is
/// sent from its slot, under its 60-character name, as C sends it) and its size; `None` if it
/// is gone. A file whose path the kernel has cached (one just written) opens on this thread
/// ([`Disk::open_for_read`]), a slot on the blocking pool.
async fn open_local(srv: &StorageServer, name: &str, path: PathBuf) -> Option<(std::fs::File, u64, u64)> {
    if let Some((n, root)) = srv.trunk_name(name) {
        return Disk::read(move || {
            let slot = crate::trunk::open(&n, &root).map_err(|e| Status::from_io(&e))?.ok_or(Status::ENOENT)?;
            Ok((slot.file, slot.content_offset, slot.size))
        })
        .await
        .ok();
    }
    let f = Disk::open_for_read(path).await.ok()?;
    let len = f.metadata().ok()?.len();
    Some((f, 0, len))
}

/// Replays one record on the peer.
async fn send(srv: &StorageServer, conn: &mut Connection, r: &Record) -> Result<(), ClientError> {
    let group = srv.group.clone();
    let ts = r.timestamp as i32;
    let local = |name: &str| srv.resolve_any(name).ok().map(|(_, p)| p);
    let st = match r.op {
        Op::Create => send_whole(srv, conn, &r.filename, ts, false).await?,
        Op::Update => send_whole(srv, conn, &r.filename, ts, true).await?,
        Op::Delete => {
            if let Some(p) = local(&r.filename) {
                if Disk::read(move || Ok(p.exists())).await.unwrap_or(false) {
                    return Ok(());
                }
            }
            let req = SyncDeleteReq { timestamp: ts, group: group.clone(), filename: r.filename.clone() };
            exchange(conn, Command::SyncDeleteFile, 0, &req.encode(), None).await?
        }
        Op::Append | Op::Modify => {
            let mut it = r.extra.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
            let (offset, len) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            let Some(path) = local(&r.filename) else { return Ok(()) };
            let lock = srv.lock_file(&path).await;
            let Some((file, _, _)) =
                open_local(srv, &r.filename, path).await.filter(|(_, _, size)| *size >= offset + len)
            else {
                // Truncated or deleted since: a later record carries the state.
                return Ok(());
            };
            let head =
                SyncRangeHead { offset, size: len, timestamp: ts, group: group.clone(), filename: r.filename.clone() };
            let cmd = if r.op == Op::Append { Command::SyncAppendFile } else { Command::SyncModifyFile };
            let sent = exchange(conn, cmd, 0, &head.encode_head(), Some((&file, offset, len))).await?;
            drop(lock);
            match sent {
                // The peer lacks the file or is behind: send it whole.
                Status::ENOENT => send_whole(srv, conn, &r.filename, ts, true).await?,
                s => s,
            }
        }
        Op::Truncate => {
            let mut it = r.extra.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
            let (old, new) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            let req = SyncTruncateReq {
                old_size: old,
                new_size: new,
                timestamp: ts,
                group: group.clone(),
                filename: r.filename.clone(),
            };
            match exchange(conn, Command::SyncTruncateFile, 0, &req.encode(), None).await? {
                // The peer's size differs: make it identical by sending the whole file.
                Status::EEXIST | Status::ENOENT => send_whole(srv, conn, &r.filename, ts, true).await?,
                s => s,
            }
        }
        Op::Rename if !r.replica => {
            let req =
                SyncLinkReq { timestamp: ts, group: group.clone(), dest: r.filename.clone(), src: r.extra.clone() };
            match exchange(conn, Command::SyncRenameFile, 0, &req.encode(), None).await? {
                Status::ENOENT => send_whole(srv, conn, &r.filename, ts, false).await?,
                s => s,
            }
        }
        Op::Rename => send_whole(srv, conn, &r.filename, ts, false).await?,
        Op::Link => {
            let req =
                SyncLinkReq { timestamp: ts, group: group.clone(), dest: r.filename.clone(), src: r.extra.clone() };
            exchange(conn, Command::SyncCreateLink, 0, &req.encode(), None).await?
        }
    };
    match st {
        Status::OK | Status::EEXIST => Ok(()),
        Status::ENOENT if matches!(r.op, Op::Delete | Op::Link) => Ok(()),
        status => Err(ClientError::Status { status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_window_is_cs() {
        assert!(in_sync_window((0, 0), (23, 59), 5), "the default: all day");
        assert!(in_sync_window((1, 0), (5, 0), 3 * 60));
        assert!(!in_sync_window((1, 0), (5, 0), 6 * 60));
        assert!(in_sync_window((22, 0), (6, 0), 23 * 60) && in_sync_window((22, 0), (6, 0), 60), "past midnight");
        assert!(!in_sync_window((22, 0), (6, 0), 12 * 60));
    }

    #[test]
    fn mark_files_are_named_as_c_names_them() {
        let peer = Brief { id: "100002".into(), ip: "127.0.0.27".into(), port: 23000, ..Default::default() };
        assert_eq!(mark_file_name(&peer, true), "100002.mark", "the C 6.16.1 storage-ID fixture's name");
        let peer = Brief { id: "127.0.0.34".into(), ip: "127.0.0.34".into(), port: 23000, ..Default::default() };
        assert_eq!(mark_file_name(&peer, false), "127.0.0.34_23000.mark", "the trunk fixture's name");
    }

    #[test]
    fn mark_files_need_all_seven_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("127.0.0.3_23000.mark");
        let m =
            Mark { binlog_index: 1, binlog_offset: 99, need_sync_old: true, until_timestamp: 5, ..Default::default() };
        m.save(&p).unwrap();
        assert_eq!(Mark::load(&p), Some(m));
        std::fs::write(&p, "binlog_index=1\nbinlog_offset=2\n").unwrap();
        assert_eq!(Mark::load(&p), None);
    }

    #[test]
    fn reader_follows_lines_and_rotation_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("binlog.000"), "1 C M00/00/00/a\ngarbage\n2 D M00/00/00/a\n").unwrap();
        std::fs::write(dir.path().join("binlog.001"), "3 C M00/00/00/b\n4 C M00/00/00/partial").unwrap();
        let mut r = BinlogReader::at(dir.path(), 0, 0);
        let mut seen = Vec::new();
        while let Some(l) = r.next((1, u64::MAX)).unwrap() {
            seen.push(match l {
                Line::Record(rec) => rec.timestamp.to_string(),
                Line::Invalid(_) => "bad".into(),
            });
        }
        assert_eq!(seen, ["1", "bad", "2", "3"], "the unfinished line is not read");
        assert_eq!((r.index(), r.offset()), (1, 16));
        // In the file being written, nothing past the committed size is read.
        let mut r = BinlogReader::at(dir.path(), 1, 0);
        assert!(r.next((1, 10)).unwrap().is_none(), "a line past the committed size");
        assert!(matches!(r.next((1, 16)).unwrap(), Some(Line::Record(_))));
        let mut m = Mark::default();
        skip_to(dir.path(), (1, u64::MAX), &mut m, 3).unwrap();
        assert_eq!((m.binlog_index, m.binlog_offset), (1, 0));
    }

    #[test]
    fn filter() {
        let rec = |op, replica, ts| Record { timestamp: ts, op, replica, filename: "x".into(), extra: String::new() };
        let full = Mark { need_sync_old: true, sync_old_done: false, until_timestamp: 10, ..Default::default() };
        let done = Mark { sync_old_done: true, ..full.clone() };
        assert!(wanted(&rec(Op::Create, false, 99), &done));
        assert!(wanted(&rec(Op::Create, true, 5), &full));
        assert!(!wanted(&rec(Op::Create, true, 11), &full));
        assert!(!wanted(&rec(Op::Append, true, 5), &full));
        assert!(!wanted(&rec(Op::Create, true, 5), &done));
    }
}
