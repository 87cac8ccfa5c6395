//! One connection to the storage: the only place requests are read off its socket. Each request
//! is decoded once into a [`Request`] (small ones read whole, bounded by `buff_size`; uploads,
//! appends, modifies and replicated files as a head, their content left on the socket), then
//! [`dispatch`] runs its command's function, with the counters and the access log around the
//! call. After an EINVAL answer the connection closes, as FastDFS's storage does.

use std::net::SocketAddr;
use std::sync::Arc;

use super::answer::{OpError, OpResult};
use super::content::Content;
use super::located::{open_located, Opened};
use super::ops;
use super::request::{Request, Role};
use super::StorageServer;
use super::{replica, trunk};
use crate::protocol::peer::{FetchPathBinlogReq, SyncFileHead, SyncRangeHead};
use crate::protocol::storage::*;
use crate::protocol::tracker::FileReq;
use crate::protocol::{Command, Header, Status};
use crate::server::answer::{self, Reply};
use crate::server::frame::{next_header, Waits};
use crate::server::{PeerStream, Shutdown};
use crate::zero_copy::send_head_and_file;

/// A connection's state: what every command's function takes.
struct Conn<'a> {
    srv: &'a Arc<StorageServer>,
    sock: &'a mut PeerStream,
    peer: SocketAddr,
    /// The sync source that said who it is (9 REPORT_SERVER_ID) on this connection.
    source: Option<String>,
}

pub(super) async fn handle(srv: Arc<StorageServer>, mut sock: PeerStream, peer: SocketAddr, mut shutdown: Shutdown) {
    let waits = Waits::from_network_timeout(srv.config.network_timeout);
    let mut cx = Conn { srv: &srv, sock: &mut sock, peer, source: None };
    let mut served = 0u64;
    loop {
        let Some(header) = next_header(cx.sock, peer, &mut shutdown, waits, served, i64::MAX as u64).await else {
            break;
        };
        served += 1;
        let result = match Command::try_from(header.cmd) {
            Ok(cmd) => dispatch(&mut cx, cmd, header).await,
            Err(code) => {
                tracing::warn!("{peer}: unknown command {code}");
                Err(Status::EINVAL.into())
            }
        };
        if !answer::send(cx.sock, peer, header.cmd, result).await {
            break;
        }
    }
}

/// A file ID this storage created: its group and name. The access log names it when the
/// request named no file (an upload).
fn created(srv: &StorageServer, filename: String, logged: &mut String) -> Reply {
    if logged.is_empty() {
        logged.clone_from(&filename);
    }
    Reply::Body(FileIdResp { group: srv.group.clone(), filename }.encode().to_vec())
}

/// Decodes one request, checks who sent it when that matters, runs its command's function
/// and counts it; the access log gets a line for a client command.
async fn dispatch(cx: &mut Conn<'_>, cmd: Command, h: Header) -> OpResult<Reply> {
    let started = std::time::Instant::now();
    let req = Request::read(cx.sock, cmd, h, cx.srv).await?;
    if let Some(role) = req.role() {
        from_role(cx.srv, cmd, cx.peer, role)?;
    }
    // The file a client command names, for the access log.
    let mut logged = req.file_name().to_owned();
    let content_len = req.content_len();
    let result = apply(cx, req, &mut logged).await;
    let (ok, bytes) = match &result {
        Ok(Reply::Close) => (cmd == Command::Quit, 0),
        Ok(Reply::Sent(n)) => (true, *n),
        Ok(_) => (true, content_len),
        Err(_) => (false, content_len),
    };
    cx.srv.count_request(cmd, ok, bytes, started.elapsed());
    if let Some(action) = access_action(cmd).filter(|_| crate::logging::access_enabled()) {
        let status = result.as_ref().err().map_or(0, |e| e.status.0);
        // As C: request and response lengths with their 10-byte headers.
        let answered = match &result {
            Ok(Reply::Body(b)) => b.len() as u64,
            Ok(Reply::Sent(n)) => *n,
            _ => 0,
        } + 10;
        let used = crate::logging::access_time_used(started.elapsed());
        let ip = cx.peer.ip();
        // The name is the client's: one line per request whatever it sent.
        let logged: String = logged.chars().map(|c| if c.is_control() || c == ' ' { '?' } else { c }).collect();
        crate::logging::access(&format!("{ip} {action} {logged} {status} {used} {} {answered}", h.pkg_len + 10));
    }
    result
}

