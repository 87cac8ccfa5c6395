//! 13 SET_METADATA, 15 GET_METADATA and 22 QUERY_FILE_INFO.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::file_id::{FileType, Source};
use crate::protocol::storage::{file_info_flags, pack_metadata, parse_metadata, FileInfoResp, MetaOp, SetMetadataReq};
use crate::protocol::Status;
use crate::storage::binlog::{Op, Record};
use crate::storage::disk::{write_temp, Change, Disk};
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

use super::io;
use crate::storage::located::{meta_path, open_located};

pub(super) const CHUNK: usize = 256 << 10;

/// Merges two sorted metadata lists; `new` wins on equal names.
fn merge_metadata(old: Vec<(Vec<u8>, Vec<u8>)>, new: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some(o), Some(n)) if o.0 == n.0 => {
                old.next();
                out.extend(new.next());
            }
            (Some(o), Some(n)) if o.0 < n.0 => out.extend(old.next()),
            (_, Some(_)) => out.extend(new.next()),
            (Some(_), None) => out.extend(old.next()),
            (None, None) => return out,
        }
    }
}

/// 13 (PROTOCOL.md §4.6): overwrite or merge, stored sorted by name, under the file's lock
/// (two merges at once would lose one's keys).
pub async fn set_metadata(srv: &Arc<StorageServer>, req: SetMetadataReq) -> Result<(), Status> {
    srv.check_group(&req.group)?;
    let at = srv.paths.locate(&req.filename)?;
    let (index, path) = (at.name.store_path_index as usize, at.path.clone());
    let _lock = srv.lock_file(&path).await;
    let s = srv.clone();
    let ts = now_unix();
    srv.disk
        .write(index, move |w| {
            if !s.paths.is_stored(&at)? {
                return Err(Status::ENOENT);
            }
            let meta = meta_path(&path);
            let existed = meta.exists();
            let logname = format!("{}-m", req.filename);
            let mut new = parse_metadata(&req.meta);
            if req.meta.is_empty() {
                if req.op == MetaOp::Overwrite && existed {
                    std::fs::remove_file(&meta).map_err(io)?;
                    let record = Record::own(ts, Op::Delete, &logname, String::new());
                    return Ok(Change::new(()).record(record).sync_parent(&meta));
                }
                return Ok(Change::new(()));
            }
            new.sort_by(|a, b| a.0.cmp(&b.0));
            let merged = if req.op == MetaOp::Merge && existed {
                merge_metadata(parse_metadata(&std::fs::read(&meta).map_err(io)?), new)
            } else {
                new
            };
            let temp = write_temp(w, &pack_metadata(&merged), SystemTime::now()).map_err(io)?;
            let file = temp.replace_entry(&meta).map_err(io)?;
            let op = if existed { Op::Update } else { Op::Create };
            Ok(Change::new(()).record(Record::own(ts, op, &logname, String::new())).sync_file(file).sync_parent(&meta))
        })
        .await?;
    srv.changed(ts);
    Ok(())
}

/// 15.
pub async fn get_metadata(srv: &Arc<StorageServer>, group: &str, filename: &str) -> Result<Vec<u8>, Status> {
    srv.check_group(group)?;
    let at = srv.paths.locate(filename)?;
    let s = srv.clone();
    Disk::read(move || {
        if !s.paths.is_stored(&at)? {
            return Err(Status::ENOENT);
        }
        std::fs::read(meta_path(&at.path)).map_err(io)
    })
    .await
}

pub(in crate::storage) fn crc_of(path: &Path) -> std::io::Result<u32> {
    let mut f = File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// 22: size and mtime from disk; CRC from the name for normal files, computed for appender
/// and slave files (unless flagged off).
pub async fn file_info(
    srv: &Arc<StorageServer>,
    group: &str,
    filename: &str,
    flags: u8,
) -> Result<FileInfoResp, Status> {
    srv.check_group(group)?;
    let at = srv.paths.locate(filename)?;
    let (info, in_slot, path) = (at.name.info(), at.in_slot, at.path.clone());
    // Size, time and CRC of a trunk-resident file are the name's, as C reports them, once the
    // slot holds it; a link slot reports the file it names (its name carries the original's CRC).
    let opened =
        open_located(&srv.paths, at).await.map_err(|s| if s == Status::EISDIR { Status::ENOENT } else { s })?;
    let computed = match info.file_type {
        _ if in_slot => None,
        FileType::Normal => None,
        _ if flags & file_info_flags::NO_CRC32 != 0 => Some(0),
        _ => Some(Disk::read(move || crc_of(&path).map_err(io)).await?),
    };
    let (size, mtime) = (opened.size, opened.mtime);
    let source_ip = match info.source {
        Source::Ip(ip) => ip.to_string(),
        Source::ServerId(id) => srv.storage_id_host(id).unwrap_or_default(),
    };
    Ok(FileInfoResp {
        file_size: size as i64,
        create_timestamp: mtime,
        crc32: FileInfoResp::with_crc32(computed.unwrap_or(info.crc32)),
        source_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_merges_by_name_and_the_new_value_wins() {
        let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let old = vec![kv("a", "1"), kv("c", "3"), kv("d", "4")];
        let new = vec![kv("b", "2"), kv("c", "30"), kv("e", "5")];
        assert_eq!(
            merge_metadata(old, new),
            vec![kv("a", "1"), kv("b", "2"), kv("c", "30"), kv("d", "4"), kv("e", "5")]
        );
    }
}
