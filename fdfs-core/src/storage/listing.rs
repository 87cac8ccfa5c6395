//! 120 LIST_FILES on the storage side ([`crate::protocol::listing`]): the group's live files,
//! read from this storage's binlog, not from a walk of `data/HH/LL`.
//!
//! The binlog is read as a stream, oldest first. Every record that brings a name into being
//! (create, link, rename; ours and replicated ones) is a candidate; a candidate is listed when
//! the name's filters pass and its file is still here now (its regular file, symbolic link
//! target or trunk slot), so deleted, renamed-away and overwritten-slot names drop out without
//! remembering deletes. Metadata files (`-m`) and de-duplicated contents' own names (sources,
//! which only their links name) are not files of a client. Memory stays flat
//! whatever the binlog's length: the only thing kept is a window of the last names listed, for
//! a name recorded twice (a replicated file sent again after its sender restarted before
//! saving its mark comes back within that sender's last unsaved records).

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use super::binlog::{Binlog, BinlogReader, Line, Op};
use super::dedup::DedupIndex;
use super::located::meta_path;
use super::ops::crc_of;
use super::paths::StorePaths;
use super::StorageServer;
use crate::file_id::FileType;
use crate::protocol::listing::{list_flags, ListFilesReq, ListedFile, MAX_CHUNK, MAX_METADATA};
use crate::protocol::Status;
use crate::server::frame::write_answer;
use crate::server::PeerStream;

/// How many of the last listed names are remembered to skip a repeat (8 bytes each, twice).
const RECENT_WINDOW: usize = 1 << 18;

/// Sends the list as answer packets, then the empty one that ends it (or an error status).
/// `Err` when the client went away or stopped reading for `network_timeout`.
pub(super) async fn send(srv: &Arc<StorageServer>, sock: &mut PeerStream, req: ListFilesReq) -> std::io::Result<()> {
    let timeout = srv.config.network_timeout;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let s = srv.clone();
    let producer = tokio::task::spawn_blocking(move || s.catalog().list(&req, |chunk| tx.blocking_send(chunk).is_ok()));
    let timed = |r: Result<std::io::Result<()>, tokio::time::error::Elapsed>| {
        r.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    };
    while let Some(chunk) = rx.recv().await {
        timed(tokio::time::timeout(timeout, write_answer(sock, Status::OK, &chunk)).await)?;
    }
    // The end only after the producer finished well: a list cut short by a disk error (or a
    // panic) must not read as complete.
    let status = match producer.await {
        Ok(Ok(())) => Status::OK,
        Ok(Err(e)) => {
            tracing::error!("listing files: reading the binlog: {e}");
            Status::from_io(&e)
        }
        Err(e) => {
            tracing::error!("listing files: {e}");
            Status::EIO
        }
    };
    timed(tokio::time::timeout(timeout, write_answer(sock, status, &[])).await)
}

/// What a listing reads, and nothing more of the storage: the binlog (which names came into
/// being), the store paths (whether each is still here) and the de-duplication index (which
/// names are contents' own).
pub(super) struct Catalog<'a> {
    pub binlog: &'a Binlog,
    pub paths: &'a StorePaths,
    pub dedup: Option<&'a DedupIndex>,
}

impl StorageServer {
    pub(super) fn catalog(&self) -> Catalog<'_> {
        Catalog { binlog: &self.binlog, paths: &self.paths, dedup: self.dedup.as_ref() }
    }
}

