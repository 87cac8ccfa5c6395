//! One connection to the storage. Small requests are read whole (bounded by `buff_size`);
//! uploads, appends and modifies are read as a head and then streamed to disk. After an
//! EINVAL answer the connection closes, as FastDFS's storage does.

use std::net::SocketAddr;
use std::sync::Arc;

use super::ops::{self, OpError, OpResult};
use super::replica;
use super::stats::{add, count};
use super::StorageServer;
use crate::protocol::codec::expect_len;
use crate::protocol::peer::{ReportServerId, SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq};
use crate::protocol::storage::*;
use crate::protocol::tracker::FileReq;
use crate::protocol::{Command, Header, Profile, Status};
use crate::server::frame::{next_header, read_body, write_answer};
use crate::server::{PeerStream, Shutdown};
use crate::zero_copy::send_file;

enum Reply {
    Body(Vec<u8>),
    /// Already written (downloads).
    Sent,
    Quit,
}

pub(super) async fn handle(srv: Arc<StorageServer>, mut sock: PeerStream, peer: SocketAddr, mut shutdown: Shutdown) {
    // The sync source that said who it is (9 REPORT_SERVER_ID) on this connection.
    let mut source: Option<String> = None;
    let timeout = srv.config.network_timeout.max(std::time::Duration::from_secs(1));
    loop {
        let Some(header) = next_header(&mut sock, &mut shutdown, timeout, i64::MAX as u64).await else { break };
        let result = match Command::try_from(header.cmd) {
            Ok(cmd) => dispatch(&srv, &mut sock, cmd, header, &mut source).await,
            Err(code) => {
                log::warn!("{peer}: unknown command {code}");
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
                    log::debug!("{peer}: command {} failed: {}", header.cmd, e.status);
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
    T::decode_head(&head, h.pkg_len).map_err(|_| inval)
}

async fn small_body(sock: &mut PeerStream, h: Header, srv: &StorageServer) -> OpResult<Vec<u8>> {
    if h.pkg_len > srv.config.buff_size {
        return Err(Status::EINVAL.into());
    }
    read_body(sock, h.pkg_len, srv.config.network_timeout)
        .await
        .map_err(|_| OpError { status: Status::EIO, close: true })
}

fn file_id_body(srv: &StorageServer, filename: String) -> Reply {
    Reply::Body(FileIdResp { group: srv.group.clone(), filename }.encode().to_vec())
}

/// Runs a blocking disk operation off the async workers.
async fn blocking<T: Send + 'static>(
    srv: &Arc<StorageServer>,
    f: impl FnOnce(&StorageServer) -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let s = srv.clone();
    tokio::task::spawn_blocking(move || f(&s)).await.unwrap_or(Err(Status::EIO))
}

async fn dispatch(
    srv: &Arc<StorageServer>,
    sock: &mut PeerStream,
    cmd: Command,
    h: Header,
    source: &mut Option<String>,
) -> OpResult<Reply> {
    use Command as C;
    let st = &srv.stats;
    match cmd {
        C::UploadFile | C::UploadAppenderFile => {
            let head: UploadHead = read_head(sock, h, srv).await?;
            let name =
                ops::upload(srv, sock, head.store_path_index, head.file_size, &head.ext, cmd == C::UploadAppenderFile)
                    .await?;
            Ok(file_id_body(srv, name))
        }
        C::UploadSlaveFile => {
            let head: SlaveUploadHead = read_head(sock, h, srv).await?;
            let name =
                ops::upload_slave(srv, sock, &head.master_filename, &head.prefix, &head.ext, head.file_size).await?;
            Ok(file_id_body(srv, name))
        }
        C::AppendFile => {
            let head: AppendHead = read_head(sock, h, srv).await?;
            let r = ops::write_range(srv, sock, &head.filename, None, head.size).await;
            count(&st.total_append_count, &st.success_append_count, r.is_ok());
            add(&st.total_append_bytes, head.size);
            if r.is_ok() {
                add(&st.success_append_bytes, head.size);
            }
            r.map(|_| Reply::Body(Vec::new()))
        }
        C::ModifyFile => {
            let head: ModifyHead = read_head(sock, h, srv).await?;
            let r = ops::write_range(srv, sock, &head.filename, Some(head.offset), head.size).await;
            count(&st.total_modify_count, &st.success_modify_count, r.is_ok());
            add(&st.total_modify_bytes, head.size);
            if r.is_ok() {
                add(&st.success_modify_bytes, head.size);
            }
            r.map(|_| Reply::Body(Vec::new()))
        }
        C::DownloadFile => {
            let body = small_body(sock, h, srv).await?;
            let req = DownloadReq::decode(&body).map_err(|_| Status::EINVAL)?;
            let r = download(srv, sock, &req).await;
            count(&st.total_download_count, &st.success_download_count, matches!(r, Ok(Reply::Sent)));
            r
        }
        C::DeleteFile => {
            let req = FileReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            srv.check_group(&req.group)?;
            let (_, path) = srv.resolve(&req.filename)?;
            let _lock = srv.lock_file(&path).await;
            let r = blocking(srv, move |s| ops::delete(s, &req.filename)).await;
            count(&st.total_delete_count, &st.success_delete_count, r.is_ok());
            Ok(r.map(|_| Reply::Body(Vec::new()))?)
        }
        C::SetMetadata => {
            let req = SetMetadataReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            // A merge reads, combines and rewrites: under the file's lock, or two at once lose one.
            let (_, path) = srv.resolve(&req.filename)?;
            let _lock = srv.lock_file(&path).await;
            let r = blocking(srv, move |s| ops::set_metadata(s, &req)).await;
            count(&st.total_set_meta_count, &st.success_set_meta_count, r.is_ok());
            Ok(r.map(|_| Reply::Body(Vec::new()))?)
        }
        C::GetMetadata => {
            let req = FileReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            let r = blocking(srv, move |s| ops::get_metadata(s, &req.group, &req.filename)).await;
            count(&st.total_get_meta_count, &st.success_get_meta_count, r.is_ok());
            Ok(r.map(Reply::Body)?)
        }
        C::QueryFileInfo => {
            let req = FileReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            let flags = h.status;
            let r = blocking(srv, move |s| ops::file_info(s, &req.group, &req.filename, flags)).await?;
            Ok(Reply::Body(r.encode(srv.answer_profile()).to_vec()))
        }
        C::TruncateFile => {
            let req = TruncateReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            let r = ops::truncate(srv, &req.filename, req.new_size).await;
            count(&st.total_truncate_count, &st.success_truncate_count, r.is_ok());
            Ok(r.map(|_| Reply::Body(Vec::new()))?)
        }
        C::RegenerateAppenderFilename => {
            let name = decode_bare_filename(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            let new = ops::regenerate(srv, &name).await?;
            Ok(file_id_body(srv, new))
        }
        C::ActiveTest => {
            expect_len(&small_body(sock, h, srv).await?, 0).map_err(|_| Status::EINVAL)?;
            Ok(Reply::Body(Vec::new()))
        }
        C::Quit => Ok(Reply::Quit),
        C::ReportServerId => {
            let r = ReportServerId::decode(&small_body(sock, h, srv).await?, Profile::CLASSIC)
                .map_err(|_| Status::EINVAL)?;
            if r.id.is_empty() || !crate::protocol::is_safe_token(&r.id) {
                return Err(Status::EINVAL.into());
            }
            *source = Some(r.id);
            Ok(Reply::Body(Vec::new()))
        }
        C::SyncCreateFile | C::SyncUpdateFile => {
            let inval = OpError { status: Status::EINVAL, close: true };
            if h.pkg_len < SyncFileHead::FIXED_LEN as u64 {
                return Err(inval);
            }
            let mut head =
                read_body(sock, SyncFileHead::FIXED_LEN as u64, srv.config.network_timeout).await.map_err(|_| inval)?;
            let len = SyncFileHead::head_len(&head).map_err(|_| inval)?;
            let rest = read_body(sock, (len - SyncFileHead::FIXED_LEN) as u64, srv.config.network_timeout)
                .await
                .map_err(|_| inval)?;
            head.extend_from_slice(&rest);
            let v = SyncFileHead::decode_with_status(&head, h.pkg_len, h.status).map_err(|_| inval)?;
            srv.check_group(&v.group).map_err(|_| inval)?;
            replica::sync_file(srv, sock, source.as_deref(), &v, cmd == C::SyncUpdateFile)
                .await
                .map(|_| Reply::Body(Vec::new()))
        }
        C::SyncDeleteFile => {
            let v = SyncDeleteReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            srv.check_group(&v.group)?;
            let src = source.clone();
            Ok(blocking(srv, move |s| replica::sync_delete(s, src.as_deref(), &v.filename, v.timestamp as i64))
                .await
                .map(|_| Reply::Body(Vec::new()))?)
        }
        C::SyncAppendFile | C::SyncModifyFile => {
            let v: SyncRangeHead = read_head(sock, h, srv).await?;
            srv.check_group(&v.group).map_err(|s| OpError { status: s, close: true })?;
            replica::sync_range(srv, sock, source.as_deref(), &v, cmd == C::SyncAppendFile)
                .await
                .map(|_| Reply::Body(Vec::new()))
        }
        C::SyncTruncateFile => {
            let v = SyncTruncateReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            srv.check_group(&v.group)?;
            let src = source.clone();
            Ok(blocking(srv, move |s| {
                replica::sync_truncate(s, src.as_deref(), &v.filename, v.old_size, v.new_size, v.timestamp as i64)
            })
            .await
            .map(|_| Reply::Body(Vec::new()))?)
        }
        C::SyncRenameFile | C::SyncCreateLink => {
            let v = SyncLinkReq::decode(&small_body(sock, h, srv).await?).map_err(|_| Status::EINVAL)?;
            srv.check_group(&v.group)?;
            let src = source.clone();
            let rename = cmd == C::SyncRenameFile;
            Ok(blocking(srv, move |s| {
                if rename {
                    replica::sync_rename(s, src.as_deref(), &v.dest, &v.src, v.timestamp as i64)
                } else {
                    replica::sync_link(s, src.as_deref(), &v.dest, &v.src, v.timestamp as i64)
                }
            })
            .await
            .map(|_| Reply::Body(Vec::new()))?)
        }
        C::CreateLink => {
            // FastDHT de-duplication is not supported: refuse cleanly.
            let _ = small_body(sock, h, srv).await?;
            Err(Status::EOPNOTSUPP.into())
        }
        _ => {
            // Replication and trunk commands are not served yet: drain what fits and refuse.
            if h.pkg_len > srv.config.buff_size {
                return Err(Status::EINVAL.into());
            }
            let _ = small_body(sock, h, srv).await?;
            log::debug!("command {cmd:?} not supported");
            Err(OpError { status: Status::EOPNOTSUPP, close: false })
        }
    }
}

/// 14: answer header, then the bytes straight from the page cache with sendfile(2).
async fn download(srv: &Arc<StorageServer>, sock: &mut PeerStream, req: &DownloadReq) -> OpResult<Reply> {
    srv.check_group(&req.group)?;
    let (_, path) = srv.resolve(&req.filename)?;
    let p = path.clone();
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(p))
        .await
        .map_err(|_| Status::EIO)?
        .map_err(OpError::from)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Status::EISDIR.into());
    }
    let size = meta.len();
    // FastDFS ≥ 6.15.4: an offset at or past the end is EINVAL (also for empty files, which
    // clients such as npm `fdfs` would otherwise wait on forever); too long is clamped.
    if req.offset >= size {
        return Err(Status::EINVAL.into());
    }
    let left = size - req.offset;
    let n = if req.bytes == 0 { left } else { req.bytes.min(left) };
    srv.stats.total_download_bytes.fetch_add(n as i64, std::sync::atomic::Ordering::Relaxed);
    let mut header = [0u8; 10];
    header.copy_from_slice(&Header::response(Status::OK, n as usize).encode());
    // The header goes first; after it, an error can only close the connection.
    if tokio::io::AsyncWriteExt::write_all(sock, &header).await.is_err() {
        return Ok(Reply::Quit);
    }
    if let Err(e) = send_file(sock, &file, req.offset, n, srv.config.network_timeout).await {
        // The file shrank or the peer left: after the header, closing is the only signal.
        log::warn!("download of {} cut short: {e}", req.filename);
        return Ok(Reply::Quit);
    }
    srv.stats.success_download_bytes.fetch_add(n as i64, std::sync::atomic::Ordering::Relaxed);
    Ok(Reply::Sent)
}
