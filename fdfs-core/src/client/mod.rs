//! An async (tokio) FastDFS client: tracker queries with failover, storage commands, and a
//! [`Client`] that does both the way the C client library does (ask a tracker, then talk to the
//! storage it names).

mod connection;
mod error;
mod pool;
pub mod reporter;
mod storage;
mod tracker;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use connection::{Connection, MAX_BUFFERED_ANSWER};
pub use error::{ClientError, ClientResult};
pub use pool::Pool;
pub use storage::{Content, StorageClient, UploadKind};
pub use tracker::TrackerClient;

use crate::config::{join_host_port, ClientConfig};
use crate::file_id::FileId;
use crate::protocol::storage::{FileInfoResp, MetaOp, Metadata};

/// Tracker + storage, as the tools use them.
#[derive(Debug)]
pub struct Client {
    pub tracker: TrackerClient,
    pub storage: StorageClient,
}

fn addr_of(ip: &str, port: i64) -> String {
    join_host_port(ip, port.clamp(0, 65535) as u16)
}

impl Client {
    pub fn new(config: &ClientConfig) -> Self {
        let pool = Arc::new(Pool::new(
            config.connect_timeout,
            config.network_timeout,
            config.connection_pool_max_idle_time,
            // The C tools open a connection per call unless pooling is on; reusing one within a
            // process costs nothing and saves a handshake per request.
            true,
        ));
        Self {
            tracker: TrackerClient::new(config.tracker_servers.clone(), pool.clone()),
            storage: StorageClient::new(pool),
        }
    }

    /// Uploads and returns the file ID. `group` picks the group (104) instead of letting the
    /// tracker choose (101).
    pub async fn upload(
        &self,
        kind: UploadKind,
        group: Option<&str>,
        ext: &str,
        content: Content<'_>,
    ) -> ClientResult<String> {
        let t = self.tracker.query_store(group).await?;
        let r = self.storage.upload(&addr_of(&t.ip, t.port), kind, t.store_path_index as i8, ext, content).await?;
        Ok(r.file_id())
    }

    pub async fn upload_buffer(&self, data: &[u8], ext: &str) -> ClientResult<String> {
        self.upload(UploadKind::Normal, None, ext, Content::Bytes(data)).await
    }

    /// Streams a local file; the extension defaults to the file's own.
    pub async fn upload_file(
        &self,
        kind: UploadKind,
        group: Option<&str>,
        path: &Path,
        ext: Option<&str>,
    ) -> ClientResult<String> {
        let mut f = tokio::fs::File::open(path).await.map_err(ClientError::Local)?;
        let len = f.metadata().await.map_err(ClientError::Local)?.len();
        let ext = ext.map(str::to_owned).unwrap_or_else(|| file_ext(path));
        self.upload(kind, group, &ext, Content::Reader(&mut f, len)).await
    }

    /// A slave of `master_id` with `prefix`, on the master's storage.
    pub async fn upload_slave(
        &self,
        master_id: &str,
        prefix: &str,
        ext: &str,
        content: Content<'_>,
    ) -> ClientResult<String> {
        let id = FileId::parse(master_id)?;
        let t = self.tracker.query_update(&id).await?;
        let r =
            self.storage.upload_slave(&addr_of(&t.ip, t.port), &id.remote.to_string(), prefix, ext, content).await?;
        Ok(r.file_id())
    }

    async fn fetch_addr(&self, id: &FileId) -> ClientResult<String> {
        let t = self.tracker.query_fetch(id).await?;
        Ok(addr_of(&t.ip, t.port))
    }

    async fn update_addr(&self, id: &FileId) -> ClientResult<String> {
        let t = self.tracker.query_update(id).await?;
        Ok(addr_of(&t.ip, t.port))
    }

    /// Downloads into memory (`bytes` 0 = to the end).
    pub async fn download(&self, file_id: &str, offset: u64, bytes: u64) -> ClientResult<Bytes> {
        let id = FileId::parse(file_id)?;
        let addr = self.fetch_addr(&id).await?;
        self.storage.download(&addr, &id.group, &id.remote.to_string(), offset, bytes).await
    }

    /// Downloads into a local file (written to a temp name, renamed when complete).
    pub async fn download_to_file(&self, file_id: &str, path: &Path, offset: u64, bytes: u64) -> ClientResult<u64> {
        let id = FileId::parse(file_id)?;
        let addr = self.fetch_addr(&id).await?;
        let tmp = path.with_extension(format!("{}.fdfs-part", file_ext(path)));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(ClientError::Local)?;
        let r = self.storage.download_into(&addr, &id.group, &id.remote.to_string(), offset, bytes, &mut f).await;
        match r {
            Ok(n) => {
                use tokio::io::AsyncWriteExt;
                f.flush().await.map_err(ClientError::Local)?;
                drop(f);
                tokio::fs::rename(&tmp, path).await.map_err(ClientError::Local)?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    pub async fn delete(&self, file_id: &str) -> ClientResult<()> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        self.storage.delete(&addr, &id.group, &id.remote.to_string()).await
    }

    pub async fn set_metadata(&self, file_id: &str, meta: &[(Vec<u8>, Vec<u8>)], op: MetaOp) -> ClientResult<()> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        self.storage.set_metadata(&addr, &id.group, &id.remote.to_string(), meta, op).await
    }

    pub async fn get_metadata(&self, file_id: &str) -> ClientResult<Metadata> {
        let id = FileId::parse(file_id)?;
        let addr = self.fetch_addr(&id).await?;
        self.storage.get_metadata(&addr, &id.group, &id.remote.to_string()).await
    }

    /// Asks a storage (22) for the current size, mtime and CRC32.
    pub async fn query_file_info(&self, file_id: &str, flags: u8) -> ClientResult<FileInfoResp> {
        let id = FileId::parse(file_id)?;
        let addr = self.fetch_addr(&id).await?;
        self.storage.file_info(&addr, &id.group, &id.remote.to_string(), flags).await
    }

    pub async fn append(&self, file_id: &str, content: Content<'_>) -> ClientResult<()> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        self.storage.append(&addr, &id.remote.to_string(), content).await
    }

    pub async fn modify(&self, file_id: &str, offset: u64, content: Content<'_>) -> ClientResult<()> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        self.storage.modify(&addr, &id.remote.to_string(), offset, content).await
    }

    pub async fn truncate(&self, file_id: &str, new_size: u64) -> ClientResult<()> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        self.storage.truncate(&addr, &id.remote.to_string(), new_size).await
    }

    pub async fn regenerate_appender_filename(&self, file_id: &str) -> ClientResult<String> {
        let id = FileId::parse(file_id)?;
        let addr = self.update_addr(&id).await?;
        Ok(self.storage.regenerate_appender_filename(&addr, &id.remote.to_string()).await?.file_id())
    }
}

/// The extension FastDFS takes from a local file name: after the last `.`, at most 6 chars.
pub fn file_ext(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e)
        .filter(|e| e.len() <= 6 && crate::protocol::storage::valid_ext(e))
        .unwrap_or("")
        .to_owned()
}
