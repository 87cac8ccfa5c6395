//! A slot from the trunk server, wherever it is: reserved (27, or the local allocator),
//! confirmed (28), given back (28 with an error, 29), and the wait until the members hold it.

use std::sync::Arc;
use std::time::Duration;

use crate::client::Connection;
use crate::protocol::peer::{TrunkAllocReq, TrunkInfo, TrunkSlotReq};
use crate::protocol::{Command, Profile, Status};
use crate::storage::disk::Disk;
use crate::storage::StorageServer;
use crate::trunk::space::Block;
use crate::trunk::SLOT_HEADER_LEN;

use super::{block_of, info_of, Reserved};

/// Waits until the other members hold the trunk binlog as it stands (bounded: a member that
/// stops answering is left out by the pusher). A slot is answered as in use only then, so
/// whichever member takes over as trunk server knows of it and never hands it out again.
pub(super) async fn until_pushed(srv: &StorageServer) {
    let upto = srv.trunk.log.len();
    let mut rx = srv.trunk.pushed.subscribe();
    srv.trunk.news.notify_waiters();
    let limit = srv.config.network_timeout.clamp(Duration::from_secs(1), Duration::from_secs(10));
    if tokio::time::timeout(limit, rx.wait_for(|&p| p >= upto)).await.is_err() {
        tracing::warn!("the trunk binlog did not reach every member within {limit:?}; answering anyway");
    }
}

fn unreachable_trunk_server(e: impl std::fmt::Display, what: &str) -> Status {
    tracing::warn!("trunk server: {what}: {e}");
    Status::EAGAIN
}

/// Asks the trunk server at `addr`; a connection goes back to the pool only after an answer.
async fn call_trunk_server(
    srv: &StorageServer,
    addr: &str,
    cmd: Command,
    status: u8,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let mut conn: Connection = srv.trunk.pool.get(addr).await.map_err(|e| unreachable_trunk_server(e, "connect"))?;
    match conn.call_with_status(cmd, status, body).await {
        Ok(b) => {
            srv.trunk.pool.put(conn);
            Ok(b.to_vec())
        }
        Err(crate::client::ClientError::Status { status }) => {
            srv.trunk.pool.put(conn);
            Err(status)
        }
        Err(e) => Err(unreachable_trunk_server(e, &format!("{cmd:?}"))),
    }
}

/// A slot for an upload of `content_len` bytes to store path `path`, or `None` when the file
/// is to be a regular file: trunk files off, too large for a slot, no trunk server known, or
/// this storage named it and not yet holding the role (then the file is stored as a regular
/// file, which every reader accepts, rather than refused).
pub(in crate::storage) async fn reserve(
    srv: &Arc<StorageServer>,
    path: usize,
    content_len: u64,
) -> Result<Option<Reserved>, Status> {
    let params = srv.identity.params();
    if !params.use_trunk_file || params.trunk.slot_size(content_len).is_none() {
        return Ok(None);
    }
    let Some(server) = srv.trunk.server() else { return Ok(None) };
    let path = u8::try_from(path).map_err(|_| Status::EINVAL)?;
    if server.id == srv.identity.my_id() {
        let s = srv.clone();
        return match Disk::read(move || s.allocator().alloc(path, content_len)).await {
            Ok(slot) => Ok(slot.map(|slot| Reserved { slot, remote: None })),
            // Too many slots held: a regular file, as when a remote trunk server refuses.
            Err(Status::EBUSY) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let addr = crate::config::join_host_port(&server.ip, server.port as u16);
    let req = TrunkAllocReq {
        group: srv.group.clone(),
        file_size: i32::try_from(content_len + SLOT_HEADER_LEN).map_err(|_| Status::EINVAL)?,
        store_path_index: path,
    };
    let body = match call_trunk_server(srv, &addr, Command::TrunkAllocSpace, 0, &req.encode(Profile::CLASSIC)).await {
        Ok(b) => b,
        Err(s) => {
            tracing::warn!("trunk server {addr} refused a slot ({s:?}); storing a regular file");
            return Ok(None);
        }
    };
    let slot = TrunkInfo::decode(&body, Profile::CLASSIC).ok().and_then(|i| block_of(&i)).filter(|b| b.path == path);
    match slot {
        Some(slot) if (slot.size as u64) >= content_len + SLOT_HEADER_LEN => {
            Ok(Some(Reserved { slot, remote: Some(addr) }))
        }
        _ => {
            tracing::warn!("trunk server {addr} answered a slot that does not fit; storing a regular file");
            Ok(None)
        }
    }
}

/// Gives a reserved slot back: released if still held, freed if confirmed.
pub(super) async fn give_back(srv: &Arc<StorageServer>, r: &Reserved, confirmed: bool) {
    let result = match &r.remote {
        None => {
            let (s, slot) = (srv.clone(), r.slot);
            Disk::read(move || s.trunk.free(&slot)).await
        }
        Some(addr) => {
            let req = TrunkSlotReq { group: srv.group.clone(), info: info_of(&r.slot) }.encode(Profile::CLASSIC);
            let (cmd, status) =
                if confirmed { (Command::TrunkFreeSpace, 0) } else { (Command::TrunkAllocConfirm, Status::EIO.0) };
            call_trunk_server(srv, addr, cmd, status, &req).await.map(drop)
        }
    };
    if let Err(s) = result {
        tracing::warn!(
            "trunk slot {:?} not given back ({s:?}); its space stays unused until the trunk binlog is rebuilt",
            r.slot
        );
    }
}

/// A member's slot is confirmed (28) before the writer's round: once the upload is answered
/// the slot is the trunk server's record of a file in use, whatever happens to either of us.
pub(super) async fn confirm_remote(srv: &StorageServer, r: &Reserved) -> Result<(), Status> {
    let Some(addr) = &r.remote else { return Ok(()) };
    let req = TrunkSlotReq { group: srv.group.clone(), info: info_of(&r.slot) }.encode(Profile::CLASSIC);
    call_trunk_server(srv, addr, Command::TrunkAllocConfirm, 0, &req).await.map(drop).map_err(|s| {
        tracing::warn!("trunk server {addr} did not confirm slot {:?}: {s:?}", r.slot);
        Status::EAGAIN
    })
}

/// After a client deleted a trunk-resident file here: its slot is free for the trunk server.
pub(in crate::storage) async fn freed(srv: &Arc<StorageServer>, slot: Block) {
    if !srv.identity.params().use_trunk_file {
        return;
    }
    let Some(server) = srv.trunk.server() else { return };
    let r = Reserved {
        slot,
        remote: (server.id != srv.identity.my_id())
            .then(|| crate::config::join_host_port(&server.ip, server.port as u16)),
    };
    give_back(srv, &r, true).await;
}
