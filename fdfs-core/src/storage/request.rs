//! A storage request decoded once, from its header and body, into one value per command (as
//! mini-redis's `Command::from_frame`). A command that carries content (uploads, appends,
//! replicated files) is decoded from its head only: the content stays on the socket and is read
//! by the command's function through a [`super::content::Content`].

use super::answer::{OpError, OpResult};
use super::StorageServer;
use crate::protocol::codec::expect_len;
use crate::protocol::listing::ListFilesReq;
use crate::protocol::peer::{
    FetchPathBinlogReq, ReportServerId, SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq,
    TrunkAllocReq, TrunkSlotReq,
};
use crate::protocol::storage::*;
use crate::protocol::tracker::FileReq;
use crate::protocol::{Command, Header, Profile, Status};
use crate::server::frame::read_body;
use crate::server::PeerStream;

#[derive(Debug)]
pub(super) enum Request {
    /// 11 UPLOAD_FILE, 23 UPLOAD_APPENDER_FILE.
    Upload {
        head: UploadHead,
        appender: bool,
    },
    /// 21 UPLOAD_SLAVE_FILE.
    UploadSlave(SlaveUploadHead),
    /// 24 APPEND_FILE.
    Append(AppendHead),
    /// 34 MODIFY_FILE.
    Modify(ModifyHead),
    /// 14 DOWNLOAD_FILE.
    Download(DownloadReq),
    /// 12 DELETE_FILE.
    Delete(FileReq),
    /// 13 SET_METADATA.
    SetMetadata(SetMetadataReq),
    /// 15 GET_METADATA.
    GetMetadata(FileReq),
    /// 22 QUERY_FILE_INFO; `flags` is the header's status byte (6.x: whether to compute the CRC32).
    QueryFileInfo {
        req: FileReq,
        flags: u8,
    },
    /// 36 TRUNCATE_FILE.
    Truncate(TruncateReq),
    /// 38 REGENERATE_APPENDER_FILENAME.
    Regenerate(String),
    ActiveTest,
    Quit,
    /// 9 REPORT_SERVER_ID: the sync source on this connection says who it is.
    ReportServerId(String),
    /// 16 SYNC_CREATE_FILE, 18 SYNC_UPDATE_FILE.
    SyncFile {
        head: SyncFileHead,
        update: bool,
    },
    /// 17 SYNC_DELETE_FILE.
    SyncDelete(SyncDeleteReq),
    /// 25 SYNC_APPEND_FILE, 35 SYNC_MODIFY_FILE.
    SyncRange {
        head: SyncRangeHead,
        append: bool,
    },
    /// 37 SYNC_TRUNCATE_FILE.
    SyncTruncate(SyncTruncateReq),
    /// 40 SYNC_RENAME_FILE, 19 SYNC_CREATE_LINK.
    SyncLink {
        req: SyncLinkReq,
        rename: bool,
    },
    /// 20 CREATE_LINK.
    CreateLink(CreateLinkReq),
    /// 26 FETCH_ONE_PATH_BINLOG (disk recovery of a member).
    FetchPathBinlog(FetchPathBinlogReq),
    /// 120 LIST_FILES (ours).
    ListFiles(ListFilesReq),
    /// 27 TRUNK_ALLOC_SPACE.
    TrunkAlloc(TrunkAllocReq),
    /// 28 TRUNK_ALLOC_CONFIRM (`confirm`, with the member's write status) and 29 TRUNK_FREE_SPACE.
    TrunkSlotDone {
        req: TrunkSlotReq,
        confirm: bool,
        write_status: u8,
    },
    /// 30 TRUNK_SYNC_BINLOG.
    TrunkSyncBinlog(Vec<u8>),
    /// 121 TRUNK_REMOVE_FILES (ours).
    TrunkRemoveFiles(Vec<u8>),
    /// 31 TRUNK_GET_BINLOG_SIZE.
    TrunkGetBinlogSize,
    /// 32 TRUNK_DELETE_BINLOG_MARKS.
    TrunkDeleteBinlogMarks,
    /// 33 TRUNK_TRUNCATE_BINLOG_FILE.
    TrunkTruncateBinlogFile,
    /// A command a storage does not answer (a tracker's): its body read and dropped.
    Unsupported(Command),
}

/// Who may send a peer command.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// A member of our group (27, 28, 29 to the trunk server).
    Member,
    /// The group's trunk server (30, 33, 121).
    TrunkServer,
    /// One of our trackers (32).
    Tracker,
}