/// Runs a request's command: one function per command, here or in the room that owns it.
async fn apply(cx: &mut Conn<'_>, req: Request, logged: &mut String) -> OpResult<Reply> {
    let srv = cx.srv;
    let source = cx.source.as_deref();
    match req {
        Request::Upload { head, appender } => {
            let mut content = Content::new(cx.sock, head.file_size, srv.body_timer());
            ops::upload(srv, &head, &mut content, appender).await.map(|name| created(srv, name, logged))
        }
        Request::UploadSlave(head) => {
            let mut content = Content::new(cx.sock, head.file_size, srv.body_timer());
            ops::upload_slave(srv, &head, &mut content).await.map(|name| created(srv, name, logged))
        }
        Request::Append(head) => {
            let mut content = Content::new(cx.sock, head.size, srv.body_timer());
            done(ops::append(srv, &head, &mut content).await)
        }
        Request::Modify(head) => {
            let mut content = Content::new(cx.sock, head.size, srv.body_timer());
            done(ops::modify(srv, &head, &mut content).await)
        }
        Request::Download(req) => download(srv, cx.sock, &req).await,
        Request::Delete(req) => done(delete(srv, req).await),
        Request::SetMetadata(req) => done(ops::set_metadata(srv, req).await),
        Request::GetMetadata(req) => body(ops::get_metadata(srv, &req.group, &req.filename).await),
        Request::QueryFileInfo { req, flags } => {
            let info = ops::file_info(srv, &req.group, &req.filename, flags).await?;
            Ok(Reply::Body(info.encode(srv.identity.answer_profile()).to_vec()))
        }
        Request::Truncate(req) => done(ops::truncate(srv, req).await),
        Request::Regenerate(name) => Ok(created(srv, ops::regenerate(srv, name).await?, logged)),
        Request::ActiveTest => Ok(Reply::Body(Vec::new())),
        Request::Quit => Ok(Reply::Close),
        Request::ReportServerId(id) => {
            cx.source = Some(id);
            Ok(Reply::Body(Vec::new()))
        }
        Request::SyncFile { head, update } => sync_file(cx, head, update).await,
        Request::SyncDelete(req) => done(replica::sync_delete(srv, source, req).await),
        Request::SyncRange { head, append } => sync_range(cx, head, append).await,
        Request::SyncTruncate(req) => done(replica::sync_truncate(srv, source, req).await),
        Request::SyncLink { req, rename } => done(replica::sync_rename_or_link(srv, source, req, rename).await),
        Request::CreateLink(req) => Ok(created(srv, ops::create_link(srv, req).await?, logged)),
        Request::FetchPathBinlog(req) => fetch_path_binlog(srv, cx.sock, req).await,
        Request::ListFiles(req) => {
            srv.check_group(&req.group)?;
            if let Err(e) = super::listing::send(srv, cx.sock, req).await {
                tracing::debug!("{}: listing files: {e}", cx.peer);
                return Ok(Reply::Close);
            }
            Ok(Reply::Sent(0))
        }
        Request::TrunkAlloc(req) => body(trunk::alloc_space(srv, req).await),
        Request::TrunkSlotDone { req, confirm, write_status } => {
            done(trunk::slot_done(srv, req, confirm, write_status).await)
        }
        Request::TrunkSyncBinlog(lines) => done(trunk::receive_binlog(srv, lines).await),
        Request::TrunkRemoveFiles(lines) => done(trunk::receive_removed(srv, lines).await),
        Request::TrunkGetBinlogSize => Ok(Reply::Body(trunk::binlog_size(srv))),
        Request::TrunkDeleteBinlogMarks => done(trunk::delete_marks(srv).await),
        Request::TrunkTruncateBinlogFile => done(trunk::restart_binlog(srv).await),
        Request::Unsupported(cmd) => {
            tracing::debug!("command {cmd:?} not supported");
            Err(OpError { status: Status::EOPNOTSUPP, close: false })
        }
    }
}

fn done(r: Result<(), impl Into<OpError>>) -> OpResult<Reply> {
    r.map(|()| Reply::Body(Vec::new())).map_err(Into::into)
}

fn body(r: Result<Vec<u8>, impl Into<OpError>>) -> OpResult<Reply> {
    r.map(Reply::Body).map_err(Into::into)
}

/// 12 DELETE_FILE, of a file of this storage's group.
async fn delete(srv: &Arc<StorageServer>, req: FileReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    ops::delete(srv, req.filename).await
}

