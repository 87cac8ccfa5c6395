//! Disk recovery (PROTOCOL.md §6.7): a store path found without its `data/HH/LL` tree on a
//! storage that had already joined (a replaced or wiped disk) is not served from. Before the
//! storage joins, it reports itself RECOVERY, asks an ACTIVE member of its group for the list
//! of that path's files (26 FETCH_ONE_PATH_BINLOG) and downloads every one (14) into place,
//! trunk-resident files into their slots; only then does it join and become ACTIVE again. An
//! interrupted recovery resumes at the next start (`data/.recovery.flag`); files already
//! there are skipped.
//!
//! The store path mark (`<store_path>/data/.fastdfs_vars`, copied in `.data_init_flag` as
//! `store_path_markN`) binds a disk to this storage, as C writes it: a disk that carries
//! another storage's mark is refused (`check_store_path_mark`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::binlog::{Binlog, Op, Record};
use super::disk::Disk;
use super::paths::StorePaths;
use super::StorageServer;
use crate::client::ClientError;
use crate::protocol::report::Brief;
use crate::protocol::{status, Command, Header, Status};
use crate::server::Shutdown;

/// The flag file (in `<base_path>/data`) listing the store paths still to recover.
pub const FLAG_FILE: &str = ".recovery.flag";
/// The 26 answer's "length unknown" marker (2^58).
pub const UNKNOWN_LENGTH: u64 = 1 << 58;
/// Most bytes of file list a recovering storage accepts.
const MAX_LIST: u64 = 1 << 30;

/// Why a recovery attempt stopped (it is tried again after a pause; files already copied stay).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no tracker configured")]
    NoTracker,
    #[error("no ACTIVE member of {0} to recover from")]
    NoSource(String),
    #[error("the trackers: {0}")]
    Trackers(ClientError),
    /// Reading or writing here; `what` names the file or step.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The member we recover from; `what` names the file or step.
    #[error("{what}: {source}")]
    Member { what: String, source: ClientError },
    #[error("{0}: not a file name of this storage ({1})")]
    Name(String, Status),
    /// The member's file list (26) is not what the protocol says.
    #[error("{addr}: {why}")]
    List { addr: String, why: String },
}

/// A `map_err` for an IO error while doing `what`.
fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io { what: what.to_owned(), source }
}

/// C's mark: the storage's address (46 bytes), port (u16) and store path index (i32), and the
/// time (i32), little-endian as the C struct lies in memory, base64 without padding.
pub fn new_mark(ip: &str, port: u16, index: usize, time: i64) -> String {
    let mut b = [0u8; 56];
    let n = ip.len().min(45);
    b[..n].copy_from_slice(&ip.as_bytes()[..n]);
    b[46..48].copy_from_slice(&port.to_le_bytes());
    b[48..52].copy_from_slice(&(index as i32).to_le_bytes());
    b[52..56].copy_from_slice(&(time as i32).to_le_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}

fn vars_path(root: &Path) -> PathBuf {
    root.join("data/.fastdfs_vars")
}

/// The mark a store path carries, if any.
pub fn disk_mark(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(vars_path(root)).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("store_path_mark=")).map(|v| v.trim().to_owned())
}

pub fn write_disk_mark(root: &Path, mark: &str) -> std::io::Result<()> {
    crate::durable::write_atomic(&root.join("data"), ".fastdfs_vars", format!("store_path_mark={mark}\n").as_bytes())
}

/// The store paths an earlier, interrupted recovery left to do.
pub fn pending(data_dir: &Path) -> BTreeSet<usize> {
    let text = std::fs::read_to_string(data_dir.join(FLAG_FILE)).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().strip_prefix("store_path_index=")).filter_map(|v| v.parse().ok()).collect()
}

