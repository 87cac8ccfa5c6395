//! Storage commands on a storage server's address (as a tracker returned it).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::{expect_empty, Connection, MAX_BUFFERED_ANSWER};
use super::error::{ClientError, ClientResult};
use super::pool::Pool;
use crate::protocol::storage::*;
use crate::protocol::tracker::FileReq;
use crate::protocol::{Command, DecodeError};

/// File content for uploads and appends: in memory, or streamed from a reader of known length.
pub enum Content<'a> {
    Bytes(&'a [u8]),
    Reader(&'a mut (dyn AsyncRead + Unpin + Send), u64),
}

impl std::fmt::Debug for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Content({} bytes)", self.len())
    }
}

impl Content<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Reader(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Normal,
    Appender,
}

#[derive(Debug, Clone)]
pub struct StorageClient {
    pool: Arc<Pool>,
}

fn decode<T>(addr: &str, r: Result<T, DecodeError>) -> ClientResult<T> {
    r.map_err(|e| ClientError::Decode { addr: addr.to_owned(), source: e })
}

impl StorageClient {
    pub fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    /// Sends a head plus content and reads the answer; small content goes out in the same write
    /// as the header.
    async fn exchange(&self, addr: &str, cmd: Command, head: &[u8], content: Content<'_>) -> ClientResult<Bytes> {
        let mut conn = self.pool.get(addr).await?;
        let r = Self::exchange_on(&mut conn, cmd, head, content).await;
        if r.is_ok() {
            self.pool.put(conn);
        }
        r
    }

    async fn exchange_on(
        conn: &mut Connection,
        cmd: Command,
        head: &[u8],
        content: Content<'_>,
    ) -> ClientResult<Bytes> {
        match content {
            Content::Bytes(b) if b.len() <= 256 << 10 => {
                let mut body = Vec::with_capacity(head.len() + b.len());
                body.extend_from_slice(head);
                body.extend_from_slice(b);
                conn.send(cmd, 0, &body, 0).await?;
            }
            Content::Bytes(mut b) => {
                let len = b.len() as u64;
                conn.send(cmd, 0, head, len).await?;
                conn.send_content(&mut b, len).await?;
            }
            Content::Reader(r, len) => {
                conn.send(cmd, 0, head, len).await?;
                conn.send_content(r, len).await?;
            }
        }
        let h = conn.recv_header().await?;
        conn.recv_body(h.pkg_len, MAX_BUFFERED_ANSWER).await
    }

    async fn simple(&self, addr: &str, cmd: Command, body: &[u8]) -> ClientResult<Bytes> {
        self.exchange(addr, cmd, body, Content::Bytes(&[])).await
    }

    /// 11 / 23. `store_path_index` −1 lets the storage choose.
    pub async fn upload(
        &self,
        addr: &str,
        kind: UploadKind,
        store_path_index: i8,
        ext: &str,
        content: Content<'_>,
    ) -> ClientResult<FileIdResp> {
        let head = UploadHead { store_path_index, file_size: content.len(), ext: ext.into() }.encode_head();
        let cmd = match kind {
            UploadKind::Normal => Command::UploadFile,
            UploadKind::Appender => Command::UploadAppenderFile,
        };
        let body = self.exchange(addr, cmd, &head, content).await?;
        decode(addr, FileIdResp::decode(&body))
    }

    /// 21.
    pub async fn upload_slave(
        &self,
        addr: &str,
        master_filename: &str,
        prefix: &str,
        ext: &str,
        content: Content<'_>,
    ) -> ClientResult<FileIdResp> {
        let head = SlaveUploadHead {
            master_filename: master_filename.into(),
            file_size: content.len(),
            prefix: prefix.into(),
            ext: ext.into(),
        }
        .encode_head();
        let body = self.exchange(addr, Command::UploadSlaveFile, &head, content).await?;
        decode(addr, FileIdResp::decode(&body))
    }

    /// 14 into memory (bounded by [`MAX_BUFFERED_ANSWER`]). `bytes` 0 = to the end.
    pub async fn download(
        &self,
        addr: &str,
        group: &str,
        filename: &str,
        offset: u64,
        bytes: u64,
    ) -> ClientResult<Bytes> {
        let req = DownloadReq { offset, bytes, group: group.into(), filename: filename.into() };
        self.simple(addr, Command::DownloadFile, &req.encode()).await
    }

    /// 14 streamed into `dst`; returns the number of bytes written.
    pub async fn download_into(
        &self,
        addr: &str,
        group: &str,
        filename: &str,
        offset: u64,
        bytes: u64,
        dst: &mut (impl AsyncWrite + Unpin),
    ) -> ClientResult<u64> {
        let req = DownloadReq { offset, bytes, group: group.into(), filename: filename.into() };
        let mut conn = self.pool.get(addr).await?;
        conn.send(Command::DownloadFile, 0, &req.encode(), 0).await?;
        let h = conn.recv_header().await?;
        conn.recv_body_into(h.pkg_len, dst).await?;
        self.pool.put(conn);
        Ok(h.pkg_len)
    }