impl Request {
    /// Reads and decodes the request `h` starts; EINVAL (closing the connection when content
    /// may be left on the socket) when it does not parse.
    pub(super) async fn read(sock: &mut PeerStream, cmd: Command, h: Header, srv: &StorageServer) -> OpResult<Self> {
        use Command as C;
        let empty = |b: &[u8]| expect_len(b, 0);
        Ok(match cmd {
            C::UploadFile | C::UploadAppenderFile => {
                Self::Upload { head: read_head(sock, h, srv).await?, appender: cmd == C::UploadAppenderFile }
            }
            C::UploadSlaveFile => Self::UploadSlave(read_head(sock, h, srv).await?),
            C::AppendFile => Self::Append(read_head(sock, h, srv).await?),
            C::ModifyFile => Self::Modify(read_head(sock, h, srv).await?),
            C::DownloadFile => Self::Download(decoded(sock, h, srv, DownloadReq::decode).await?),
            C::DeleteFile => Self::Delete(decoded(sock, h, srv, FileReq::decode).await?),
            C::SetMetadata => Self::SetMetadata(decoded(sock, h, srv, SetMetadataReq::decode).await?),
            C::GetMetadata => Self::GetMetadata(decoded(sock, h, srv, FileReq::decode).await?),
            C::QueryFileInfo => {
                Self::QueryFileInfo { req: decoded(sock, h, srv, FileReq::decode).await?, flags: h.status }
            }
            C::TruncateFile => Self::Truncate(decoded(sock, h, srv, TruncateReq::decode).await?),
            C::RegenerateAppenderFilename => Self::Regenerate(decoded(sock, h, srv, decode_bare_filename).await?),
            C::ActiveTest => decoded(sock, h, srv, empty).await.map(|()| Self::ActiveTest)?,
            C::Quit => Self::Quit,
            C::ReportServerId => {
                let r = decoded(sock, h, srv, |b| ReportServerId::decode(b, Profile::CLASSIC)).await?;
                if r.id.is_empty() || !crate::protocol::is_safe_token(&r.id) {
                    return Err(Status::EINVAL.into());
                }
                Self::ReportServerId(r.id)
            }
            C::SyncCreateFile | C::SyncUpdateFile => {
                // The header's status byte says whether the content follows (C's sync of a
                // file already there), so the head is decoded with it.
                let decode = |head: &[u8], len| SyncFileHead::decode_with_status(head, len, h.status);
                Self::SyncFile { head: read_head_with(sock, h, srv, decode).await?, update: cmd == C::SyncUpdateFile }
            }
            C::SyncDeleteFile => Self::SyncDelete(decoded(sock, h, srv, SyncDeleteReq::decode).await?),
            C::SyncAppendFile | C::SyncModifyFile => {
                Self::SyncRange { head: read_head(sock, h, srv).await?, append: cmd == C::SyncAppendFile }
            }
            C::SyncTruncateFile => Self::SyncTruncate(decoded(sock, h, srv, SyncTruncateReq::decode).await?),
            C::SyncRenameFile | C::SyncCreateLink => Self::SyncLink {
                req: decoded(sock, h, srv, SyncLinkReq::decode).await?,
                rename: cmd == C::SyncRenameFile,
            },
            C::CreateLink => Self::CreateLink(decoded(sock, h, srv, CreateLinkReq::decode).await?),
            C::FetchOnePathBinlog => {
                Self::FetchPathBinlog(decoded(sock, h, srv, |b| FetchPathBinlogReq::decode(b, Profile::CLASSIC)).await?)
            }
            C::ListFiles => Self::ListFiles(decoded(sock, h, srv, ListFilesReq::decode).await?),
            C::TrunkAllocSpace => {
                Self::TrunkAlloc(decoded(sock, h, srv, |b| TrunkAllocReq::decode(b, Profile::CLASSIC)).await?)
            }
            C::TrunkAllocConfirm | C::TrunkFreeSpace => Self::TrunkSlotDone {
                req: decoded(sock, h, srv, |b| TrunkSlotReq::decode(b, Profile::CLASSIC)).await?,
                confirm: cmd == C::TrunkAllocConfirm,
                write_status: h.status,
            },
            C::TrunkSyncBinlog => Self::TrunkSyncBinlog(small_body(sock, h, srv).await?),
            C::TrunkRemoveFiles => Self::TrunkRemoveFiles(small_body(sock, h, srv).await?),
            C::TrunkGetBinlogSize => decoded(sock, h, srv, empty).await.map(|()| Self::TrunkGetBinlogSize)?,
            C::TrunkDeleteBinlogMarks => decoded(sock, h, srv, empty).await.map(|()| Self::TrunkDeleteBinlogMarks)?,
            C::TrunkTruncateBinlogFile => decoded(sock, h, srv, empty).await.map(|()| Self::TrunkTruncateBinlogFile)?,
            _ => small_body(sock, h, srv).await.map(|_| Self::Unsupported(cmd))?,
        })
    }

    /// Who may send it, for the peer commands that change trunk space or the trunk binlog.
    pub(super) fn role(&self) -> Option<Role> {
        match self {
            Self::TrunkAlloc(_) | Self::TrunkSlotDone { .. } => Some(Role::Member),
            Self::TrunkSyncBinlog(_) | Self::TrunkRemoveFiles(_) | Self::TrunkTruncateBinlogFile => {
                Some(Role::TrunkServer)
            }
            Self::TrunkDeleteBinlogMarks => Some(Role::Tracker),
            _ => None,
        }
    }

    /// The file a client command names, for the access log (an upload's is its answer).
    pub(super) fn file_name(&self) -> &str {
        match self {
            Self::Append(h) => &h.filename,
            Self::Modify(h) => &h.filename,
            Self::Download(r) => &r.filename,
            Self::Delete(r) | Self::GetMetadata(r) | Self::QueryFileInfo { req: r, .. } => &r.filename,
            Self::SetMetadata(r) => &r.filename,
            Self::Truncate(r) => &r.filename,
            Self::Regenerate(name) => name,
            _ => "",
        }
    }

    /// The bytes of content that follow the head on the socket.
    pub(super) fn content_len(&self) -> u64 {
        match self {
            Self::Upload { head, .. } => head.file_size,
            Self::UploadSlave(head) => head.file_size,
            Self::Append(head) => head.size,
            Self::Modify(head) => head.size,
            Self::SyncFile { head, .. } if !head.content_omitted => head.file_size,
            Self::SyncRange { head, .. } => head.size,
            _ => 0,
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

/// A request read whole: at most `buff_size` bytes, as C's storage reads one.
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
