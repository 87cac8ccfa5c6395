//! Sending replication (PROTOCOL.md §6.2, §6.3): one task per other member of the group reads
//! the binlog from where that peer's mark file says and replays each record with the SYNC_*
//! commands. A task wakes as soon as a record is written, so a change reaches the peers in
//! milliseconds; a failed record is retried on a new connection, so nothing is skipped.
//!
//! A sender's life: it waits until the member may be sent to ([`wait_for_peer`]), finds its
//! place in our binlog ([`mark`], a new mark placed by the trackers' answer of who copies the
//! group to a new member), connects and says who it is, then [`Sender::run`] reads the binlog
//! and replays each wanted record ([`record`]) until shutdown.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::binlog::{BinlogReader, Line, Op, Record};
use super::StorageServer;
use crate::client::reporter::{report_status, sync_src_req};
use crate::client::{ClientError, Connection};
use crate::protocol::peer::ReportServerId;
use crate::protocol::report::Brief;
use crate::protocol::status;
use crate::protocol::{Command, Profile};
use crate::server::Shutdown;

mod mark;
mod record;

pub use mark::Mark;
use mark::{mark_file_name, save_mark, skip_to};

/// Why a sender stopped; its task starts it again, on a new connection, after a pause.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no tracker said who copies the group to this member{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NoSyncSource(Option<ClientError>),
    #[error("the mark file: {0}")]
    Mark(std::io::Error),
    #[error("reading the binlog: {0}")]
    Binlog(std::io::Error),
    #[error("the member: {0}")]
    Peer(#[from] ClientError),
    #[error("{line}: {source}")]
    Record { line: String, source: ClientError },
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

/// Waits until the group's member list changes (or shutdown); false on shutdown.
async fn peers_changed(rx: &mut watch::Receiver<Vec<Brief>>, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.wait() => false,
        r = rx.changed() => r.is_ok(),
    }
}

/// Keeps one sync task per peer that is not deleted.
pub async fn manager(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut changes = srv.membership.watch_peers();
    loop {
        // A task that ended (its peer was gone) is started again when the member comes back;
        // one that failed restarts itself.
        for p in srv.membership.peers() {
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
            tracing::warn!("reporting {} as {} to {t}: {e}", brief.id, brief.status.name());
        }
    }
}

/// Who copies the group to `peer` and up to when (86 SYNC_SRC_REQ), from the first tracker
/// that answers.
async fn ask_sync_source(srv: &StorageServer, peer: &str) -> Result<Option<(String, i64)>, SyncError> {
    let mut last = None;
    for t in &srv.config.tracker_servers {
        match sync_src_req(&t.primary(), srv.config.connect_timeout, &srv.group, peer).await {
            Ok(s) => return Ok(s.map(|s| (s.src_id, s.until_timestamp))),
            Err(e) => last = Some(e),
        }
    }
    Err(SyncError::NoSyncSource(last))
}

/// Waits until the member `peer_id` has a status `ready` accepts; `None` when it is gone
/// (deleted, its address changed) or on shutdown.
async fn wait_for_peer(
    srv: &StorageServer,
    peer_id: &str,
    changes: &mut watch::Receiver<Vec<Brief>>,
    shutdown: &mut Shutdown,
    ready: impl Fn(status::StorageStatus) -> bool,
) -> Option<Brief> {
    loop {
        match srv.membership.peer(peer_id) {
            None => return None,
            Some(b) if matches!(b.status, status::DELETED | status::IP_CHANGED) => return None,
            Some(b) if ready(b.status) => return Some(b),
            Some(_) => {}
        }
        if !peers_changed(changes, shutdown).await {
            return None;
        }
    }
}

/// A mark for a member this storage never sent to: from the start of the binlog when this
/// storage copies the group to it (`need_sync_old`), else past the records older than the
/// copy (another member sends those).
async fn new_mark(srv: &StorageServer, peer_id: &str, sync_dir: &Path, mark_path: &Path) -> Result<Mark, SyncError> {
    let (need_sync_old, until) = match ask_sync_source(srv, peer_id).await? {
        Some((src, until)) => (src == srv.identity.my_id(), until),
        None => (false, 0),
    };
    let mut m = Mark { need_sync_old, until_timestamp: until, ..Default::default() };
    if !need_sync_old && until > 0 {
        skip_to(sync_dir, srv.binlog.position(), &mut m, until).map_err(SyncError::Binlog)?;
    }
    m.save(mark_path).map_err(SyncError::Mark)?;
    tracing::info!("sync to {peer_id}: new mark, need_sync_old={need_sync_old}, until={until}");
    Ok(m)
}