    fn file_req(group: &str, filename: &str) -> FileReq {
        FileReq { group: group.into(), filename: filename.into() }
    }

    /// 12.
    pub async fn delete(&self, addr: &str, group: &str, filename: &str) -> ClientResult<()> {
        let body = self.simple(addr, Command::DeleteFile, &Self::file_req(group, filename).encode()).await?;
        expect_empty(addr, &body)
    }

    /// 13.
    pub async fn set_metadata(
        &self,
        addr: &str,
        group: &str,
        filename: &str,
        meta: &[(Vec<u8>, Vec<u8>)],
        op: MetaOp,
    ) -> ClientResult<()> {
        let req = SetMetadataReq { op, group: group.into(), filename: filename.into(), meta: pack_metadata(meta) };
        let body = self.simple(addr, Command::SetMetadata, &req.encode()).await?;
        expect_empty(addr, &body)
    }

    /// 15.
    pub async fn get_metadata(&self, addr: &str, group: &str, filename: &str) -> ClientResult<Metadata> {
        let body = self.simple(addr, Command::GetMetadata, &Self::file_req(group, filename).encode()).await?;
        Ok(parse_metadata(&body))
    }

    /// 22, with the 6.15.1+ flags in the header's status byte.
    pub async fn file_info(&self, addr: &str, group: &str, filename: &str, flags: u8) -> ClientResult<FileInfoResp> {
        let mut conn = self.pool.get(addr).await?;
        let body =
            conn.call_with_status(Command::QueryFileInfo, flags, &Self::file_req(group, filename).encode()).await?;
        self.pool.put(conn);
        decode(addr, FileInfoResp::decode_any(&body))
    }

    /// 24.
    pub async fn append(&self, addr: &str, filename: &str, content: Content<'_>) -> ClientResult<()> {
        let head = AppendHead { filename: filename.into(), size: content.len() }.encode_head();
        let body = self.exchange(addr, Command::AppendFile, &head, content).await?;
        expect_empty(addr, &body)
    }

    /// 34.
    pub async fn modify(&self, addr: &str, filename: &str, offset: u64, content: Content<'_>) -> ClientResult<()> {
        let head = ModifyHead { filename: filename.into(), offset, size: content.len() }.encode_head();
        let body = self.exchange(addr, Command::ModifyFile, &head, content).await?;
        expect_empty(addr, &body)
    }

    /// 36.
    pub async fn truncate(&self, addr: &str, filename: &str, new_size: u64) -> ClientResult<()> {
        let req = TruncateReq { filename: filename.into(), new_size };
        let body = self.simple(addr, Command::TruncateFile, &req.encode()).await?;
        expect_empty(addr, &body)
    }

    /// 38: turns an appender file into a normal one; returns its new name.
    pub async fn regenerate_appender_filename(&self, addr: &str, filename: &str) -> ClientResult<FileIdResp> {
        let body = self.simple(addr, Command::RegenerateAppenderFilename, filename.as_bytes()).await?;
        decode(addr, FileIdResp::decode(&body))
    }

    /// 120 LIST_FILES (fastdfs-rs's own): every live file of the storage's group that passes
    /// `req`, handed to `each` as it arrives (memory stays flat for any number of files);
    /// `each` returning `false` stops the listing (the connection is then closed). Returns how
    /// many files were handed over. A C storage refuses the command (EINVAL).
    pub async fn list_files(
        &self,
        addr: &str,
        req: &crate::protocol::listing::ListFilesReq,
        mut each: impl FnMut(crate::protocol::listing::ListedFile) -> bool,
    ) -> ClientResult<u64> {
        use crate::protocol::listing::{ListedFile, MAX_CHUNK, MAX_METADATA};
        let mut conn = self.pool.get(addr).await?;
        conn.send(Command::ListFiles, 0, &req.encode(), 0).await?;
        let mut listed = 0u64;
        loop {
            let h = conn.recv_header().await?;
            if h.pkg_len == 0 {
                self.pool.put(conn);
                return Ok(listed);
            }
            let body = conn.recv_body(h.pkg_len, (MAX_CHUNK + MAX_METADATA + 256) as u64).await?;
            for file in decode(addr, ListedFile::decode_all(&body))? {
                listed += 1;
                if !each(file) {
                    // The rest of the list is still coming: this connection is not reusable.
                    return Ok(listed);
                }
            }
        }
    }

    /// 111 on a fresh or pooled connection.
    pub async fn active_test(&self, addr: &str) -> ClientResult<()> {
        let mut conn = self.pool.get(addr).await?;
        conn.active_test().await?;
        self.pool.put(conn);
        Ok(())
    }
}
