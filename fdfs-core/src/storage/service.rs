//! One connection to the storage: the only place requests are read off its socket. Small
//! requests are read whole (bounded by `buff_size`); uploads, appends, modifies and replicated
//! files are read as a head, and their content through a [`Content`]. After an
//! EINVAL answer the connection closes, as FastDFS's storage does.

use std::net::SocketAddr;
use std::sync::Arc;

use super::content::Content;
use super::disk::Disk;
use super::ops::{self, OpError, OpResult};
use super::StorageServer;
use super::{replica, trunk};
use crate::protocol::codec::expect_len;
use crate::protocol::peer::{
    FetchPathBinlogReq, ReportServerId, SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq,
    TrunkAllocReq, TrunkSlotReq,
};
use crate::protocol::storage::*;
use crate::protocol::tracker::FileReq;
use crate::protocol::{Command, Header, Profile, Status};
use crate::server::frame::{next_header, read_body, write_answer, Waits};
use crate::server::{PeerStream, Shutdown};
use crate::zero_copy::send_head_and_file;

enum Reply {
    Body(Vec<u8>),
    /// Already written (downloads).
    Sent,
    Quit,
}

pub(super) async fn handle(srv: Arc<StorageServer>, mut sock: PeerStream, peer: SocketAddr, mut shutdown: Shutdown) {
    // The sync source that said who it is (9 REPORT_SERVER_ID) on this connection.
    let mut source: Option<String> = None;
    let waits = Waits::from_network_timeout(srv.config.network_timeout);
    let mut served = 0u64;
    loop {
        let Some(header) = next_header(&mut sock, peer, &mut shutdown, waits, served, i64::MAX as u64).await else {
            break;
        };
        served += 1;
        let result = match Command::try_from(header.cmd) {
            Ok(cmd) => dispatch(&srv, &mut sock, cmd, header, &mut source, peer).await,
            Err(code) => {
                tracing::warn!("{peer}: unknown command {code}");
                Err(Status::EINVAL.into())
            }
        };
        match result {
            Ok(Reply::Body(body)) => {
                if write_answer(&mut sock, Status::OK, &body).await.is_err() {
                    break;
                }
            }
            Ok(Reply::Sent) => {}
            Ok(Reply::Quit) => break,
            Err(e) => {
                if e.status != Status::ENOENT {
                    tracing::debug!("{peer}: command {} failed: {}", header.cmd, e.status);
                }
                if write_answer(&mut sock, e.status, &[]).await.is_err() {
                    break;
                }
                if e.close {
                    linger_close(&mut sock).await;
                    break;
                }
            }
        }
    }
}

