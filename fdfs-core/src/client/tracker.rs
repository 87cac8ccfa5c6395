//! Tracker queries with failover across every `tracker_server`.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::connection::expect_empty;
use super::error::{ClientError, ClientResult};
use super::pool::Pool;
use crate::config::ServerAddr;
use crate::file_id::FileId;
use crate::protocol::parameters::Parameters;
use crate::protocol::report::{FetchStorageIdsReq, StorageIdsPage};
use crate::protocol::stat::{GroupStat, StorageStat};
use crate::protocol::tracker::*;
use crate::protocol::Status;
use crate::protocol::{Command, Profile};

#[derive(Debug)]
pub struct TrackerClient {
    trackers: Vec<ServerAddr>,
    /// Where the next call starts, so load spreads and a dead tracker is skipped quickly.
    next: AtomicUsize,
    pool: std::sync::Arc<Pool>,
}

impl TrackerClient {
    pub fn new(trackers: Vec<ServerAddr>, pool: std::sync::Arc<Pool>) -> Self {
        Self { trackers, next: AtomicUsize::new(0), pool }
    }

    pub fn trackers(&self) -> &[ServerAddr] {
        &self.trackers
    }

    /// One request to the first tracker that answers; transport errors move on to the next one,
    /// an answer with a status is final.
    pub async fn call(&self, cmd: Command, body: &[u8]) -> ClientResult<Bytes> {
        let n = self.trackers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let t = &self.trackers[(start + i) % n];
            for host in &t.hosts {
                let addr = crate::config::join_host_port(host, t.port);
                match self.call_one(&addr, cmd, body).await {
                    Ok(b) => return Ok(b),
                    Err(e) if e.is_transport() => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
        }
        let last =
            last.unwrap_or(ClientError::Protocol { addr: String::new(), why: "no tracker_server configured".into() });
        Err(ClientError::NoTracker { last: Box::new(last) })
    }

    /// One request to one tracker (`host:port`), e.g. the leader.
    pub async fn call_one(&self, addr: &str, cmd: Command, body: &[u8]) -> ClientResult<Bytes> {
        let mut conn = self.pool.get(addr).await?;
        let r = conn.call(cmd, body).await;
        if r.is_ok() {
            self.pool.put(conn);
        }
        r
    }

    fn decode<T>(r: Result<T, crate::protocol::DecodeError>) -> ClientResult<T> {
        r.map_err(|e| ClientError::Decode { addr: "tracker".into(), source: e })
    }

    /// 101 / 104: where to upload.
    pub async fn query_store(&self, group: Option<&str>) -> ClientResult<StoreTarget> {
        let body = match group {
            Some(g) => self.call(Command::QueryStoreWithGroupOne, &GroupReq { group: g.into() }.encode()).await?,
            None => self.call(Command::QueryStoreWithoutGroupOne, &[]).await?,
        };
        Self::decode(StoreTarget::decode_any(&body))
    }

    /// 106 / 107: every writable storage.
    pub async fn query_store_all(&self, group: Option<&str>) -> ClientResult<StoreTargets> {
        let body = match group {
            Some(g) => self.call(Command::QueryStoreWithGroupAll, &GroupReq { group: g.into() }.encode()).await?,
            None => self.call(Command::QueryStoreWithoutGroupAll, &[]).await?,
        };
        Self::decode(StoreTargets::decode_any(&body))
    }

    fn file_req(id: &FileId) -> FileReq {
        FileReq { group: id.group.clone(), filename: id.remote.to_string() }
    }

    /// 102: a storage that has the file.
    pub async fn query_fetch(&self, id: &FileId) -> ClientResult<FetchTarget> {
        let body = self.call(Command::QueryFetchOne, &Self::file_req(id).encode()).await?;
        Self::decode(FetchTarget::decode_any(&body))
    }

    /// 103: the storage to change the file on (its source when alive).
    pub async fn query_update(&self, id: &FileId) -> ClientResult<FetchTarget> {
        let body = self.call(Command::QueryUpdate, &Self::file_req(id).encode()).await?;
        Self::decode(FetchTarget::decode_any(&body))
    }

    /// 105: every storage that has the file. The layout (ports per server or not) is told
    /// apart by length; a single server reads the same either way.
    pub async fn query_fetch_all(&self, id: &FileId) -> ClientResult<FetchTargets> {
        let body = self.call(Command::QueryFetchAll, &Self::file_req(id).encode()).await?;
        let w = Profile::V6_16.query_ip_width();
        let per_server_port = body.len() >= 16 + w + 8 && (body.len() - 16 - w - 8).is_multiple_of(w + 8);
        let p = if per_server_port { Profile::V6_16 } else { Profile::CLASSIC };
        Self::decode(FetchTargets::decode(&body, p))
    }

    /// 91: every group.
    pub async fn list_groups(&self) -> ClientResult<Vec<GroupStat>> {
        let body = self.call(Command::ServerListAllGroups, &[]).await?;
        Ok(Self::decode(GroupStat::decode_list_any(&body))?.0)
    }

    /// 90: one group.
    pub async fn list_group(&self, group: &str) -> ClientResult<GroupStat> {
        let body = self.call(Command::ServerListOneGroup, &GroupReq { group: group.into() }.encode()).await?;
        let (mut v, _) = Self::decode(GroupStat::decode_list_any(&body))?;
        v.pop()
            .filter(|_| v.is_empty())
            .ok_or_else(|| ClientError::Protocol { addr: "tracker".into(), why: "expected one group".into() })
    }

    /// 92: the storages of a group (optionally one).
    pub async fn list_storages(&self, group: &str, storage_id: Option<&str>) -> ClientResult<Vec<StorageStat>> {
        let req = GroupStorageReq { group: group.into(), storage_id: storage_id.map(Into::into) };
        let body = self.call(Command::ServerListStorage, &req.encode()).await?;
        Ok(Self::decode(StorageStat::decode_list_any(&body))?.0)
    }

    /// 93 on one tracker (the tool sends it to every tracker).
    pub async fn delete_storage(&self, group: &str, storage_id: &str) -> ClientResult<()> {
        let req = GroupStorageReq { group: group.into(), storage_id: Some(storage_id.into()) };
        let body = self.call(Command::ServerDeleteStorage, &req.encode()).await?;
        expect_empty("tracker", &body)
    }

    /// 94 on the leader: makes `storage_id` the group's trunk server (empty: asks who it is).
    /// Returns the trunk server's ID.
    pub async fn set_trunk_server(&self, group: &str, storage_id: &str) -> ClientResult<String> {
        let mut body = GroupReq { group: group.into() }.encode().to_vec();
        body.extend_from_slice(storage_id.as_bytes());
        let answer = if self.trackers.len() > 1 {
            let leader = self.leader().await?;
            self.call_one(&leader, Command::ServerSetTrunkServer, &body).await?
        } else {
            self.call(Command::ServerSetTrunkServer, &body).await?
        };
        Self::decode(decode_trunk_server_id(&answer))
    }

    /// 108.
    pub async fn delete_group(&self, group: &str) -> ClientResult<()> {
        let body = self.call(Command::ServerDeleteGroup, &GroupReq { group: group.into() }.encode()).await?;
        expect_empty("tracker", &body)
    }

    /// 75: the tracker's cluster-wide settings.
    pub async fn parameters(&self) -> ClientResult<Parameters> {
        let body = self.call(Command::StorageParameterReq, &[]).await?;
        Ok(Parameters::decode(&body))
    }

    /// 69, repeated until the whole table is fetched.
    pub async fn storage_ids(&self) -> ClientResult<Vec<String>> {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let [new, old] = FetchStorageIdsReq { start_index: lines.len() as i32, allow_empty: false }.forms();
            let body = match self.call(Command::StorageFetchStorageIds, &new).await {
                Err(ClientError::Status { status: Status::EINVAL }) => {
                    self.call(Command::StorageFetchStorageIds, &old).await?
                }
                r => r?,
            };
            let page = Self::decode(StorageIdsPage::decode(&body))?;
            if page.add_to(&mut lines) {
                return Ok(lines);
            }
        }
    }

