//! The trunk commands a storage answers (PROTOCOL.md §4.15): 27-29 as the trunk server, 30-33
//! from the trunk server and the tracker.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::protocol::peer::{TrunkAllocReq, TrunkSlotReq};
use crate::protocol::{Profile, Status};
use crate::storage::answer::io;
use crate::storage::disk::Disk;
use crate::storage::StorageServer;
use crate::trunk::space::SpaceRecord;
use crate::trunk::SLOT_HEADER_LEN;

use super::remote::until_pushed;
use super::{block_of, info_of};

/// 27 TRUNK_ALLOC_SPACE from a member.
pub(in crate::storage) async fn alloc_space(srv: &Arc<StorageServer>, req: TrunkAllocReq) -> Result<Vec<u8>, Status> {
    srv.check_group(&req.group)?;
    let content_len =
        u64::try_from(req.file_size).ok().and_then(|n| n.checked_sub(SLOT_HEADER_LEN)).ok_or(Status::EINVAL)?;
    if req.store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let slot =
        Disk::read(move || s.allocator().alloc(req.store_path_index, content_len)).await?.ok_or(Status::EINVAL)?;
    Ok(info_of(&slot).encode(Profile::CLASSIC).to_vec())
}

/// 28 TRUNK_ALLOC_CONFIRM (`write_status` 0: the member wrote the file) and 29 TRUNK_FREE_SPACE.
pub(in crate::storage) async fn slot_done(
    srv: &Arc<StorageServer>,
    req: TrunkSlotReq,
    confirm: bool,
    write_status: u8,
) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let slot = block_of(&req.info).ok_or(Status::EINVAL)?;
    // Only something that could be a slot: a member never frees more than one.
    let t = srv.identity.params().trunk;
    if slot.size as u64 > t.slot_max_size as u64 + t.slot_min_size as u64
        || slot.offset as u64 + slot.size as u64 > t.trunk_file_size as u64
    {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let confirmed = confirm && write_status == 0;
    Disk::read(move || {
        if confirmed {
            s.trunk.confirm(&slot)?;
            // The member answers its client after this answer: the line must be on disk.
            s.trunk.log.sync_if_dirty().map_err(io)
        } else {
            s.trunk.free(&slot)
        }
    })
    .await?;
    if confirmed {
        until_pushed(srv).await;
    }
    Ok(())
}

/// 30 TRUNK_SYNC_BINLOG: the trunk server's lines, appended to ours (whole lines only).
pub(in crate::storage) async fn receive_binlog(srv: &Arc<StorageServer>, body: Vec<u8>) -> Result<(), Status> {
    if srv.trunk.is_server() {
        tracing::warn!("trunk binlog lines from another storage while this one is the trunk server; ignored");
        return Err(Status::EINVAL);
    }
    let text = std::str::from_utf8(&body).map_err(|_| Status::EINVAL)?;
    if !text.is_empty() && (!text.ends_with('\n') || text.lines().any(|l| SpaceRecord::parse(l).is_none())) {
        return Err(Status::EINVAL);
    }
    // Not synced here (the background task syncs it within a second): this copy matters when
    // the trunk server is lost, and the trunk server synced its own before it pushed.
    let s = srv.clone();
    Disk::read(move || s.trunk.log.append_raw(&body).map_err(io)).await
}

/// 31 TRUNK_GET_BINLOG_SIZE: the tracker prefers the member with the longest trunk binlog.
pub(in crate::storage) fn binlog_size(srv: &StorageServer) -> Vec<u8> {
    (srv.trunk.log.len() as i64).to_be_bytes().to_vec()
}

/// 32 TRUNK_DELETE_BINLOG_MARKS (from the tracker, to a new trunk server).
pub(in crate::storage) async fn delete_marks(srv: &Arc<StorageServer>) -> Result<(), Status> {
    let s = srv.clone();
    Disk::read(move || s.trunk.log.delete_marks().map_err(io)).await?;
    srv.trunk.marks_epoch.fetch_add(1, Ordering::AcqRel);
    srv.trunk.news.notify_waiters();
    Ok(())
}

/// 33 TRUNK_TRUNCATE_BINLOG_FILE (from the trunk server, before it sends its whole binlog).
pub(in crate::storage) async fn restart_binlog(srv: &Arc<StorageServer>) -> Result<(), Status> {
    if srv.trunk.is_server() {
        return Err(Status::EINVAL);
    }
    let s = srv.clone();
    let max_backups = srv.identity.params().trunk_compress.max_backups;
    Disk::read(move || s.trunk.log.restart(max_backups).map_err(io)).await
}