/// Closes after an error answer while the client may still be sending the body: closing with
/// unread bytes would reset the connection and the client could lose the answer (ENOSPC seen
/// as "connection reset"). The write side is shut, then what still arrives is read and
/// dropped for a short, bounded while.
async fn linger_close(sock: &mut PeerStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = sock.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut left: usize = 64 << 20;
    while left > 0 {
        match tokio::time::timeout_at(until, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Reads a streamed request's head (fixed part, then the filenames it announces).
async fn read_head<T: StreamedHead>(sock: &mut PeerStream, h: Header, srv: &StorageServer) -> OpResult<T> {
    read_head_with(sock, h, srv, T::decode_head).await
}

/// As [`read_head`], decoded by `decode` (the head and the request's length).
async fn read_head_with<T: StreamedHead, E>(
    sock: &mut PeerStream,
    h: Header,
    srv: &StorageServer,
    decode: impl FnOnce(&[u8], u64) -> Result<T, E>,
) -> OpResult<T> {
    let inval = OpError { status: Status::EINVAL, close: true };
    if h.pkg_len < T::FIXED_LEN as u64 {
        return Err(inval);
    }
    let timeout = srv.config.network_timeout;
    let mut head = read_body(sock, T::FIXED_LEN as u64, timeout).await.map_err(|_| inval)?;
    let len = T::head_len(&head).map_err(|_| inval)?;
    if len as u64 > h.pkg_len {
        return Err(inval);
    }
    let rest = read_body(sock, (len - T::FIXED_LEN) as u64, timeout).await.map_err(|_| inval)?;
    head.extend_from_slice(&rest);
    decode(&head, h.pkg_len).map_err(|_| inval)
}

async fn small_body(sock: &mut PeerStream, h: Header, srv: &StorageServer) -> OpResult<Vec<u8>> {
    if h.pkg_len > srv.config.buff_size {
        return Err(Status::EINVAL.into());
    }
    read_body(sock, h.pkg_len, srv.config.network_timeout)
        .await
        .map_err(|_| OpError { status: Status::EIO, close: true })
}

/// A small request decoded, or EINVAL.
async fn decoded<T>(
    sock: &mut PeerStream,
    h: Header,
    srv: &StorageServer,
    decode: impl FnOnce(&[u8]) -> Result<T, crate::protocol::DecodeError>,
) -> OpResult<T> {
    decode(&small_body(sock, h, srv).await?).map_err(|e| {
        // A refusal says why, once: what a peer or client sent that does not parse.
        let peer = sock.peer_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
        tracing::warn!("{peer}: command {} refused: {e}", h.cmd);
        Status::EINVAL.into()
    })
}

fn file_id_body(srv: &StorageServer, filename: String) -> Reply {
    Reply::Body(FileIdResp { group: srv.group.clone(), filename }.encode().to_vec())
}

fn done(r: Result<(), impl Into<OpError>>) -> OpResult<Reply> {
    r.map(|()| Reply::Body(Vec::new())).map_err(Into::into)
}

/// Decodes one request, runs its command's function and counts it: the content a streamed
/// command carries is read only through [`Content`].
async fn dispatch(
    srv: &Arc<StorageServer>,
    sock: &mut PeerStream,
    cmd: Command,
    h: Header,
    source: &mut Option<String>,
    peer: SocketAddr,
) -> OpResult<Reply> {
    use Command as C;
    let started = std::time::Instant::now();
    // The file a client command names, for the access log.
    let mut logged = String::new();
    let (result, bytes) = match cmd {
        C::UploadFile | C::UploadAppenderFile => {
            let head: UploadHead = read_head(sock, h, srv).await?;
            let mut content = Content::new(sock, head.file_size, srv.body_timer());
            let r = ops::upload(srv, &head, &mut content, cmd == C::UploadAppenderFile).await;
            logged = r.clone().unwrap_or_default();
            (r.map(|name| file_id_body(srv, name)), head.file_size)
        }
        C::UploadSlaveFile => {
            let head: SlaveUploadHead = read_head(sock, h, srv).await?;
            let mut content = Content::new(sock, head.file_size, srv.body_timer());
            let r = ops::upload_slave(srv, &head, &mut content).await;
            logged = r.clone().unwrap_or_default();
            (r.map(|name| file_id_body(srv, name)), head.file_size)
        }
        C::AppendFile => {
            let head: AppendHead = read_head(sock, h, srv).await?;
            logged.clone_from(&head.filename);
            let mut content = Content::new(sock, head.size, srv.body_timer());
            (done(ops::append(srv, &head, &mut content).await), head.size)
        }
        C::ModifyFile => {
            let head: ModifyHead = read_head(sock, h, srv).await?;
            logged.clone_from(&head.filename);
            let mut content = Content::new(sock, head.size, srv.body_timer());
            (done(ops::modify(srv, &head, &mut content).await), head.size)
        }
        C::DownloadFile => {
            let req = decoded(sock, h, srv, DownloadReq::decode).await?;
            logged.clone_from(&req.filename);
            match download(srv, sock, &req).await {
                Ok((reply, n)) => (Ok(reply), n),
                Err(e) => (Err(e), 0),
            }
        }
        C::DeleteFile => {
            let req = decoded(sock, h, srv, FileReq::decode).await?;
            logged.clone_from(&req.filename);
            let r = match srv.check_group(&req.group) {
                Ok(()) => ops::delete(srv, req.filename).await,
                Err(e) => Err(e),
            };
            (done(r), 0)
        }
        C::SetMetadata => {
            let req = decoded(sock, h, srv, SetMetadataReq::decode).await?;
            logged.clone_from(&req.filename);
            (done(ops::set_metadata(srv, req).await), 0)
        }
        C::GetMetadata => {
            let req = decoded(sock, h, srv, FileReq::decode).await?;
            logged.clone_from(&req.filename);
            (ops::get_metadata(srv, &req.group, &req.filename).await.map(Reply::Body).map_err(Into::into), 0)
        }
        C::QueryFileInfo => {
            let req = decoded(sock, h, srv, FileReq::decode).await?;
            logged.clone_from(&req.filename);
            let r = ops::file_info(srv, &req.group, &req.filename, h.status).await;
            (r.map(|info| Reply::Body(info.encode(srv.answer_profile()).to_vec())).map_err(Into::into), 0)
        }
        C::TruncateFile => {
            let req = decoded(sock, h, srv, TruncateReq::decode).await?;
            logged.clone_from(&req.filename);
            (done(ops::truncate(srv, req).await), 0)
        }
        C::RegenerateAppenderFilename => {
            let name = decoded(sock, h, srv, decode_bare_filename).await?;
            logged.clone_from(&name);
            (ops::regenerate(srv, name).await.map(|n| file_id_body(srv, n)).map_err(Into::into), 0)
        }
        C::ActiveTest => {
            decoded(sock, h, srv, |b| expect_len(b, 0)).await?;
            (Ok(Reply::Body(Vec::new())), 0)
        }
        C::Quit => (Ok(Reply::Quit), 0),
        C::ReportServerId => {
            let r = decoded(sock, h, srv, |b| ReportServerId::decode(b, Profile::CLASSIC)).await?;
            if r.id.is_empty() || !crate::protocol::is_safe_token(&r.id) {
                return Err(Status::EINVAL.into());
            }
            *source = Some(r.id);
            (Ok(Reply::Body(Vec::new())), 0)
        }
        C::SyncCreateFile | C::SyncUpdateFile => {
            let inval = OpError { status: Status::EINVAL, close: true };
            // The header's status byte says whether the content follows (C's sync of a file
            // already there), so the head is decoded with it.
            let v =
                read_head_with(sock, h, srv, |head, len| SyncFileHead::decode_with_status(head, len, h.status)).await?;
            srv.check_group(&v.group).map_err(|_| inval)?;
            let size = if v.content_omitted { 0 } else { v.file_size };
            let mut content = Content::new(sock, size, srv.body_timer());
            let r = replica::sync_file(srv, source.as_deref(), &v, &mut content, cmd == C::SyncUpdateFile).await;
            (done(r), size)
        }
        C::SyncDeleteFile => {
            let req = decoded(sock, h, srv, SyncDeleteReq::decode).await?;
            (done(replica::sync_delete(srv, source.as_deref(), req).await), 0)
        }
        C::SyncAppendFile | C::SyncModifyFile => {
            let head: SyncRangeHead = read_head(sock, h, srv).await?;
            srv.check_group(&head.group).map_err(|s| OpError { status: s, close: true })?;
            let mut content = Content::new(sock, head.size, srv.body_timer());
            let r = replica::sync_range(srv, source.as_deref(), &head, &mut content, cmd == C::SyncAppendFile).await;
            (done(r), head.size)
        }
        C::SyncTruncateFile => {
            let req = decoded(sock, h, srv, SyncTruncateReq::decode).await?;
            (done(replica::sync_truncate(srv, source.as_deref(), req).await), 0)
        }
        C::SyncRenameFile | C::SyncCreateLink => {
            let req = decoded(sock, h, srv, SyncLinkReq::decode).await?;
            let rename = cmd == C::SyncRenameFile;
            (done(replica::sync_rename_or_link(srv, source.as_deref(), req, rename).await), 0)
        }
        C::CreateLink => {
            let req = decoded(sock, h, srv, CreateLinkReq::decode).await?;
            (ops::create_link(srv, req).await.map(|n| file_id_body(srv, n)).map_err(Into::into), 0)
        }
        C::FetchOnePathBinlog => {
            let req = decoded(sock, h, srv, |b| FetchPathBinlogReq::decode(b, Profile::CLASSIC)).await?;
            srv.check_group(&req.group)?;
            if req.store_path_index as usize >= srv.paths.paths.len() {
                return Err(Status::EINVAL.into());
            }
            // The answer's length is not known up front: it ends with the connection.
            if let Err(e) = super::disk_recovery::send_path_file_list(srv, sock, req.store_path_index).await {
                tracing::warn!("sending store path {}'s file list: {e}", req.store_path_index);
            }
            (Ok(Reply::Quit), 0)
        }
        C::ListFiles => {
            let req = decoded(sock, h, srv, crate::protocol::listing::ListFilesReq::decode).await?;
            srv.check_group(&req.group)?;
            if let Err(e) = super::listing::send(srv, sock, req).await {
                tracing::debug!("{peer}: listing files: {e}");
                return Ok(Reply::Quit);
            }
            (Ok(Reply::Sent), 0)
        }
        C::TrunkAllocSpace => {
            let req = decoded(sock, h, srv, |b| TrunkAllocReq::decode(b, Profile::CLASSIC)).await?;
            from_role(srv, cmd, peer, Role::Member)?;
            (trunk::alloc_space(srv, req).await.map(Reply::Body).map_err(Into::into), 0)
        }
        C::TrunkAllocConfirm | C::TrunkFreeSpace => {
            let req = decoded(sock, h, srv, |b| TrunkSlotReq::decode(b, Profile::CLASSIC)).await?;
            from_role(srv, cmd, peer, Role::Member)?;
            (done(trunk::slot_done(srv, req, cmd == C::TrunkAllocConfirm, h.status).await), 0)
        }
        C::TrunkSyncBinlog => {
            let body = small_body(sock, h, srv).await?;
            from_role(srv, cmd, peer, Role::TrunkServer)?;
            (done(trunk::receive_binlog(srv, body).await), 0)
        }
        C::TrunkRemoveFiles => {
            let body = small_body(sock, h, srv).await?;
            from_role(srv, cmd, peer, Role::TrunkServer)?;
            (done(trunk::receive_removed(srv, body).await), 0)
        }
        C::TrunkGetBinlogSize => {
            decoded(sock, h, srv, |b| expect_len(b, 0)).await?;
            (Ok(Reply::Body(trunk::binlog_size(srv))), 0)
        }
        C::TrunkDeleteBinlogMarks => {
            decoded(sock, h, srv, |b| expect_len(b, 0)).await?;
            from_role(srv, cmd, peer, Role::Tracker)?;
            (done(trunk::delete_marks(srv).await), 0)
        }
        C::TrunkTruncateBinlogFile => {
            decoded(sock, h, srv, |b| expect_len(b, 0)).await?;
            from_role(srv, cmd, peer, Role::TrunkServer)?;
            (done(trunk::restart_binlog(srv).await), 0)
        }
        _ => {
            let _ = small_body(sock, h, srv).await?;
            tracing::debug!("command {cmd:?} not supported");
            (Err(OpError { status: Status::EOPNOTSUPP, close: false }), 0)
        }
    };
    let ok = match &result {
        Ok(Reply::Quit) => cmd == C::Quit,
        Ok(_) => true,
        Err(_) => false,
    };
    srv.count_request(cmd, ok, bytes, started.elapsed());
    if let Some(action) = access_action(cmd).filter(|_| crate::logging::access_enabled()) {
        let status = result.as_ref().err().map_or(0, |e| e.status.0);
        // As C: request and response lengths with their 10-byte headers.
        let answered = match &result {
            Ok(Reply::Body(b)) => b.len() as u64,
            Ok(Reply::Sent) => bytes,
            _ => 0,
        } + 10;
        let used = crate::logging::access_time_used(started.elapsed());
        let ip = peer.ip();
        // The name is the client's: one line per request whatever it sent.
        let logged: String = logged.chars().map(|c| if c.is_control() || c == ' ' { '?' } else { c }).collect();
        crate::logging::access(&format!("{ip} {action} {logged} {status} {used} {} {answered}", h.pkg_len + 10));
    }
    result
}

/// Who may send a peer command.
#[derive(Clone, Copy)]
enum Role {
    /// A member of our group (27, 28, 29 to the trunk server).
    Member,
    /// The group's trunk server (30, 33).
    TrunkServer,
    /// One of our trackers (32).
    Tracker,
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

/// 14: answer header, then the bytes straight from the page cache with sendfile(2). Returns
/// how the request ended and the bytes it was to send.
async fn download(srv: &Arc<StorageServer>, sock: &mut PeerStream, req: &DownloadReq) -> OpResult<(Reply, u64)> {
    srv.check_group(&req.group)?;
    let (name, path) = srv.resolve(&req.filename)?;
    let s = srv.clone();
    // The file, where its content starts in it, and its size.
    let (file, base, size) = if crate::trunk::is_trunk_name(&name) {
        Disk::read(move || {
            let slot = s.open_trunk_content(&name)?.ok_or(Status::ENOENT)?;
            Ok((slot.file, slot.content_offset, slot.size))
        })
        .await?
    } else {
        let file = Disk::open_for_read(path).await.map_err(|e| Status::from_io(&e))?;
        // The inode is in memory once the file is open: no disk read.
        let meta = file.metadata().map_err(|e| Status::from_io(&e))?;
        if !meta.is_file() {
            return Err(Status::EISDIR.into());
        }
        (file, 0, meta.len())
    };
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
        return Ok((Reply::Quit, n));
    }
    Ok((Reply::Sent, n))
}