impl Catalog<'_> {
    /// The records of every live file that passes `req`'s filters, in binlog order, handed to
    /// `emit` in chunks of about [`MAX_CHUNK`] bytes (`false` from `emit`: stop).
    pub(super) fn list(&self, req: &ListFilesReq, mut emit: impl FnMut(Vec<u8>) -> bool) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(MAX_CHUNK + MAX_METADATA + 256);
        let mut stopped = false;
        self.each_live(req, false, |file| {
            file.put(&mut out);
            if out.len() >= MAX_CHUNK && !emit(std::mem::take(&mut out)) {
                stopped = true;
            }
            !stopped
        })?;
        if !out.is_empty() && !stopped {
            emit(out);
        }
        Ok(())
    }

    /// Every live file that passes `req`, once, in binlog order (`false` from `each`: stop).
    /// `own_only`: only the files this storage is the source of (its uppercase records), the
    /// ones it answers for when the group deletes by rule.
    pub(super) fn each_live(
        &self,
        req: &ListFilesReq,
        own_only: bool,
        mut each: impl FnMut(ListedFile) -> bool,
    ) -> std::io::Result<()> {
        let writing = self.binlog.position();
        let mut reader = BinlogReader::at(self.binlog.dir(), 0, 0);
        let mut recent = RecentNames::default();
        while let Some(line) = reader.next(writing)? {
            let Line::Record(r) = line else { continue };
            let creates = matches!(r.op, Op::Create | Op::Link | Op::Rename);
            if !creates || r.filename.ends_with("-m") || (own_only && r.replica) {
                continue;
            }
            let Some(file) = self.listed(&r.filename, req) else { continue };
            // A de-duplicated content's own name is no client's file: its links are.
            if self.dedup.is_some_and(|d| d.is_source(&r.filename).unwrap_or(false)) {
                continue;
            }
            if recent.first_time(&file.filename) && !each(file) {
                break;
            }
        }
        Ok(())
    }

    /// `filename` as a listing shows it, when it passes `req` and its file is here.
    fn listed(&self, filename: &str, req: &ListFilesReq) -> Option<ListedFile> {
        let at = self.paths.locate(filename).ok()?;
        let (info, path) = (at.name.info(), at.path);
        let created = i64::from(info.create_timestamp);
        if !req.name_matches(filename, created) {
            return None;
        }
        let (size, crc32) = if at.in_slot {
            // A link slot is listed when the file it names is still there.
            (self.paths.open_trunk_content(&at.name).ok()??.size, info.crc32)
        } else {
            let m = std::fs::metadata(&path).ok()?;
            if !m.is_file() {
                return None;
            }
            let crc32 = match info.file_type {
                FileType::Normal => info.crc32,
                _ if req.flags & list_flags::CRC32 != 0 => crc_of(&path).ok()?,
                _ => 0,
            };
            (m.len(), crc32)
        };
        if !req.size_matches(size) {
            return None;
        }
        let metadata =
            if req.flags & list_flags::METADATA != 0 { read_metadata(&meta_path(&path)) } else { Vec::new() };
        Some(ListedFile { filename: filename.to_owned(), size, created, crc32, metadata })
    }
}

/// A metadata file's packed text, none when absent; one longer than a listing carries is cut
/// at its last whole pair.
fn read_metadata(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else { return Vec::new() };
    let mut raw = Vec::new();
    if f.take(MAX_METADATA as u64 + 1).read_to_end(&mut raw).is_err() {
        return Vec::new();
    }
    if raw.len() > MAX_METADATA {
        let cut = raw[..MAX_METADATA].iter().rposition(|&b| b == 0x01).unwrap_or(0);
        raw.truncate(cut);
    }
    raw
}

/// The last [`RECENT_WINDOW`] names listed, by keyed hash (a name chosen to collide with
/// another cannot hide it: the key is random per listing).
#[derive(Default)]
struct RecentNames {
    hasher: std::collections::hash_map::RandomState,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentNames {
    fn first_time(&mut self, name: &str) -> bool {
        let h = self.hasher.hash_one(name);
        if !self.seen.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > RECENT_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_names_skip_a_repeat_and_forget_past_the_window() {
        let mut r = RecentNames::default();
        assert!(r.first_time("a"));
        assert!(!r.first_time("a"));
        assert!(r.first_time("b"));
        for i in 0..RECENT_WINDOW {
            r.first_time(&i.to_string());
        }
        assert!(r.seen.len() <= RECENT_WINDOW && r.order.len() <= RECENT_WINDOW);
        assert!(r.first_time("a"), "forgotten past the window");
    }
}