pub fn save_pending(data_dir: &Path, paths: &BTreeSet<usize>) -> std::io::Result<()> {
    if paths.is_empty() {
        return match std::fs::remove_file(data_dir.join(FLAG_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => crate::durable::sync_dir(data_dir),
        };
    }
    let text: String = paths.iter().map(|i| format!("store_path_index={i}\n")).collect();
    crate::durable::write_atomic(data_dir, FLAG_FILE, text.as_bytes())
}

/// 26 FETCH_ONE_PATH_BINLOG, the answer's text, handed to `emit` in pieces (false: stop): a
/// `c` line for every create, link, rename or metadata record of store path `index` whose file
/// this storage still holds, in binlog order (renamed files under their new name, `-m` files
/// too; deleted ones are not on disk, so not listed). The binlog is read as a stream and
/// nothing is kept per file, so memory stays flat for any number of files; a name recorded
/// twice (metadata set again) is listed twice, which the receiver skips.
pub fn path_file_list(
    binlog: &Binlog,
    paths: &StorePaths,
    index: u8,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let prefix = format!("M{index:02X}/");
    let writing = binlog.position();
    let mut reader = super::binlog::BinlogReader::at(binlog.dir(), 0, 0);
    let mut out = Vec::with_capacity(64 << 10);
    while let Some(line) = reader.next(writing)? {
        let super::binlog::Line::Record(r) = line else { continue };
        let listed = matches!(r.op, Op::Create | Op::Link | Op::Update | Op::Rename);
        if listed && r.filename.starts_with(&prefix) && paths.holds(&r.filename) {
            // A link stays a link (de-duplicated uploads, slaves as links): `l name target`.
            let line = match link_target(paths, &r) {
                Some(target) => format!("{} l {} {target}\n", r.timestamp, r.filename),
                None => format!("{} c {}\n", r.timestamp, r.filename),
            };
            out.extend_from_slice(line.as_bytes());
            if out.len() >= 60 << 10 && !emit(std::mem::take(&mut out)) {
                return Ok(());
            }
        }
    }
    if !out.is_empty() {
        emit(out);
    }
    Ok(())
}

/// The target of a link record whose name is a symbolic link or a link slot here.
fn link_target(paths: &StorePaths, r: &Record) -> Option<String> {
    let at = paths.locate(&r.filename).ok()?;
    let linked = if at.in_slot {
        crate::trunk::open(&at.name, &paths.store_root(&at.name)).ok()??.kind == crate::trunk::SlotKind::Link
    } else {
        std::fs::symlink_metadata(&at.path).ok()?.file_type().is_symlink()
    };
    (r.op == Op::Link && linked && paths.resolve(&r.extra).is_ok()).then(|| r.extra.clone())
}

/// 26 on the server side: the header with the unknown-length marker, the list as it is read,
/// its length (8 bytes), then the connection closes.
pub(super) async fn send_path_file_list(
    srv: &Arc<StorageServer>,
    sock: &mut crate::server::PeerStream,
    index: u8,
) -> std::io::Result<()> {
    let mut header = Header::response(Status::OK, 0);
    header.pkg_len = UNKNOWN_LENGTH;
    sock.write_all(&header.encode()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let s = srv.clone();
    let producer = tokio::task::spawn_blocking(move || {
        path_file_list(&s.binlog, &s.paths, index, |piece| tx.blocking_send(piece).is_ok())
    });
    let mut total = 0u64;
    while let Some(piece) = rx.recv().await {
        sock.write_all(&piece).await?;
        total += piece.len() as u64;
    }
    producer.await.map_err(std::io::Error::other)??;
    sock.write_all(&total.to_be_bytes()).await?;
    sock.flush().await
}

/// Recovers every store path that needs it, retrying until done or stopped; then the storage
/// may join its trackers.
pub async fn run(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let paths = srv.recovering();
    if paths.is_empty() {
        return;
    }
    if shutdown.retry("disk recovery", Duration::from_secs(5), || recover(&srv, &paths)).await {
        srv.recovered();
    }
}

async fn recover(srv: &Arc<StorageServer>, paths: &BTreeSet<usize>) -> Result<(), RecoveryError> {
    let c = &srv.config;
    let first = c.tracker_servers.first().cloned().ok_or(RecoveryError::NoTracker)?;
    let mut conf = crate::config::ClientConfig::for_tracker(first);
    conf.tracker_servers = c.tracker_servers.clone();
    conf.connect_timeout = c.connect_timeout;
    conf.network_timeout = c.network_timeout;
    let client = crate::client::Client::new(&conf);
    let me = srv.identity.my_id();
    let members = client.tracker.list_storages(&srv.group, None).await.map_err(RecoveryError::Trackers)?;
    let source = members
        .iter()
        .find(|s| s.id != me && s.status == status::ACTIVE && s.store_path_count as usize == srv.paths.paths.len())
        .ok_or_else(|| RecoveryError::NoSource(srv.group.clone()))?;
    let addr = crate::config::join_host_port(&source.ip, source.storage_port as u16);
    let brief = Brief { status: status::RECOVERY, port: 0, id: me.clone(), ip: srv.identity.my_ip() };
    super::sync::report_to_trackers(srv, brief.clone()).await;
    for &index in paths {
        tracing::info!("disk recovery: store path {index} from {} ({addr})", source.id);
        // The list goes to a file, not memory: a member may send up to MAX_LIST bytes of it.
        let list_path = srv.data_dir.join(format!(".recovery.list.{index}"));
        fetch_list(srv, &addr, index as u8, &list_path).await?;
        let list = std::fs::File::open(&list_path).map_err(io_err("the file list"))?;
        let mut lines = std::io::BufReader::new(list);
        let (mut copied, mut present, mut skipped) = (0usize, 0usize, 0usize);
        let mut line = Vec::with_capacity(MAX_LINE);
        while next_line(&mut lines, &mut line).map_err(io_err("the file list"))? {
            let Some(r) = std::str::from_utf8(&line).ok().and_then(Record::parse) else { continue };
            // A name this storage cannot hold (another store path, a path out of the tree) is
            // the member's mistake: it is skipped and said, the rest is recovered.
            if srv.paths.resolve(&r.filename).is_err() || (r.op == Op::Link && srv.paths.resolve(&r.extra).is_err()) {
                tracing::warn!(
                    "disk recovery: skipped {:?} from {}: not a file name of this storage",
                    r.filename,
                    source.id
                );
                skipped += 1;
                continue;
            }
            if srv.paths.holds(&r.filename) {
                present += 1;
                continue;
            }
            if r.op == Op::Link {
                // Its target came earlier in the list: the link is made again, not a copy.
                relink(srv, &r.filename, &r.extra).await?;
            } else {
                copy_file(srv, &client, &addr, &r.filename).await?;
            }
            copied += 1;
        }
        let _ = std::fs::remove_file(&list_path);
        let root = srv.paths.paths[index].root.clone();
        Disk::io(move || crate::durable::sync_dir(&root.join("data"))).await.map_err(io_err("the store path"))?;
        tracing::info!(
            "disk recovery: store path {index}: {copied} file(s) copied, {present} already here, {skipped} skipped"
        );
        srv.path_recovered(index).map_err(io_err("the recovery flag"))?;
    }
    // Links came back as links: the de-duplication index counts them again.
    if srv.dedup.is_some() {
        let s = srv.clone();
        let recount = move || {
            let counted = s.dedup.as_ref().map(|d| super::recount_links(&s.paths, &s.binlog, d)).transpose();
            counted.map_err(std::io::Error::other)
        };
        Disk::io(recount).await.map_err(io_err("recounting the de-duplication index"))?;
    }
    // C reports RECOVERY again when it is done; the next JOIN takes the storage out of it.
    super::sync::report_to_trackers(srv, brief).await;
    Ok(())
}

/// The longest list line read whole (a record is far shorter; longer ones are skipped).
const MAX_LINE: usize = 1024;

/// The next line of `r` into `line` (without its newline; cut to [`MAX_LINE`] bytes, the rest
/// of a longer one skipped, so one endless line cannot fill memory). `false` at the end.
fn next_line(r: &mut impl std::io::BufRead, line: &mut Vec<u8>) -> std::io::Result<bool> {
    use std::io::{BufRead, Read};
    line.clear();
    let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(true);
    }
    // Cut: drop the rest of this line.
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(true);
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let all = buf.len();
                r.consume(all);
            }
        }
    }
}