    /// 95 (6.15.5+): the leader's `ip:port`.
    pub async fn leader(&self) -> ClientResult<String> {
        let body = self.call(Command::ServerGetLeader, &[]).await?;
        Ok(String::from_utf8_lossy(&body).trim_end_matches('\0').to_owned())
    }

    /// 96 on the leader (95 finds it first, as `fdfs_tracker_stat` does).
    pub async fn tracker_cluster_stat(&self, req: &TrackerClusterStatReq) -> ClientResult<TrackerClusterStats> {
        let leader = self.leader().await?;
        let body = self.call_one(&leader, Command::ServerTrackerClusterStat, &req.encode(Profile::default())).await?;
        Self::decode(TrackerClusterStats::decode(&body))
    }

    /// 97.
    pub async fn storage_cluster_stat(&self, req: &StorageClusterStatReq) -> ClientResult<StorageClusterStats> {
        let body = self.call(Command::ServerStorageClusterStat, &req.encode(Profile::default())).await?;
        Self::decode(StorageClusterStats::decode(&body))
    }

    /// 98.
    pub async fn volume_stat(&self, req: &VolumeStatReq) -> ClientResult<VolumeStats> {
        let body = self.call(Command::ServerStorageVolumnStat, &req.encode(Profile::default())).await?;
        Self::decode(VolumeStats::decode(&body))
    }
}