async fn run_peer(srv: &Arc<StorageServer>, peer_id: &str, mut shutdown: Shutdown) -> Result<(), SyncError> {
    use status::{ACTIVE, SYNCING, WAIT_SYNC};
    let mut changes = srv.membership.watch_peers();
    // Only ACTIVE, WAIT_SYNC and SYNCING destinations are sent to.
    let ready = |s| matches!(s, ACTIVE | WAIT_SYNC | SYNCING);
    let Some(peer) = wait_for_peer(srv, peer_id, &mut changes, &mut shutdown, ready).await else { return Ok(()) };
    let sync_dir = srv.binlog.dir().to_owned();
    let mark_path = sync_dir.join(mark_file_name(&peer, srv.identity.params().use_storage_id));
    let mark = match Mark::load(&mark_path) {
        Some(m) => m,
        None => new_mark(srv, peer_id, &sync_dir, &mark_path).await?,
    };
    // Others fill a new member; we only add what is newer, once it is ACTIVE.
    if !mark.need_sync_old && wait_for_peer(srv, peer_id, &mut changes, &mut shutdown, |s| s == ACTIVE).await.is_none()
    {
        return Ok(());
    }
    let addr = crate::config::join_host_port(&peer.ip, peer.port as u16);
    let mut conn = srv.connect_to_peer(&addr).await?;
    conn.call(Command::ReportServerId, &ReportServerId { id: srv.identity.my_id() }.encode(Profile::CLASSIC)).await?;
    if mark.need_sync_old && !mark.sync_old_done && peer.status == WAIT_SYNC {
        report_to_trackers(srv, Brief { status: SYNCING, ..peer.clone() }).await;
    }
    let reader = BinlogReader::at(&sync_dir, mark.binlog_index, mark.binlog_offset);
    let sender = Sender { srv, peer_id, peer, conn, shutdown, mark, mark_path, unsaved: 0 };
    sender.run(reader).await
}

/// The next lines of the binlog up to what is committed, each with the position after it.
async fn read_ahead(
    srv: &StorageServer,
    mut reader: BinlogReader,
) -> Result<(BinlogReader, Vec<(Line, (u32, u64))>), SyncError> {
    let writing = srv.binlog.position();
    if reader.near_end(writing) {
        // Caught up: a few lines just written (a hand-off would cost more than the read).
        let lines = reader.next_batch(writing, READ_AHEAD).map_err(SyncError::Binlog)?;
        return Ok((reader, lines));
    }
    let (reader, lines) = tokio::task::spawn_blocking(move || {
        let lines = reader.next_batch(writing, READ_AHEAD);
        (reader, lines)
    })
    .await
    .map_err(|e| SyncError::Binlog(std::io::Error::other(e)))?;
    Ok((reader, lines.map_err(SyncError::Binlog)?))
}

/// What a sender does after it caught up and waited.
enum Idle {
    /// Read the binlog again.
    Read,
    /// The member is gone, or the storage stops.
    Stop,
}

/// One member's sender, connected: where it is in our binlog and the records not yet marked.
struct Sender<'a> {
    srv: &'a Arc<StorageServer>,
    peer_id: &'a str,
    peer: Brief,
    conn: Connection,
    shutdown: Shutdown,
    mark: Mark,
    mark_path: PathBuf,
    /// Records handled since the mark file was last saved.
    unsaved: u64,
}

