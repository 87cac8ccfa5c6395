//! Files into trunk slots: the content and then the header written in a writer job, the
//! name recorded in the same round, every slot abandoned (header cleared, given back) on failure.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncRead;

use crate::file_id::{self, NameKind, NewName, RemoteFilename, TrunkLocation};
use crate::protocol::Status;
use crate::storage::answer::{closing, io, OpResult};
use crate::storage::binlog::{Op, Record};
use crate::storage::content::{Content, SMALL};
use crate::storage::disk::Writer;
use crate::storage::disk::{Change, Disk, WriteFence};
use crate::storage::StorageServer;
use crate::trunk::space::Block;
use crate::trunk::{SlotKind, SLOT_HEADER_LEN};

use super::remote::{confirm_remote, give_back, until_pushed};
use super::Reserved;

/// A trunk file for writing; a member that has not received one yet creates it, at its full
/// size as C does (`true`: created now, its directory entry must be synced).
fn open_trunk_file(path: &Path, full_size: u64) -> std::io::Result<(File, bool)> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    let created = f.metadata()?.len() == 0;
    if created {
        f.set_len(full_size)?;
    }
    Ok((f, created))
}

/// What a slot is filled with in a writer job.
pub(super) enum Fill<'a> {
    /// Nothing more: the content was streamed into the trunk file as it was received.
    Streamed,
    Bytes(&'a [u8]),
    /// Received content in a temp file, copied into the slot.
    File(&'a File),
}

/// Fills `r`'s slot in a writer job: the content, then `header` (the slot holds its name only
/// once both are there), confirmed here when this storage is the trunk server. Returns the
/// trunk file to sync and, when the trunk file was created now, its path (its directory entry
/// to sync too).
pub(super) fn fill_slot(
    srv: &StorageServer,
    w: &Writer,
    r: &Reserved,
    fill: Fill<'_>,
    header: &[u8; SLOT_HEADER_LEN as usize],
) -> Result<(File, Option<PathBuf>), Status> {
    let path = srv.trunk_file_path(&r.slot).ok_or(Status::EINVAL)?;
    let (mut file, created) = open_trunk_file(&path, srv.identity.params().trunk.trunk_file_size as u64).map_err(io)?;
    let data_at = r.slot.offset as u64 + SLOT_HEADER_LEN;
    match fill {
        Fill::Streamed => {}
        Fill::Bytes(b) => {
            file.write_all_at(b, data_at).map_err(io)?;
            w.wrote(&file, b.len() as u64).map_err(io)?;
        }
        Fill::File(src) => {
            let mut src = src.try_clone().map_err(io)?;
            src.rewind().map_err(io)?;
            file.seek(SeekFrom::Start(data_at)).map_err(io)?;
            let n = std::io::copy(&mut src, &mut file).map_err(io)?;
            w.wrote(&file, n).map_err(io)?;
        }
    }
    file.write_all_at(header, r.slot.offset as u64).map_err(io)?;
    if r.remote.is_none() {
        srv.trunk.confirm(&r.slot)?;
    }
    Ok((file, created.then_some(path)))
}

/// A slot whose write failed: its header cleared first, so no later file in the slot can be
/// mistaken for this one, then given back (a local slot released if still held, freed if
/// confirmed; a member's was confirmed before the round).
async fn abandon(srv: &Arc<StorageServer>, r: &Reserved) {
    if let Some(path) = srv.trunk_file_path(&r.slot) {
        let offset = r.slot.offset as u64;
        let _ = Disk::read(move || {
            let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.write_all_at(&[0u8; SLOT_HEADER_LEN as usize], offset).map_err(io)
        })
        .await;
    }
    give_back(srv, r, true).await;
}

/// The name of a file put into `slot`: `size` and `crc32` as the name is to carry them.
pub(super) fn slot_name(
    srv: &StorageServer,
    slot: &Block,
    (size, crc32): (u64, u32),
    ext: &str,
    ts: i64,
) -> RemoteFilename {
    let new = NewName {
        source: srv.identity.source(),
        timestamp: ts as u32,
        size,
        crc32,
        kind: NameKind::Trunk(TrunkLocation { trunk_id: slot.trunk_id, offset: slot.offset, size: slot.size }),
        ext,
        store_path_index: slot.path,
        high: slot.high,
        low: slot.low,
    };
    file_id::generate(&new, &mut fastrand::Rng::new())
}

pub(super) fn header_of(name: &RemoteFilename, kind: SlotKind) -> Result<[u8; SLOT_HEADER_LEN as usize], Status> {
    let loc = name.trunk_location().ok_or(Status::EINVAL)?;
    Ok(crate::trunk::expected_header(name, &loc, kind))
}

/// 11 into a trunk slot: the content is written into the slot (streamed there when large),
/// the slot confirmed, and the name recorded in one of the writer's rounds.
pub(in crate::storage) async fn upload<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    r: Reserved,
    ext: &str,
    content: &mut Content<'_, R>,
    ts: i64,
) -> OpResult<String> {
    let slot = r.slot;
    let Some(trunk_path) = srv.trunk_file_path(&slot) else { return Err(Status::EINVAL.into()) };
    let size = content.left();
    let data_at = slot.offset as u64 + SLOT_HEADER_LEN;
    let received = async {
        if size <= SMALL {
            let (bytes, crc) = content.read_all().await?;
            return Ok((Some(bytes), crc));
        }
        let (p, full) = (trunk_path.clone(), srv.identity.params().trunk.trunk_file_size as u64);
        let (file, _) = Disk::io(move || open_trunk_file(&p, full)).await?;
        srv.disk.stream_into(Arc::new(file), data_at, content, &WriteFence::default()).await?;
        Ok::<_, std::io::Error>((None, content.crc()))
    }
    .await;
    let (bytes, crc) = match received {
        Ok(v) => v,
        Err(e) => {
            give_back(srv, &r, false).await;
            return Err(closing(io(e)));
        }
    };
    let name = slot_name(srv, &slot, (size, crc), ext, ts);
    let header = header_of(&name, SlotKind::File)?;
    confirm_remote(srv, &r).await?;
    let (s, name_text, reserved) = (srv.clone(), name.to_string(), r.clone());
    let stored = srv
        .disk
        .write(slot.path as usize, move |w| {
            let fill = bytes.as_deref().map_or(Fill::Streamed, Fill::Bytes);
            let (file, created) = fill_slot(&s, w, &reserved, fill, &header)?;
            let record = Record::own(ts, Op::Create, &name_text, String::new());
            let change = Change::new(name_text).record(record).sync_file(file);
            Ok(match created {
                Some(path) => change.sync_parent(&path),
                None => change,
            })
        })
        .await;
    after_round(srv, stored, std::slice::from_ref(&r)).await
}

/// After the writer's round of a change that filled `reserved` slots: on success the trunk
/// binlog pushed to the members first when this storage allocated them; on failure every
/// slot abandoned.
pub(super) async fn after_round<T>(
    srv: &Arc<StorageServer>,
    stored: Result<T, Status>,
    reserved: &[Reserved],
) -> OpResult<T> {
    match stored {
        Ok(v) => {
            if reserved.iter().any(|r| r.remote.is_none()) {
                until_pushed(srv).await;
            }
            Ok(v)
        }
        Err(status) => {
            for r in reserved {
                abandon(srv, r).await;
            }
            Err(status.into())
        }
    }
}

/// Whether content of `size` bytes goes into a trunk slot (trunk files on, small enough).
pub(in crate::storage) fn fits_slot(srv: &StorageServer, size: u64) -> bool {
    let params = srv.identity.params();
    params.use_trunk_file && params.trunk.slot_size(size).is_some()
}
