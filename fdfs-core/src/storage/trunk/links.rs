//! De-duplication in trunk mode, C's layout: a link slot whose text names a source slot that
//! holds the content (11 with de-duplication, 20 CREATE_LINK).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::file_id::{self};
use crate::protocol::Status;
use crate::storage::answer::OpResult;
use crate::storage::binlog::{Op, Record};
use crate::storage::body::Body;
use crate::storage::dedup::{Held, Signature};
use crate::storage::disk::Change;
use crate::storage::disk::Writer;
use crate::storage::StorageServer;
use crate::timefmt::now_unix;
use crate::trunk::SlotKind;

use super::remote::{confirm_remote, give_back, reserve};
use super::slots::{after_round, fill_slot, header_of, slot_name, Fill};
use super::Reserved;

/// `source` if it holds content of `size` bytes in a trunk slot (what a link slot may name:
/// C's readers follow a link slot only to another slot).
fn held_in_slot(srv: &StorageServer, source: Option<String>, size: u64) -> Option<String> {
    source.filter(|s| matches!(Held::find(&srv.paths, s, size), Some(Held::Slot)))
}

/// The longest link text a link slot holds: a trunk source's filename (`Mxx/HH/LL/` + 50).
const LINK_TEXT_LEN: u64 = file_id::TRUNK_FILENAME_LEN as u64;

/// 11 with de-duplication, for content that goes into trunk slots (received and signed
/// already): C's layout in trunk mode. The file ID is a link slot whose text names the source,
/// a slot holding the content under a name no client is given; a repeated upload writes only
/// a link slot. `Ok(Err(body))` when no slot can be had (the caller stores it as regular files).
///
/// The link's name carries the link text's length as its size (C's readers check the slot's
/// header against the name and read that many bytes of text) and the content's CRC32.
pub(in crate::storage) async fn upload_linked(
    srv: &Arc<StorageServer>,
    index: usize,
    body: Body,
    (size, crc): (u64, u32),
    sig: Signature,
    ext: &str,
    ts: i64,
) -> OpResult<Result<String, Body>> {
    let Some(dedup) = srv.dedup.as_ref() else { return Ok(Err(body)) };
    // The content is read already: a refusal need not close the connection.
    let Some(link_r) = reserve(srv, index, LINK_TEXT_LEN).await? else { return Ok(Err(body)) };
    // A slot for the content too, unless it is held already (checked again in the job).
    let peeked = dedup.peek_source(index as u8, &sig);
    let content_r = match peeked.map(|source| held_in_slot(srv, source, size)) {
        Ok(Some(_)) => None,
        _ => match reserve(srv, index, size).await {
            Ok(Some(r)) => Some(r),
            other => {
                give_back(srv, &link_r, false).await;
                other?;
                return Ok(Err(body));
            }
        },
    };
    let reserved: Vec<Reserved> = std::iter::once(link_r.clone()).chain(content_r.clone()).collect();
    for r in &reserved {
        if let Err(status) = confirm_remote(srv, r).await {
            for r in &reserved {
                give_back(srv, r, true).await;
            }
            return Err(status.into());
        }
    }
    let (s, ext) = (srv.clone(), ext.to_owned());
    let (lr, cr) = (link_r.clone(), content_r.clone());
    let stored = srv
        .disk
        .write(index, move |w| {
            let dedup = s.dedup.as_ref().ok_or(Status::EINVAL)?;
            // The source: held already (one more reference), or the content put into its slot.
            let (source, new_source) = dedup.update(|tx| {
                if let Some(source) = held_in_slot(&s, tx.source_of(index as u8, &sig)?, size) {
                    tx.add_ref(&source)?;
                    return Ok((source, None));
                }
                // Reserved only when the content was not held a moment ago.
                let cr = cr.as_ref().ok_or(Status::EAGAIN)?;
                let source = slot_name(&s, &cr.slot, (size, crc), &ext, ts);
                let fill = match &body {
                    Body::Bytes(b) => Fill::Bytes(b),
                    Body::File(t) => Fill::File(t.file_ref()),
                };
                let filled = fill_slot(&s, w, cr, fill, &header_of(&source, SlotKind::File)?)?;
                let source = source.to_string();
                tx.insert(&source, index as u8, &sig, 1)?;
                Ok((source, Some(filled)))
            })?;
            let used = new_source.is_some();
            Ok(link_slot_change(&s, w, &lr, source, (crc, &ext, ts), new_source)?.map(|name| (name, used)))
        })
        .await;
    let (name, content_used) = after_round(srv, stored, &reserved).await?;
    if let (Some(r), false) = (&content_r, content_used) {
        give_back(srv, r, true).await;
    }
    srv.changed(ts);
    Ok(Ok(name))
}

