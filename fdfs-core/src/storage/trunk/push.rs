//! The trunk server's push of its trunk binlog (30 TRUNK_SYNC_BINLOG, 33 first for a member
//! never pushed to) and of the retired files' list to every other member, from a mark per member.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{ClientError, Connection};
use crate::protocol::report::Brief;
use crate::protocol::{Command, Status};
use crate::server::Shutdown;
use crate::storage::disk::Disk;
use crate::storage::StorageServer;

use super::TrunkLog;

/// Why a push to one member stopped (it is tried again within a second, on a new connection).
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("the trunk binlog or its mark file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Member(#[from] ClientError),
    #[error("refused the trunk binlog: {0}")]
    Refused(Status),
}

/// Most bytes of trunk binlog one TRUNK_SYNC_BINLOG carries: well under any `buff_size` a
/// receiver reads a request into.
const PUSH_CHUNK: usize = 32 << 10;

/// While this storage is the trunk server: pushes its trunk binlog to every other member
/// (30), from where its mark file says, starting over (33 first) for a member never pushed to.
pub async fn push_loop(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let mut peers: HashMap<String, PeerPush> = HashMap::new();
    let mut marks_epoch = srv.trunk.marks_epoch.load(Ordering::Acquire);
    loop {
        let news = srv.trunk.news.notified();
        let epoch = srv.trunk.marks_epoch.load(Ordering::Acquire);
        if epoch != marks_epoch || !srv.trunk.is_server() {
            // The marks were deleted (32, a compression) or the role went: start from the files.
            marks_epoch = epoch;
            peers.clear();
        }
        if srv.trunk.is_server() {
            // Read before pushing: what every member reached counts only up to here.
            let mut everywhere = srv.trunk.log.len();
            // Every member that may become trunk server one day gets it, whatever its status
            // now (one still copying the group may be ACTIVE by the time this one dies).
            for peer in srv.membership.peers() {
                use crate::protocol::status::{DELETED, IP_CHANGED, OFFLINE};
                if matches!(peer.status, OFFLINE | DELETED | IP_CHANGED) {
                    continue;
                }
                let state = peers.entry(peer.id.clone()).or_default();
                match push_to(&srv, &peer, state).await {
                    Ok(reached) => everywhere = everywhere.min(reached),
                    Err(e) => {
                        // An unreachable member is left out rather than holding up every upload.
                        tracing::warn!("pushing the trunk binlog to {}: {e}", peer.id);
                        state.conn = None;
                    }
                }
            }
            srv.trunk.pushed.send_replace(everywhere);
        }
        tokio::select! {
            _ = shutdown.wait() => {
                for (id, p) in &mut peers {
                    if let Err(e) = p.save(&srv.trunk.log, true).await {
                        tracing::warn!("saving the trunk binlog mark of {id}: {e}");
                    }
                }
                return;
            }
            _ = news => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Where the push to one member stands. The mark file is rewritten at most once a second: a
/// mark that lags only makes the member receive some lines twice, which a replay skips.
#[derive(Debug, Default)]
struct PeerPush {
    conn: Option<Connection>,
    /// The mark file's name (`ip_port` or the ID), and the position in memory.
    key: String,
    offset: Option<u64>,
    saved: u64,
    saved_at: Option<std::time::Instant>,
    removed: RemovedPush,
}

impl PeerPush {
    async fn save(&mut self, log: &Arc<TrunkLog>, now: bool) -> Result<(), PushError> {
        let Some(offset) = self.offset else { return Ok(()) };
        let due = now || self.saved_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if offset == self.saved || !due || self.key.is_empty() {
            return Ok(());
        }
        save_mark(log, &self.key, offset).await?;
        (self.saved, self.saved_at) = (offset, Some(std::time::Instant::now()));
        Ok(())
    }
}

/// Brings `peer` up to the end of the trunk binlog; returns how far it now has it.
async fn push_to(srv: &Arc<StorageServer>, peer: &Brief, state: &mut PeerPush) -> Result<u64, PushError> {
    let log = srv.trunk.log.clone();
    if state.offset.is_none() {
        state.key =
            if srv.identity.params().use_storage_id { peer.id.clone() } else { format!("{}_{}", peer.ip, peer.port) };
        let (l, k) = (log.clone(), state.key.clone());
        let mark = Disk::io(move || Ok(l.mark(&k))).await?;
        (state.offset, state.saved) = (Some(mark), mark);
    }
    let mut offset = state.offset.unwrap_or(0);
    if offset == log.len() && offset > 0 && state.removed.is_current(&srv.trunk.removed.log) {
        state.save(&log, false).await?;
        return Ok(offset);
    }
    if state.conn.is_none() {
        let addr = crate::config::join_host_port(&peer.ip, peer.port as u16);
        let c = srv.connect_to_peer(&addr).await?;
        state.conn = Some(c);
    }
    let conn = state.conn.as_mut().expect("connected above");
    if offset == 0 || offset > log.len() {
        conn.call(Command::TrunkTruncateBinlogFile, &[]).await?;
        offset = 0;
        state.offset = Some(0);
        state.save(&log, true).await?;
    }
    let conn = state.conn.as_mut().expect("connected above");
    let offset = match send_log(conn, &log, offset, Command::TrunkSyncBinlog).await? {
        Sent::All(offset) => offset,
        Sent::Refused(status) => return Err(PushError::Refused(status)),
    };
    state.offset = Some(offset);
    state.save(&log, false).await?;
    // After the binlog: the `D` lines of retired files are there before the files go.
    let conn = state.conn.as_mut().expect("connected above");
    push_removed(srv, &state.key, conn, &mut state.removed).await?;
    Ok(offset)
}

/// How [`send_log`] ended.
enum Sent {
    /// The member has the log up to here (its end when sending began, or later).
    All(u64),
    /// The member answered a chunk with this status.
    Refused(Status),
}

/// Sends `log` from `offset` to its end over `conn` with `cmd`, in chunks of whole lines.
async fn send_log(
    conn: &mut Connection,
    log: &Arc<TrunkLog>,
    mut offset: u64,
    cmd: Command,
) -> Result<Sent, PushError> {
    while offset < log.len() {
        let l = log.clone();
        let chunk = Disk::io(move || l.read_from(offset, PUSH_CHUNK)).await?;
        if chunk.is_empty() {
            break;
        }
        match conn.call(cmd, &chunk).await {
            Ok(_) => offset += chunk.len() as u64,
            Err(ClientError::Status { status }) => return Ok(Sent::Refused(status)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Sent::All(offset))
}

async fn save_mark(log: &Arc<TrunkLog>, key: &str, offset: u64) -> Result<(), PushError> {
    let (l, k) = (log.clone(), key.to_owned());
    Ok(Disk::io(move || l.save_mark(&k, offset)).await?)
}

/// Where the `removed` list stands with one member, beside its trunk binlog push.
#[derive(Debug, Default)]
struct RemovedPush {
    offset: Option<u64>,
    /// A C member answers the command EINVAL: it keeps its copies, and is not asked again.
    refused: bool,
}

impl RemovedPush {
    /// Nothing to send: the member has the whole list, or does not take it.
    fn is_current(&self, log: &TrunkLog) -> bool {
        self.refused || self.offset == Some(log.len())
    }
}

/// Brings `peer` up to the end of our `removed` list on `conn` (121), from its mark file.
async fn push_removed(
    srv: &Arc<StorageServer>,
    key: &str,
    conn: &mut Connection,
    state: &mut RemovedPush,
) -> Result<(), PushError> {
    let log = srv.trunk.removed.log.clone();
    if state.is_current(&log) {
        return Ok(());
    }
    let from = match state.offset {
        Some(o) => o,
        None => {
            let (l, k) = (log.clone(), key.to_owned());
            Disk::io(move || Ok(l.mark(&k))).await?
        }
    };
    let offset = match send_log(conn, &log, from, Command::TrunkRemoveFiles).await? {
        Sent::All(offset) => offset,
        // C answers an unknown command EINVAL, an older fastdfs-rs EOPNOTSUPP: either way the
        // member is not asked again, and its trunk binlog push goes on.
        Sent::Refused(status) => {
            tracing::info!("member {key} refused retired trunk files ({status}): it keeps its copies");
            state.refused = true;
            return Ok(());
        }
    };
    save_mark(&log, key, offset).await?;
    state.offset = Some(offset);
    Ok(())
}
