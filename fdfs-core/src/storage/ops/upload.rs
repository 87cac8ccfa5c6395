//! 11 UPLOAD_FILE, 23 UPLOAD_APPENDER_FILE and 21 UPLOAD_SLAVE_FILE: content received (in
//! memory when small, a temp file otherwise), a fresh name, the file published in a writer job.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncRead;

use crate::durable::TempFile;
use crate::file_id::{self, NameKind};
use crate::protocol::storage::{SlaveUploadHead, UploadHead};
use crate::protocol::Status;
use crate::storage::binlog::{Op, Record};
use crate::storage::content::{Content, SMALL};
use crate::storage::disk::{Change, Disk, WriteFence};
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

use super::links::{linked_content, signed, LinkName};
use super::names::{fresh_names, under_fresh_name, NameFor};
use super::{closing, io, Body, OpResult};
use crate::timefmt::system_time;

/// Reads a request's content: small content into memory, large content streamed into a new
/// temp file of store path `index`. Returns it with its CRC32.
pub(in crate::storage) async fn receive<R: AsyncRead + Unpin>(
    srv: &StorageServer,
    index: usize,
    content: &mut Content<'_, R>,
) -> std::io::Result<(Body, u32)> {
    if content.left() <= SMALL {
        let (bytes, crc) = content.read_all().await?;
        return Ok((Body::Bytes(bytes), crc));
    }
    let dir = srv.paths.temp_dir(index);
    let mut temp = Disk::io(move || TempFile::create_in(&dir, "f")).await?;
    let file = Arc::new(temp.file().try_clone()?);
    srv.disk.stream_into(file, 0, content, &WriteFence::default()).await?;
    Ok((Body::File(temp), content.crc()))
}

/// Gives received content a new name (`name_for`, retried with fresh random parts if taken)
/// in a writer job; the name exists only once the batch that records it is durable.
async fn store_new(
    srv: &Arc<StorageServer>,
    index: usize,
    body: Body,
    ts: i64,
    mut name_for: NameFor,
) -> Result<String, Status> {
    let s = srv.clone();
    let name = srv
        .disk
        .write(index, move |w| {
            let mut temp = body.into_temp(w, system_time(ts)).map_err(io)?;
            let (name, dest) = under_fresh_name(&s.paths, &mut name_for, |dest| temp.publish_entry(dest))?;
            published(ts, name.to_string(), dest, temp)
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}

/// A new file just given its name: recorded as created, and taken back out if the batch fails,
/// so no file exists that neither the client nor the replicas know of.
pub(super) fn published(ts: i64, name: String, dest: PathBuf, temp: TempFile) -> Result<Change<String>, Status> {
    let record = Record::own(ts, Op::Create, &name, String::new());
    let change = Change::new(name).record(record).sync_file(temp.into_published_file()).sync_parent(&dest);
    Ok(change.settle(move |ok| {
        if !ok && std::fs::remove_file(&dest).is_err() {
            tracing::error!("{}: could not be recorded nor removed; the next start records it", dest.display());
        }
    }))
}

/// 11 / 23: stores the content under a new name; returns the remote filename.
pub async fn upload<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &UploadHead,
    content: &mut Content<'_, R>,
    appender: bool,
) -> OpResult<String> {
    let params = srv.identity.params();
    let size = head.file_size;
    if head.store_path_index >= 0 && head.store_path_index as usize >= srv.paths.paths.len() {
        return Err(Status::EINVAL.into());
    }
    let Some(index) = srv.paths.choose(head.store_path_index, size, params.reserved, params.store_path_most_free)
    else {
        srv.paths.log_refusal(size, params.reserved);
        return Err(closing(Status::ENOSPC));
    };
    let ts = now_unix();
    // Content received and signed for a trunk slot that could not be had.
    let mut received = None;
    // Appender files change size, so they never go into a trunk slot (as C); nor are they
    // ever shared.
    if !appender && srv.dedup_uploads().is_some() && crate::storage::trunk::fits_slot(srv, size) {
        let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
        let (body, sig) = signed(srv, body).await?;
        let sig = sig.ok_or(Status::EINVAL)?;
        match crate::storage::trunk::upload_linked(srv, index, body, (size, crc), sig, &head.ext, ts).await? {
            Ok(name) => return Ok(name),
            Err(body) => received = Some((body, crc, Some(sig))),
        }
    } else if !appender {
        if let Some(slot) = crate::storage::trunk::reserve(srv, index, size).await.map_err(closing)? {
            let name = crate::storage::trunk::upload(srv, slot, &head.ext, content, ts).await?;
            srv.changed(ts);
            return Ok(name);
        }
    }
    let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
    let (body, crc, sig) = match received {
        Some(r) => r,
        None => {
            let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
            (body, crc, None)
        }
    };
    let kind = if appender { NameKind::Appender } else { NameKind::Normal };
    let name_for = fresh_names(srv.identity.source(), ts, (size, crc), kind, head.ext.clone(), (index, high, low));
    let name = match srv.dedup_uploads() {
        Some(_) if !appender => {
            let (body, sig) = match sig {
                Some(sig) => (body, Some(sig)),
                None => signed(srv, body).await?,
            };
            let s = srv.clone();
            let name = srv
                .disk
                .write(index, move |w| linked_content(&s, w, ts, index, body, sig, true, LinkName::Fresh(name_for)))
                .await?;
            srv.changed(ts);
            name
        }
        _ => store_new(srv, index, body, ts, name_for).await?,
    };
    let free = &srv.paths.paths[index].free_mb;
    free.fetch_sub((size >> 20).min(free.load(Ordering::Relaxed)), Ordering::Relaxed);
    Ok(name)
}

/// 21: a slave file next to its master.
pub async fn upload_slave<R: AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    head: &SlaveUploadHead,
    content: &mut Content<'_, R>,
) -> OpResult<String> {
    let master = srv.paths.locate(&head.master_filename).map_err(closing)?;
    let slave = file_id::slave_filename(&master.name.to_string(), &head.prefix, &head.ext)
        .map_err(|_| closing(Status::EINVAL))?;
    let (slave_name, slave_path) = srv.paths.resolve(&slave).map_err(closing)?;
    let index = slave_name.store_path_index as usize;
    let ts = now_unix();
    let (body, crc) = receive(srv, index, content).await.map_err(|e| closing(io(e)))?;
    let s = srv.clone();
    // `store_slave_file_use_link`: the content under a name of its own, the slave a link to it.
    let link = srv.identity.params().store_slave_file_use_link;
    let (high, low) = srv.paths.next_dir(&mut fastrand::Rng::new());
    let content_names = fresh_names(
        srv.identity.source(),
        ts,
        (head.file_size, crc),
        NameKind::Normal,
        head.ext.clone(),
        (index, high, low),
    );
    let (body, sig) = if link { signed(srv, body).await? } else { (body, None) };
    let name = srv
        .disk
        .write(index, move |w| {
            // A master may live in a trunk file (C stores its slaves as regular files beside it).
            if !s.paths.is_stored(&master)? {
                return Err(Status::ENOENT);
            }
            if link {
                let given = LinkName::Given { name: slave, path: slave_path, content_name_for: Some(content_names) };
                return linked_content(&s, w, ts, index, body, sig, s.dedup_uploads().is_some(), given);
            }
            let mut temp = body.into_temp(w, system_time(ts)).map_err(io)?;
            match temp.publish_entry(&slave_path) {
                Ok(()) => published(ts, slave, slave_path, temp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Status::EEXIST),
                Err(e) => Err(io(e)),
            }
        })
        .await?;
    srv.changed(ts);
    Ok(name)
}