/// A link of the list made again here (`name` → `target`'s file): a symbolic link, or a link
/// slot in its place in the trunk file.
async fn relink(srv: &StorageServer, name: &str, target: &str) -> Result<(), RecoveryError> {
    let (link, path) = srv.paths.resolve(name).map_err(|s| RecoveryError::Name(name.to_owned(), s))?;
    let (_, to) = srv.paths.resolve(target).map_err(|s| RecoveryError::Name(target.to_owned(), s))?;
    let (root, text, live) = (srv.paths.store_root(&link), target.to_owned(), srv.live.clone());
    let make = move || {
        if crate::trunk::is_trunk_name(&link) {
            let kind = crate::trunk::SlotKind::Link;
            crate::trunk::write(&link, &root, kind, &mut text.as_bytes(), text.len() as u64)?.sync_data()?;
            // Recorded by the member, not here: the slot index is told directly.
            return live.insert(&link);
        }
        match super::paths::symlink(&to, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    };
    Disk::io(make).await.map_err(io_err(name))
}

/// 26 to the source: the list into the file `to`, checked against the length that ends it.
async fn fetch_list(srv: &StorageServer, addr: &str, index: u8, to: &Path) -> Result<(), RecoveryError> {
    let c = &srv.config;
    let list = |why: &str| RecoveryError::List { addr: addr.to_owned(), why: why.to_owned() };
    let member = |source| RecoveryError::Member { what: addr.to_owned(), source };
    let mut sock = srv.connect_to_peer(addr).await.map_err(member)?.into_stream();
    let mut body = [0u8; 17];
    let g = srv.group.as_bytes();
    body[..g.len().min(16)].copy_from_slice(&g[..g.len().min(16)]);
    body[16] = index;
    let mut req = Header::request(Command::FetchOnePathBinlog as u8, body.len()).encode().to_vec();
    req.extend_from_slice(&body);
    sock.write_all(&req).await.map_err(io_err(addr))?;
    let mut raw = [0u8; crate::protocol::HEADER_LEN];
    tokio::time::timeout(c.network_timeout, sock.read_exact(&mut raw))
        .await
        .map_err(|_| list("no answer"))?
        .map_err(io_err(addr))?;
    let h = Header::decode(&raw, u64::MAX).map_err(|e| list(&e.to_string()))?;
    if h.status != 0 {
        return Err(list(&format!("FETCH_ONE_PATH_BINLOG answered {}", Status(h.status))));
    }
    // The last 8 bytes are the length, not list: they are held back until the next piece comes.
    let mut file = tokio::fs::File::create(to).await.map_err(io_err("the file list"))?;
    let mut limited = (&mut sock).take(MAX_LIST + 8);
    let (mut buf, mut tail, mut written) = (vec![0u8; 64 << 10], Vec::<u8>::with_capacity(8), 0u64);
    // Each read within network_timeout, the whole list at 1 MiB/s at least: a member that
    // trickles cannot hold the recovery for ever.
    let whole = c.network_timeout * 10 + Duration::from_secs(MAX_LIST >> 20);
    let deadline = tokio::time::Instant::now() + whole;
    loop {
        let until = deadline.min(tokio::time::Instant::now() + c.network_timeout);
        let n = tokio::time::timeout_at(until, limited.read(&mut buf))
            .await
            .map_err(|_| list("the file list stalled"))?
            .map_err(io_err(addr))?;
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 8 {
            let text = tail.len() - 8;
            file.write_all(&tail[..text]).await.map_err(io_err("the file list"))?;
            written += text as u64;
            tail.drain(..text);
        }
    }
    file.flush().await.map_err(io_err("the file list"))?;
    let said = <[u8; 8]>::try_from(&tail[..]).map(u64::from_be_bytes).map_err(|_| list("the file list ended early"))?;
    if said != written {
        return Err(list(&format!("the file list has {written} bytes, its end says {said}")));
    }
    Ok(())
}

/// One file from the source into place: a regular file streamed into a temp file (given the
/// source's time) and renamed, a trunk-resident one into its slot.
async fn copy_file(
    srv: &Arc<StorageServer>,
    client: &crate::client::Client,
    addr: &str,
    filename: &str,
) -> Result<(), RecoveryError> {
    let e = |source: ClientError| RecoveryError::Member { what: filename.to_owned(), source };
    let gone = |e: &ClientError| matches!(e, ClientError::Status { status: Status::ENOENT });
    let info = client.storage.file_info(addr, &srv.group, filename, 0).await;
    let (size, mtime) = match info {
        Ok(i) => (i.file_size.max(0) as u64, i.create_timestamp),
        // Metadata files have no file info of their own.
        Err(_) if filename.ends_with("-m") => (u64::MAX, crate::timefmt::now_unix()),
        // Deleted at the source since the list was made.
        Err(err) if gone(&err) => return Ok(()),
        Err(err) => return Err(e(err)),
    };
    if let Some((name, root)) = srv.paths.trunk_name(filename) {
        let data = match size {
            0 => Vec::new(),
            _ => match client.storage.download(addr, &srv.group, filename, 0, 0).await {
                Ok(b) => b.to_vec(),
                Err(err) if gone(&err) => return Ok(()),
                Err(err) => return Err(e(err)),
            },
        };
        let live = srv.live.clone();
        let put = move || {
            crate::trunk::write(&name, &root, crate::trunk::SlotKind::File, &mut &data[..], data.len() as u64)?
                .sync_data()?;
            // Recorded by the member, not here: the slot index is told directly.
            live.insert(&name)
        };
        return Disk::io(put).await.map_err(io_err(filename));
    }
    let (name, path) = srv.paths.resolve(filename).map_err(|s| RecoveryError::Name(filename.to_owned(), s))?;
    let dir = srv.paths.temp_dir(name.store_path_index as usize);
    let mut temp = Disk::io(move || crate::durable::TempFile::create_in(&dir, "r")).await.map_err(io_err(filename))?;
    if size > 0 {
        let mut out = tokio::fs::File::from_std(temp.file_ref().try_clone().map_err(io_err(filename))?);
        match client.storage.download_into(addr, &srv.group, filename, 0, 0, &mut out).await {
            Ok(_) => out.flush().await.map_err(io_err(filename))?,
            Err(err) if gone(&err) => return Ok(()),
            Err(err) => return Err(e(err)),
        }
    }
    let publish = move || {
        temp.file().set_modified(crate::timefmt::system_time(mtime))?;
        temp.file().sync_data()?;
        match temp.publish_entry(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    };
    Disk::io(publish).await.map_err(io_err(filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_are_cut_at_max_line_and_the_rest_skipped() {
        let long = vec![b'x'; MAX_LINE * 3];
        let text = [b"one\n".to_vec(), long, b"\ntwo\nthree".to_vec()].concat();
        let mut r = std::io::BufReader::with_capacity(64, &text[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while next_line(&mut r, &mut line).unwrap() {
            assert!(line.len() <= MAX_LINE);
            got.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].as_str(), got[2].as_str(), got[3].as_str()), ("one", "two", "three"));
        assert_eq!(got[1].len(), MAX_LINE, "a long line is cut, not kept whole");
    }
}
