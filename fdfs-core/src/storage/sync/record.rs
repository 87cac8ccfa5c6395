//! One binlog record replayed on a member with the SYNC_* commands: a file sent whole, a range
//! of an appender file, a delete, a truncate, a rename or a link (PROTOCOL.md §6.3).

use std::path::PathBuf;

use crate::client::{ClientError, Connection};
use crate::protocol::peer::{SyncDeleteReq, SyncFileHead, SyncLinkReq, SyncRangeHead, SyncTruncateReq};
use crate::protocol::storage::StreamedHead;
use crate::protocol::{Command, Status};
use crate::storage::binlog::{Op, Record};
use crate::storage::disk::Disk;
use crate::storage::locks::FileLocks;
use crate::storage::paths::StorePaths;

/// What replaying a record reads of this storage, and nothing more: its group, where names
/// are, and the file locks (a file is sent only while no change to it is half done).
pub(super) struct Local<'a> {
    pub group: &'a str,
    pub paths: &'a StorePaths,
    pub locks: &'a FileLocks,
}

/// The answer status of one exchange (`Ok` carries EEXIST/ENOENT too).
async fn exchange(
    conn: &mut Connection,
    cmd: Command,
    status: u8,
    head: &[u8],
    file: Option<(&std::fs::File, u64, u64)>,
) -> Result<Status, ClientError> {
    match file {
        None => conn.send(cmd, status, head, 0).await?,
        Some((f, offset, len)) => {
            conn.send(cmd, status, head, len).await?;
            conn.send_file(f, offset, len).await?;
        }
    }
    match conn.recv_header().await {
        // 6.16.1 echoes the request on a successful rename (captures README): drop the body.
        Ok(h) => conn.recv_body(h.pkg_len, 1 << 20).await.map(|_| Status::OK),
        Err(ClientError::Status { status }) if status != Status::EINVAL => Ok(status),
        Err(e) => Err(e),
    }
}

/// SYNC_CREATE_FILE / SYNC_UPDATE_FILE with the file's current content (gone: nothing to do).
async fn send_whole(
    here: &Local<'_>,
    conn: &mut Connection,
    name: &str,
    ts: i32,
    update: bool,
) -> Result<Status, ClientError> {
    let Ok((_, path)) = here.paths.resolve_any(name) else { return Ok(Status::OK) };
    // Under the file's lock: an append or modify in progress (and possibly rolled back) must
    // not be half copied to the peer.
    let _lock = here.locks.lock(&path).await;
    let Some((file, base, size)) = open_local(here, name, path).await else { return Ok(Status::OK) };
    let head = SyncFileHead {
        file_size: size,
        timestamp: ts,
        group: here.group.to_owned(),
        filename: name.to_owned(),
        content_omitted: false,
    };
    let cmd = if update { Command::SyncUpdateFile } else { Command::SyncCreateFile };
    exchange(conn, cmd, 0, &head.encode_head(), Some((&file, base, size))).await
}

/// Opens a file to send: the file, where the content starts in it (a trunk-resident file is
/// sent from its slot, under its 60-character name, as C sends it) and its size; `None` if it
/// is gone. A file whose path the kernel has cached (one just written) opens on this thread
/// ([`Disk::open_for_read`]), a slot on the blocking pool.
async fn open_local(here: &Local<'_>, name: &str, path: PathBuf) -> Option<(std::fs::File, u64, u64)> {
    if let Some((n, root)) = here.paths.trunk_name(name) {
        return Disk::read(move || {
            let slot = crate::trunk::open(&n, &root).map_err(|e| Status::from_io(&e))?.ok_or(Status::ENOENT)?;
            Ok((slot.file, slot.content_offset, slot.size))
        })
        .await
        .ok();
    }
    let f = Disk::open_for_read(path).await.ok()?;
    let len = f.metadata().ok()?.len();
    Some((f, 0, len))
}

/// Replays one record on the peer.
pub(super) async fn send(here: &Local<'_>, conn: &mut Connection, r: &Record) -> Result<(), ClientError> {
    let group = here.group.to_owned();
    let ts = r.timestamp as i32;
    let local = |name: &str| here.paths.resolve_any(name).ok().map(|(_, p)| p);
    let st = match r.op {
        Op::Create => send_whole(here, conn, &r.filename, ts, false).await?,
        Op::Update => send_whole(here, conn, &r.filename, ts, true).await?,
        Op::Delete => {
            if let Some(p) = local(&r.filename) {
                if Disk::read(move || Ok(p.exists())).await.unwrap_or(false) {
                    return Ok(());
                }
            }
            let req = SyncDeleteReq { timestamp: ts, group: group.clone(), filename: r.filename.clone() };
            exchange(conn, Command::SyncDeleteFile, 0, &req.encode(), None).await?
        }
        Op::Append | Op::Modify => {
            let mut it = r.extra.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
            let (offset, len) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            let Some(path) = local(&r.filename) else { return Ok(()) };
            let lock = here.locks.lock(&path).await;
            let Some((file, _, _)) =
                open_local(here, &r.filename, path).await.filter(|(_, _, size)| *size >= offset + len)
            else {
                // Truncated or deleted since: a later record carries the state.
                return Ok(());
            };
            let head =
                SyncRangeHead { offset, size: len, timestamp: ts, group: group.clone(), filename: r.filename.clone() };
            let cmd = if r.op == Op::Append { Command::SyncAppendFile } else { Command::SyncModifyFile };
            let sent = exchange(conn, cmd, 0, &head.encode_head(), Some((&file, offset, len))).await?;
            drop(lock);
            match sent {
                // The peer lacks the file or is behind: send it whole.
                Status::ENOENT => send_whole(here, conn, &r.filename, ts, true).await?,
                s => s,
            }
        }
        Op::Truncate => {
            let mut it = r.extra.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
            let (old, new) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            let req = SyncTruncateReq {
                old_size: old,
                new_size: new,
                timestamp: ts,
                group: group.clone(),
                filename: r.filename.clone(),
            };
            match exchange(conn, Command::SyncTruncateFile, 0, &req.encode(), None).await? {
                // The peer's size differs: make it identical by sending the whole file.
                Status::EEXIST | Status::ENOENT => send_whole(here, conn, &r.filename, ts, true).await?,
                s => s,
            }
        }
        Op::Rename if !r.replica => {
            let req =
                SyncLinkReq { timestamp: ts, group: group.clone(), dest: r.filename.clone(), src: r.extra.clone() };
            match exchange(conn, Command::SyncRenameFile, 0, &req.encode(), None).await? {
                Status::ENOENT => send_whole(here, conn, &r.filename, ts, false).await?,
                s => s,
            }
        }
        Op::Rename => send_whole(here, conn, &r.filename, ts, false).await?,
        Op::Link => {
            let req =
                SyncLinkReq { timestamp: ts, group: group.clone(), dest: r.filename.clone(), src: r.extra.clone() };
            exchange(conn, Command::SyncCreateLink, 0, &req.encode(), None).await?
        }
    };
    match st {
        Status::OK | Status::EEXIST => Ok(()),
        Status::ENOENT if matches!(r.op, Op::Delete | Op::Link) => Ok(()),
        status => Err(ClientError::Status { status }),
    }
}