/// The link slot to `source` written into `lr`, named fresh (with the link text's length and
/// `crc32`), and the change recording it (`L link source`, after the source's `C` when the
/// source is new: its trunk file and the directory of a new one, to sync). The reference to
/// `source` taken in the index is given back if the link is not made or not committed.
fn link_slot_change(
    s: &Arc<StorageServer>,
    w: &Writer,
    lr: &Reserved,
    source: String,
    (crc32, ext, ts): (u32, &str, i64),
    new_source: Option<(File, Option<PathBuf>)>,
) -> Result<Change<String>, Status> {
    let release = {
        let (s, source) = (s.clone(), source.clone());
        move || {
            if let Some(d) = &s.dedup {
                let _ = d.update(|tx| tx.release(&source));
            }
        }
    };
    let link = slot_name(s, &lr.slot, (source.len() as u64, crc32), ext, ts);
    let linked = header_of(&link, SlotKind::Link)
        .and_then(|header| fill_slot(s, w, lr, Fill::Bytes(source.as_bytes()), &header));
    let (file, created) = match linked {
        Ok(v) => v,
        Err(status) => {
            release();
            return Err(status);
        }
    };
    let link = link.to_string();
    let mut change = Change::new(link.clone());
    let mut dirs = Vec::new();
    if let Some((source_file, source_created)) = new_source {
        change = change.record(Record::own(ts, Op::Create, &source, String::new())).sync_file(source_file);
        dirs.extend(source_created);
    }
    change = change.record(Record::own(ts, Op::Link, &link, source)).sync_file(file);
    dirs.extend(created);
    for p in &dirs {
        change = change.sync_parent(p);
    }
    Ok(change.settle(move |ok| {
        if !ok {
            release();
        }
    }))
}

/// 20 CREATE_LINK to a file in a trunk slot: a link slot under a fresh name (C's
/// `storage_trunk_create_link`), counted in the de-duplication index. EOPNOTSUPP when no slot
/// can be had (trunk files off here, or no trunk server).
pub(in crate::storage) async fn create_link_slot(
    srv: &Arc<StorageServer>,
    source: String,
    ext: &str,
) -> Result<String, Status> {
    let (name, _) = srv.paths.resolve(&source)?;
    let index = name.store_path_index as usize;
    let info = name.info();
    if !matches!(Held::find(&srv.paths, &source, info.size.unwrap_or(0)), Some(Held::Slot)) {
        return Err(Status::ENOENT);
    }
    let Some(lr) = reserve(srv, index, LINK_TEXT_LEN).await? else { return Err(Status::EOPNOTSUPP) };
    if let Err(status) = confirm_remote(srv, &lr).await {
        give_back(srv, &lr, true).await;
        return Err(status);
    }
    let ts = now_unix();
    let (s, r, ext) = (srv.clone(), lr.clone(), ext.to_owned());
    let stored = srv
        .disk
        .write(index, move |w| {
            if let Some(d) = &s.dedup {
                d.update(|tx| {
                    tx.add_link(&source, index as u8, || {
                        crate::storage::dedup::sign_stored(&s.paths, d.method(), &source)
                    })
                })?;
            }
            link_slot_change(&s, w, &r, source, (info.crc32, &ext, ts), None)
        })
        .await;
    let name = after_round(srv, stored, std::slice::from_ref(&lr)).await.map_err(|e| e.status)?;
    srv.changed(ts);
    Ok(name)
}
