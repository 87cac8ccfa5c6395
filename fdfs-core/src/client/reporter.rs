//! The storage side of the tracker protocol (PROTOCOL.md §3.6): the long-lived report
//! connection (join, beats, disk usage, sync reports) and the short requests about sync
//! sources. Used by `fdfs_storaged` and by tests that play a storage.

use std::time::Duration;

use super::connection::{expect_empty, Connection};
use super::error::{ClientError, ClientResult};
use crate::protocol::parameters::Parameters;
use crate::protocol::report::*;
use crate::protocol::stat::StatBuff;
use crate::protocol::{Command, DecodeError, Profile};

fn decode<T>(addr: &str, r: Result<T, DecodeError>) -> ClientResult<T> {
    r.map_err(|e| ClientError::Decode { addr: addr.to_owned(), source: e })
}

/// One report connection to one tracker.
#[derive(Debug)]
pub struct ReportConnection {
    conn: Connection,
    profile: Profile,
}

impl ReportConnection {
    pub async fn connect(
        addr: &str,
        local_ip: Option<std::net::IpAddr>,
        timeouts: (Duration, Duration),
        profile: Profile,
    ) -> ClientResult<Self> {
        Ok(Self { conn: Connection::connect_from(addr, local_ip, timeouts.0, timeouts.1).await?, profile })
    }

    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// 81: logs the storage in on this connection.
    pub async fn join(&mut self, req: &JoinReq) -> ClientResult<JoinResp> {
        let body = self.conn.call(Command::StorageJoin, &req.encode(self.profile)).await?;
        decode(self.conn.addr(), JoinResp::decode(&body, self.profile))
    }

    fn notify(&self, body: &[u8]) -> ClientResult<ChangeNotify> {
        decode(self.conn.addr(), ChangeNotify::decode(body, self.profile))
    }

    /// 83, with the counters when they changed.
    pub async fn beat(&mut self, stat: Option<&StatBuff>) -> ClientResult<ChangeNotify> {
        let body = self.conn.call(Command::StorageBeat, &encode_beat(stat)).await?;
        self.notify(&body)
    }

    /// 84.
    pub async fn disk_usage(&mut self, paths: &[PathUsage]) -> ClientResult<ChangeNotify> {
        let body = self.conn.call(Command::StorageReportDiskUsage, &encode_disk_usage(paths)).await?;
        self.notify(&body)
    }

    /// 89.
    pub async fn sync_report(&mut self, entries: &[SyncTimestamp]) -> ClientResult<ChangeNotify> {
        let body = self.conn.call(Command::StorageSyncReport, &encode_sync_report(entries)).await?;
        self.notify(&body)
    }

    /// 87: first join of a new storage; who fills it, if anyone.
    pub async fn sync_dest_req(&mut self) -> ClientResult<Option<SyncSource>> {
        let body = self.conn.call(Command::StorageSyncDestReq, &[]).await?;
        decode(self.conn.addr(), SyncSource::decode_opt(&body))
    }

    /// 88: restates this storage's sync source (empty = none / done).
    pub async fn sync_notify(&mut self, src: &SyncSource) -> ClientResult<()> {
        let body = self.conn.call(Command::StorageSyncNotify, &src.encode(self.profile)).await?;
        expect_empty(self.conn.addr(), &body)
    }

    /// 77: changelog lines not read yet.
    pub async fn changelog(&mut self) -> ClientResult<Vec<u8>> {
        Ok(self.conn.call(Command::StorageChangelogReq, &[]).await?.to_vec())
    }

    /// 59.
    pub async fn change_status(&mut self, status: crate::protocol::StorageStatus) -> ClientResult<()> {
        let body = self.conn.call(Command::StorageChangeStatus, &[status.byte()]).await?;
        expect_empty(self.conn.addr(), &body)
    }

    /// 75: the tracker's settings.
    pub async fn parameters(&mut self) -> ClientResult<Parameters> {
        let body = self.conn.call(Command::StorageParameterReq, &[]).await?;
        Ok(Parameters::decode(&body))
    }

    /// 60: this storage's address as the tracker sees it.
    pub async fn my_ip(&mut self, group: &str, port: u16) -> ClientResult<String> {
        let req = GetMyIpReq { group: group.into(), port: port.into() };
        let body = self.conn.call(Command::StorageGetMyIp, &req.encode(self.profile)).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The protocol generation this connection speaks (the one the tracker accepted).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Raw access for commands without a helper.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub async fn quit(self) {
        self.conn.quit().await
    }
}

/// 86 on a short connection: the source a would-be sync source should defer to.
pub async fn sync_src_req(
    addr: &str,
    timeout: Duration,
    group: &str,
    dest_id: &str,
) -> ClientResult<Option<SyncSource>> {
    let mut c = Connection::connect(addr, timeout, timeout).await?;
    let req = SyncSrcReq { group: group.into(), dest_id: dest_id.into() };
    let body = c.call(Command::StorageSyncSrcReq, &req.encode(Profile::CLASSIC)).await?;
    decode(addr, SyncSource::decode_opt(&body))
}

/// 76 on a short connection from `bind` (the tracker accepts it only from a group member's
/// address): reports a peer's status.
pub async fn report_status(
    addr: &str,
    bind: Option<std::net::IpAddr>,
    timeout: Duration,
    group: &str,
    brief: Brief,
    profile: Profile,
) -> ClientResult<()> {
    let mut c = Connection::connect_from(addr, bind, timeout, timeout).await?;
    let body =
        c.call(Command::StorageReportStatus, &ReportStatusReq { group: group.into(), brief }.encode(profile)).await?;
    expect_empty(addr, &body)
}