/// 16/18: a member's new or changed file; its content follows unless the head says it is
/// omitted. A wrong group closes the connection (the content is still on the socket).
async fn sync_file(cx: &mut Conn<'_>, head: SyncFileHead, update: bool) -> OpResult<Reply> {
    let srv = cx.srv;
    srv.check_group(&head.group).map_err(|_| OpError { status: Status::EINVAL, close: true })?;
    let size = if head.content_omitted { 0 } else { head.file_size };
    let mut content = Content::new(cx.sock, size, srv.body_timer());
    done(replica::sync_file(srv, cx.source.as_deref(), &head, &mut content, update).await)
}

/// 25/35: a range of a member's appender file, its content following.
async fn sync_range(cx: &mut Conn<'_>, head: SyncRangeHead, append: bool) -> OpResult<Reply> {
    let srv = cx.srv;
    srv.check_group(&head.group).map_err(|s| OpError { status: s, close: true })?;
    let mut content = Content::new(cx.sock, head.size, srv.body_timer());
    done(replica::sync_range(srv, cx.source.as_deref(), &head, &mut content, append).await)
}

/// 26 FETCH_ONE_PATH_BINLOG: a store path's file list for a member recovering that disk. The
/// answer's length is not known up front: it ends with the connection.
async fn fetch_path_binlog(
    srv: &Arc<StorageServer>,
    sock: &mut PeerStream,
    req: FetchPathBinlogReq,
) -> OpResult<Reply> {
    srv.check_group(&req.group)?;
    if req.store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL.into());
    }
    if let Err(e) = super::disk_recovery::send_path_file_list(srv, sock, req.store_path_index).await {
        tracing::warn!("sending store path {}'s file list: {e}", req.store_path_index);
    }
    Ok(Reply::Close)
}

/// Refuses (EACCES, one log line) a peer command from an address that does not have `role`:
/// unauthenticated packets from anyone else must not change trunk space or the trunk binlog.
/// This host's own addresses are trusted: C's storages and trackers make these connections
/// without binding them, so a C peer on this host (several storages on one machine, on
/// loopback or on aliases of one interface) arrives from the host's address, not its own.
fn from_role(srv: &StorageServer, cmd: Command, peer: SocketAddr, role: Role) -> OpResult<()> {
    let ip = peer.ip();
    if srv.is_own_host(ip) {
        return Ok(());
    }
    let (ok, who) = match role {
        Role::Member => (srv.is_member_host(ip), "a member of group"),
        Role::TrunkServer => (srv.is_trunk_server_host(ip), "the trunk server of group"),
        Role::Tracker => (srv.is_tracker_host(ip), "a tracker of group"),
    };
    if ok {
        return Ok(());
    }
    tracing::warn!("{peer}: refused {cmd:?}: not from {who} {}", srv.group);
    Err(Status::EACCES.into())
}

/// The access log's name for a client command (C's `ACCESS_LOG_ACTION_*`).
fn access_action(cmd: Command) -> Option<&'static str> {
    use Command as C;
    Some(match cmd {
        C::UploadFile | C::UploadAppenderFile | C::UploadSlaveFile => "upload",
        C::DownloadFile => "download",
        C::DeleteFile => "delete",
        C::GetMetadata => "get_metadata",
        C::SetMetadata => "set_metadata",
        C::ModifyFile => "modify",
        C::AppendFile => "append",
        C::TruncateFile => "truncate",
        C::QueryFileInfo => "status",
        C::RegenerateAppenderFilename => "rename",
        _ => return None,
    })
}

/// 14: answer header, then the bytes straight from the page cache with sendfile(2).
async fn download(srv: &Arc<StorageServer>, sock: &mut PeerStream, req: &DownloadReq) -> OpResult<Reply> {
    srv.check_group(&req.group)?;
    let at = srv.paths.locate(&req.filename)?;
    let Opened { file, offset: base, size, .. } = open_located(&srv.paths, at).await?;
    // FastDFS ≥ 6.15.4: an offset at or past the end is EINVAL (also for empty files, which
    // clients such as npm `fdfs` would otherwise wait on forever); too long is clamped.
    if req.offset >= size {
        return Err(Status::EINVAL.into());
    }
    let left = size - req.offset;
    let n = if req.bytes == 0 { left } else { req.bytes.min(left) };
    let header = Header::response(Status::OK, n as usize).encode();
    // Once the header is out, an error can only close the connection.
    let timeout = srv.config.network_timeout;
    if let Err(e) = send_head_and_file(sock, &header, &file, base + req.offset, n, timeout).await {
        // The file shrank or the peer left: after the header, closing is the only signal.
        tracing::warn!("download of {} cut short: {e}", req.filename);
        return Ok(Reply::Close);
    }
    Ok(Reply::Sent(n))
}