impl Sender<'_> {
    async fn run(mut self, mut reader: BinlogReader) -> Result<(), SyncError> {
        let srv = self.srv;
        // Lines read ahead (on the blocking pool, a batch at a time), each with the position after it.
        let mut ahead: VecDeque<(Line, (u32, u64))> = VecDeque::new();
        loop {
            // Registered before the binlog is read: a record committed while this sender reads
            // or saves its mark then still wakes it (a waiter registered afterwards would sleep
            // until the next heartbeat).
            let notified = srv.binlog_news();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ahead.is_empty() {
                let lines;
                (reader, lines) = read_ahead(srv, reader).await?;
                ahead = lines.into();
            }
            match ahead.pop_front() {
                Some((line, after)) => {
                    if !self.replay(line, after).await? {
                        return Ok(());
                    }
                }
                None => match self.caught_up((reader.index(), reader.offset()), notified).await? {
                    Idle::Read => {}
                    Idle::Stop => return Ok(()),
                },
            }
        }
    }

    async fn save_mark(&mut self) -> Result<(), SyncError> {
        save_mark(&self.mark, &self.mark_path).await?;
        self.unsaved = 0;
        Ok(())
    }

    /// At the end of the binlog: a full copy is reported done, then the sender waits for a
    /// new record, saving its mark once the member has been idle a moment (not after every
    /// record: a lost position only re-sends records, which the member skips) and keeping its
    /// connection alive.
    async fn caught_up(
        &mut self,
        at: (u32, u64),
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<Idle, SyncError> {
        let (srv, peer_id) = (self.srv, self.peer_id);
        (self.mark.binlog_index, self.mark.binlog_offset) = at;
        if self.mark.need_sync_old && !self.mark.sync_old_done {
            self.mark.sync_old_done = true;
            self.save_mark().await?;
            if srv.membership.peer(peer_id).is_some_and(|b| matches!(b.status, status::SYNCING | status::WAIT_SYNC)) {
                report_to_trackers(srv, Brief { status: status::OFFLINE, ..self.peer.clone() }).await;
            }
            tracing::info!("sync to {peer_id}: full copy done");
        }
        srv.membership.note_sent(peer_id, at, 0);
        let unsaved = self.unsaved;
        let idle_save = async {
            if unsaved > 0 {
                tokio::time::sleep(MARK_IDLE_SAVE).await
            } else {
                std::future::pending().await
            }
        };
        let heartbeat = srv.config.heart_beat_interval.max(Duration::from_millis(200));
        tokio::select! {
            _ = self.shutdown.wait() => {
                if self.unsaved > 0 {
                    self.save_mark().await?;
                }
                return Ok(Idle::Stop);
            }
            _ = notified => {}
            _ = idle_save => {
                self.save_mark().await?;
                return Ok(Idle::Read);
            }
            _ = tokio::time::sleep(heartbeat) => self.conn.active_test().await?,
        }
        let gone =
            srv.membership.peer(peer_id).is_none_or(|b| matches!(b.status, status::DELETED | status::IP_CHANGED));
        Ok(if gone { Idle::Stop } else { Idle::Read })
    }

    /// Handles one binlog line (`after`: the position after it); false when replication to
    /// this member stops here.
    async fn replay(&mut self, line: Line, after: (u32, u64)) -> Result<bool, SyncError> {
        let (srv, peer_id) = (self.srv, self.peer_id);
        self.mark.scan_row_count += 1;
        match line {
            // C's meaning of file_sync_skip_invalid_record: by default a damaged record stops
            // replication to this member where it is (retrying would only log it again), so the
            // operator learns of it before the members drift apart; with the key set it is skipped.
            Line::Invalid(text) if !srv.config.file_sync_skip_invalid_record => {
                tracing::error!(
                    "sync to {peer_id}: bad binlog line {text:?} at {}/{}; replication to it stops here until \
                     a restart with file_sync_skip_invalid_record = true",
                    self.mark.binlog_index,
                    self.mark.binlog_offset
                );
                if self.unsaved > 0 {
                    self.save_mark().await?;
                }
                self.shutdown.wait().await;
                return Ok(false);
            }
            Line::Invalid(text) => tracing::warn!("sync to {peer_id}: skipping a bad binlog line: {text:?}"),
            Line::Record(r) => {
                if wanted(&r, &self.mark) {
                    if !self.until_window_open().await? {
                        return Ok(false);
                    }
                    record::send(
                        &record::Local { group: &srv.group, paths: &srv.paths, locks: &srv.file_locks },
                        &mut self.conn,
                        &r,
                    )
                    .await
                    .map_err(|source| SyncError::Record { line: r.line().trim_end().to_owned(), source })?;
                    self.mark.sync_row_count += 1;
                }
                srv.membership.note_sent(peer_id, after, r.timestamp);
            }
        }
        self.unsaved += 1;
        if self.unsaved >= srv.config.write_mark_file_freq {
            (self.mark.binlog_index, self.mark.binlog_offset) = after;
            self.save_mark().await?;
        }
        if !srv.config.sync_interval.is_zero() {
            tokio::time::sleep(srv.config.sync_interval).await;
        }
        Ok(true)
    }

    /// Outside `sync_start_time`..`sync_end_time` the sender waits (its connection kept
    /// alive), as C's does; false on shutdown.
    async fn until_window_open(&mut self) -> Result<bool, SyncError> {
        let config = &self.srv.config;
        let (start, end) = (config.sync_start_time, config.sync_end_time);
        if !sync_window_open(start, end) {
            tracing::info!(
                "sync to {}: outside the replication window {:02}:{:02}-{:02}:{:02}; changes held back until it opens",
                self.peer_id,
                start.0,
                start.1,
                end.0,
                end.1
            );
        }
        while !sync_window_open(start, end) {
            tokio::select! {
                _ = self.shutdown.wait() => return Ok(false),
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            self.conn.active_test().await?;
        }
        Ok(true)
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
