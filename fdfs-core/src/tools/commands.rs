//! The classic FastDFS client tools: same names, arguments, output and exit codes (the errno
//! of the failure) as the C originals.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::datetime;
use super::{load_client, runtime};
use crate::client::{file_ext, ClientError, Content, UploadKind};
use crate::file_id::{FileId, FileType, Source};

/// Runs a tool: usage errors print to stderr and exit 1; FastDFS errors exit with their errno.
pub fn main(f: fn(&[String]) -> Result<ExitCode>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    crate::logging::init_stderr(crate::config::LogLevel::Error);
    match f(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn fail(what: &str, e: &ClientError) -> ExitCode {
    let (line, code) = failure(&format!("{what} fail"), e);
    eprintln!("{line}");
    code
}

/// C's failure line (`WHAT, error no: N, error info: TEXT`) and the exit code for it (the
/// errno; 1 when there is none).
pub fn failure(what: &str, e: &ClientError) -> (String, ExitCode) {
    let n = e.status().0;
    (format!("{what}, error no: {n}, error info: {}", errno_text(n, e)), ExitCode::from(if n == 0 { 1 } else { n }))
}

fn errno_text(n: u8, e: &ClientError) -> String {
    let text = std::io::Error::from_raw_os_error(n as i32).to_string();
    // "No such file or directory (os error 2)" → the C strerror text.
    match text.rsplit_once(" (os error") {
        // A server's status, or a local file's error: C prints strerror for both.
        Some((t, _)) if matches!(e, ClientError::Status { .. } | ClientError::Local(_)) => t.to_owned(),
        _ => e.to_string(),
    }
}

/// A local file to send, streamed (never read whole into memory), with its length, behind a
/// progress bar.
pub(crate) async fn open_local(path: &Path) -> std::io::Result<(Progress<tokio::fs::File>, u64)> {
    let f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    Ok((Progress::new(f, len), len))
}

/// [`open_local`] with C's wording on failure.
async fn open_to_send(path: &Path) -> Result<(Progress<tokio::fs::File>, u64)> {
    open_local(path).await.with_context(|| format!("open file {} fail", path.display()))
}

/// Shows a progress bar on stderr for large transfers when stderr is a terminal.
pub(crate) struct Progress<T> {
    inner: T,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    show: bool,
}

const PROGRESS_MIN: u64 = 32 << 20;

impl<T> Progress<T> {
    fn new(inner: T, total: u64) -> Self {
        let show = total >= PROGRESS_MIN && std::io::stderr().is_terminal();
        Self { inner, total, done: 0, start: Instant::now(), last: Instant::now(), show }
    }

    fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.show && (self.last.elapsed().as_millis() >= 200 || self.done == self.total) {
            self.last = Instant::now();
            let pct = self.done * 100 / self.total.max(1);
            let bar = "#".repeat((pct / 4) as usize);
            let mbs = self.done as f64 / (1 << 20) as f64 / self.start.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r[{bar:<25}] {pct:>3}% {:.1}/{:.1} MiB {mbs:.1} MiB/s",
                self.done as f64 / 1048576.0,
                self.total as f64 / 1048576.0
            );
            if self.done == self.total {
                eprintln!();
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Progress<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.advance(n);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Progress<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.advance(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn upload(args: &[String], kind: UploadKind, prog: &str) -> Result<ExitCode> {
    if args.len() < 2 {
        bail!("Usage: {prog} <config_file> <local_filename> [storage_ip:port] [store_path_index]");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let path = PathBuf::from(&args[1]);
    let storage = args.get(2).cloned();
    let index: i8 = match args.get(3) {
        Some(i) => i.parse()?,
        None => -1,
    };
    runtime()?.block_on(async move {
        let (mut src, len) = open_to_send(&path).await?;
        let ext = file_ext(&path);
        let r = match storage {
            // An explicit storage: upload to it directly, as the C tool does.
            Some(addr) => {
                let t = client.tracker.query_store(None).await;
                let group = t.as_ref().map(|t| t.group.clone()).unwrap_or_default();
                let idx = if index >= 0 { index } else { t.map(|t| t.store_path_index as i8).unwrap_or(-1) };
                client.storage.upload(&addr, kind, idx, &ext, Content::Reader(&mut src, len)).await.map(|r| {
                    if group.is_empty() {
                        r.file_id()
                    } else {
                        format!("{group}/{}", r.filename)
                    }
                })
            }
            None => client.upload(kind, None, &ext, Content::Reader(&mut src, len)).await,
        };
        Ok(match r {
            Ok(id) => {
                crate::outln!("{id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("upload file", &e),
        })
    })
}

pub fn upload_file(args: &[String]) -> Result<ExitCode> {
    upload(args, UploadKind::Normal, "fdfs_upload_file")
}

pub fn upload_appender(args: &[String]) -> Result<ExitCode> {
    upload(args, UploadKind::Appender, "fdfs_upload_appender")
}

pub fn download_file(args: &[String]) -> Result<ExitCode> {
    if args.len() < 2 {
        bail!(
            "Usage: fdfs_download_file <config_file> <file_id> [local_filename] [<download_offset> <download_bytes>]"
        );
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    let local = args.get(2).cloned().unwrap_or_else(|| id.rsplit('/').next().unwrap_or("download").to_owned());
    // C reads the offset only with a length (and then silently downloads the whole file); an
    // offset alone here means from there to the end, which is what it asks for.
    let (offset, bytes): (u64, u64) = match (args.get(3), args.get(4)) {
        (Some(o), Some(b)) => (o.parse()?, b.parse()?),
        (Some(o), None) => (o.parse()?, 0),
        _ => (0, 0),
    };
    runtime()?.block_on(async move {
        let r = async {
            // The size is needed only for a progress bar: ask only when one can show.
            let total = if bytes > 0 {
                bytes
            } else if std::io::stderr().is_terminal() {
                let flags = crate::protocol::storage::file_info_flags::NO_CRC32;
                client
                    .query_file_info(&id, flags)
                    .await
                    .map(|i| (i.file_size as u64).saturating_sub(offset))
                    .unwrap_or(0)
            } else {
                0
            };
            let fid = FileId::parse(&id)?;
            let t = client.tracker.query_fetch(&fid).await?;
            let addr = crate::config::join_host_port(&t.ip, t.port as u16);
            let tmp = PathBuf::from(format!("{local}.fdfs-part"));
            let f = tokio::fs::File::create(&tmp).await.map_err(ClientError::Local)?;
            let mut dst = Progress::new(f, total);
            let r =
                client.storage.download_into(&addr, &fid.group, &fid.remote.to_string(), offset, bytes, &mut dst).await;
            match r {
                Ok(_) => {
                    tokio::io::AsyncWriteExt::flush(&mut dst).await.map_err(ClientError::Local)?;
                    tokio::fs::rename(&tmp, &local).await.map_err(ClientError::Local)
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    Err(e)
                }
            }
        }
        .await;
        Ok(match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("download file", &e),
        })
    })
}

pub fn delete_file(args: &[String]) -> Result<ExitCode> {
    if args.len() < 2 {
        bail!("Usage: fdfs_delete_file <config_file> <file_id>");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    runtime()?.block_on(async move {
        Ok(match client.delete(&id).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("delete file", &e),
        })
    })
}

/// Normal files are described from their name alone; appender and slave files are asked of
/// the storage, as the original does. Options as C 6.16's: `-n` the storage does not compute
/// the CRC32 of appender and slave files, `-s` it logs nothing when the file does not exist.
pub fn file_info(args: &[String]) -> Result<ExitCode> {
    use crate::protocol::storage::file_info_flags;
    let usage = "Usage: fdfs_file_info [options] <config_file> <file_id>\n  options: \n    -s: keep silence, when this file not exist, do not log error on storage server\n    -n: do NOT calculate CRC32 for appender file or slave file\n";
    let mut flags = 0u8;
    let mut args_left = Vec::new();
    for a in args {
        match a.strip_prefix('-').filter(|o| !o.is_empty()) {
            Some(opts) => {
                for o in opts.chars() {
                    flags |= match o {
                        'n' => file_info_flags::NO_CRC32,
                        's' => file_info_flags::SILENT,
                        _ => bail!(usage),
                    };
                }
            }
            None => args_left.push(a.clone()),
        }
    }
    if args_left.len() < 2 {
        bail!(usage);
    }
    let args = args_left;
    let (config, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    if let Err(e) = FileId::parse(&id) {
        eprintln!("query file info fail, error no: 22, error info: {e}");
        return Ok(ExitCode::from(22));
    }
    let d = match runtime()?.block_on(describe(&client, &id, flags, storage_ids(&config).as_ref())) {
        Ok(d) => d,
        Err(e) => return Ok(fail("query file info", &e)),
    };
    crate::outln!("GET FROM SERVER: {}\n", d.from_server);
    crate::outln!("file type: {}", d.kind);
    crate::outln!("source storage id: {}", d.server_id);
    crate::outln!("source ip address: {}", d.source_ip);
    crate::outln!("file create timestamp: {}", datetime(d.timestamp));
    crate::outln!("file size: {}", d.size);
    crate::outln!("file crc32: {} (0x{:08x})\n", d.crc32, d.crc32);
    Ok(ExitCode::SUCCESS)
}

/// The client's storage ID table, as C's client loads it: with `use_storage_id = true`, from
/// `storage_ids_filename`. A table that does not load is said on stderr (the tools log only
/// errors) and left out: the source of a name with a storage ID is then asked of the storage.
pub fn storage_ids(config: &crate::config::ClientConfig) -> Option<crate::config::StorageIds> {
    if !config.use_storage_id {
        return None;
    }
    match crate::config::StorageIds::load(&config.storage_ids_filename) {
        Ok(ids) => Some(ids),
        Err(e) => {
            eprintln!("use_storage_id = true, but {e}");
            None
        }
    }
}

/// What C's `fdfs_get_file_info` tells of a file: normal files from their name alone, appender
/// and slave files asked of a storage that has them (102, 22). A trunk name whose size field
/// is a link slot's text length (44 or 60: a filename) may be a de-duplicated file's link: it
/// is asked of the storage too, and its answer taken when the size differs (the original's
/// size and CRC32, where C shows the link text's length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub from_server: bool,
    pub kind: &'static str,
    pub server_id: u32,
    pub source_ip: String,
    pub timestamp: i64,
    pub size: u64,
    pub crc32: u32,
}

pub async fn describe(
    client: &crate::client::Client,
    id: &str,
    flags: u8,
    ids: Option<&crate::config::StorageIds>,
) -> Result<Described, ClientError> {
    let remote = FileId::parse(id)?.remote;
    let info = remote.info();
    // A storage ID in the name: its address from the client's table; without one C asks the
    // storage, whose answer names the source.
    let (server_id, mut source_ip) = match info.source {
        Source::Ip(ip) => (0, ip.to_string()),
        Source::ServerId(n) => {
            (n, ids.and_then(|t| t.by_id(n)).and_then(|e| e.hosts.first().cloned()).unwrap_or_default())
        }
    };
    let mut from_server = info.file_type != FileType::Normal || source_ip.is_empty();
    let (mut size, mut timestamp, mut crc32) = if from_server {
        let r = client.query_file_info(id, flags).await?;
        if source_ip.is_empty() {
            source_ip = r.source_ip.clone();
        }
        (r.file_size as u64, r.create_timestamp, r.crc32_u32())
    } else {
        (info.size.unwrap_or(0), info.create_timestamp as i64, info.crc32)
    };
    let link_text_len = [crate::file_id::NORMAL_FILENAME_LEN as u64, crate::file_id::TRUNK_FILENAME_LEN as u64];
    if !from_server && crate::trunk::is_trunk_name(&remote) && link_text_len.contains(&size) {
        match client.query_file_info(id, flags).await {
            Ok(r) if r.file_size as u64 != size => {
                (from_server, size, timestamp, crc32) = (true, r.file_size as u64, r.create_timestamp, r.crc32_u32());
            }
            _ => {}
        }
    }
    let kind = match info.file_type {
        FileType::Normal => "normal",
        FileType::Appender => "appender",
        FileType::Slave => "slave",
    };
    Ok(Described { from_server, kind, server_id, source_ip, timestamp, size, crc32 })
}

pub fn append_file(args: &[String]) -> Result<ExitCode> {
    if args.len() < 3 {
        bail!("Usage: fdfs_append_file <config_file> <appender_file_id> <local_filename>");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let (id, path) = (args[1].clone(), PathBuf::from(&args[2]));
    runtime()?.block_on(async move {
        let (mut src, len) = open_to_send(&path).await?;
        Ok(match client.append(&id, Content::Reader(&mut src, len)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("append file", &e),
        })
    })
}

pub fn regenerate_filename(args: &[String]) -> Result<ExitCode> {
    if args.len() < 2 {
        bail!("Usage: fdfs_regenerate_filename <config_file> <appender_file_id>");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    runtime()?.block_on(async move {
        Ok(match client.regenerate_appender_filename(&id).await {
            Ok(new) => {
                crate::outln!("{new}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("regenerate file", &e),
        })
    })
}

/// Ours (C has these only inside `fdfs_test`): `fdfs_upload_slave <config_file>
/// <master_file_id> <prefix_name> <local_filename> [file_ext]` prints the slave's file ID.
pub fn upload_slave(args: &[String]) -> Result<ExitCode> {
    if args.len() < 4 {
        bail!("Usage: fdfs_upload_slave <config_file> <master_file_id> <prefix_name> <local_filename> [file_ext]");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let (master, prefix, path) = (args[1].clone(), args[2].clone(), PathBuf::from(&args[3]));
    let ext = args.get(4).cloned().unwrap_or_else(|| file_ext(&path));
    runtime()?.block_on(async move {
        let (mut src, len) = open_to_send(&path).await?;
        Ok(match client.upload_slave(&master, &prefix, &ext, Content::Reader(&mut src, len)).await {
            Ok(id) => {
                crate::outln!("{id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("upload slave file", &e),
        })
    })
}

/// Ours: `fdfs_get_metadata <config_file> <file_id>` prints `name=value` lines, sorted by name.
pub fn get_metadata(args: &[String]) -> Result<ExitCode> {
    if args.len() < 2 {
        bail!("Usage: fdfs_get_metadata <config_file> <file_id>");
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    runtime()?.block_on(async move {
        Ok(match client.get_metadata(&id).await {
            Ok(meta) => {
                for (k, v) in meta {
                    crate::outln!("{}={}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail("get metadata", &e),
        })
    })
}

/// Ours: `fdfs_set_metadata <config_file> <file_id> <O|M> <name=value> ...` (O overwrites, M
/// merges, as the protocol's flag).
pub fn set_metadata(args: &[String]) -> Result<ExitCode> {
    use crate::protocol::storage::MetaOp;
    let usage = "Usage: fdfs_set_metadata <config_file> <file_id> <O|M> <name=value> ...";
    if args.len() < 3 {
        bail!(usage);
    }
    let op = match args[2].as_str() {
        "O" | "o" => MetaOp::Overwrite,
        "M" | "m" => MetaOp::Merge,
        _ => bail!(usage),
    };
    let mut meta = Vec::new();
    for kv in &args[3..] {
        let Some((k, v)) = kv.split_once('=') else { bail!("{usage}\n(not name=value: {kv})") };
        meta.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    let (_, client) = load_client(Path::new(&args[0]), None)?;
    let id = args[1].clone();
    runtime()?.block_on(async move {
        Ok(match client.set_metadata(&id, &meta, op).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("set metadata", &e),
        })
    })
}

pub fn crc32(args: &[String]) -> Result<ExitCode> {
    let Some(path) = args.first() else { bail!("Usage: fdfs_crc32 <file_name>") };
    let mut f = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("open file {path} fail: {e}"))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    // As C's fdfs_crc32: lowercase hex, no padding.
    crate::outln!("{:x}", h.finalize());
    Ok(ExitCode::SUCCESS)
}

/// Prints what a cluster-stat answer shows (nothing for an empty list, as C), or the failure.
fn stat_output<T>(r: crate::client::ClientResult<T>, what: &str, show: impl FnOnce(T) -> String) -> ExitCode {
    match r {
        Ok(v) => {
            crate::out!("{}", show(v));
            ExitCode::SUCCESS
        }
        Err(e) => fail(what, &e),
    }
}

/// The 6.16 stat tools' options: `-h` prints the usage (status 0), a wrong option getopt's
/// message and the usage (status 1), as C; `options` is the tool's option lines.
fn stat_args(args: &[String], allowed: &str, options: &str) -> Result<Option<super::cluster_stat::StatArgs>> {
    let argv0 = std::env::args().next().unwrap_or_default();
    let usage = format!(
        "Usage: {argv0} [-c config_filename={}]\n{options}\nFor example:\n\t{argv0} -A\n\t{argv0} -N\n",
        super::cluster_stat::DEFAULT_CLIENT_CONF
    );
    if args.iter().any(|a| a == "-h") {
        eprintln!("{usage}");
        return Ok(None);
    }
    match super::cluster_stat::parse_stat_args(args, allowed) {
        Ok(a) => Ok(Some(a)),
        Err(e) => bail!("{argv0}: {e}\n{usage}"),
    }
}

/// `fdfs_tracker_stat [-c config] [-A|-N] [-L|-F] [-d]` (6.16): the trackers as the leader
/// sees them.
pub fn tracker_stat(args: &[String]) -> Result<ExitCode> {
    use crate::protocol::tracker::{stat_filter::*, TrackerClusterStatReq};
    let usage = "\t[-A] list ACTIVE trackers\n\t[-N] list None ACTIVE trackers\n\t[-L] list leader tracker\n\t[-F] list follower trackers\n\t[-d] show detail / more info\n";
    let Some(a) = stat_args(args, "ANLFd", usage)? else { return Ok(ExitCode::SUCCESS) };
    let mut req = TrackerClusterStatReq::default();
    for f in &a.flags {
        match f {
            'A' | 'N' => (req.filter_by, req.is_active) = (req.filter_by | TRACKER_IS_ACTIVE, (*f == 'A') as u8),
            'L' | 'F' => (req.filter_by, req.is_leader) = (req.filter_by | TRACKER_IS_LEADER, (*f == 'L') as u8),
            _ => {}
        }
    }
    let (_, client) = load_client(Path::new(&a.config), None)?;
    let r = runtime()?.block_on(client.tracker.tracker_cluster_stat(&req));
    Ok(stat_output(r, "list trackers", |s| super::cluster_stat::trackers(&s.trackers, a.flags.contains(&'d'))))
}

/// `fdfs_storage_stat [-c config] [-A|-N] [-T|-t] [-d]` (6.16): every storage of the cluster.
pub fn storage_stat(args: &[String]) -> Result<ExitCode> {
    use crate::protocol::tracker::{stat_filter::*, StorageClusterStatReq};
    let usage = "\t[-A] list ACTIVE storages\n\t[-N] list None ACTIVE storages\n\t[-d] show detail / more info\n\nWhen use_trunk_file is true, including options:\n\t[-T] list trunk servers / storages\n\t[-t] list None trunk servers / storages\n";
    let Some(a) = stat_args(args, "ANTtd", usage)? else { return Ok(ExitCode::SUCCESS) };
    let mut req = StorageClusterStatReq::default();
    for f in &a.flags {
        match f {
            'A' | 'N' => {
                req.filter_by |= STORAGE_STATUS;
                req.status = crate::protocol::status::ACTIVE;
                req.op_type = if *f == 'A' { b'=' } else { b'!' };
            }
            'T' | 't' => {
                (req.filter_by, req.is_trunk_server) = (req.filter_by | STORAGE_IS_TRUNK_SERVER, (*f == 'T') as u8)
            }
            _ => {}
        }
    }
    let (_, client) = load_client(Path::new(&a.config), None)?;
    let r = runtime()?.block_on(client.tracker.storage_cluster_stat(&req));
    Ok(stat_output(r, "list storages", |s| {
        super::cluster_stat::storages(&s.storages, s.use_storage_id, s.use_trunk_file, a.flags.contains(&'d'))
    }))
}

/// `fdfs_volumn_stat [-c config] [-A|-N] [-D|-d] [-T|-t]` (6.16): every group's space.
pub fn volumn_stat(args: &[String]) -> Result<ExitCode> {
    use crate::protocol::tracker::{stat_filter::*, VolumeStatReq};
    let usage = "\t[-A] list space available groups / volumns\n\t[-N | -F] list None space available groups / volumns\n\t[-D] list disk space available groups / volumns\n\t[-d] list None disk space available groups / volumns\n\nWhen use_trunk_file is true, including options:\n\t[-T] list trunk space available groups / volumns\n\t[-t] list None trunk space available groups / volumns\n\nNote: space available when disk space available or trunk space available\n";
    let Some(a) = stat_args(args, "ANFDdTt", usage)? else { return Ok(ExitCode::SUCCESS) };
    let mut req = VolumeStatReq::default();
    for f in &a.flags {
        match f {
            'A' | 'N' | 'F' => {
                (req.filter_by, req.space_available) = (req.filter_by | VOLUME_SPACE_AVAILABLE, (*f == 'A') as u8)
            }
            'D' | 'd' => {
                (req.filter_by, req.disk_available) = (req.filter_by | VOLUME_DISK_AVAILABLE, (*f == 'D') as u8)
            }
            'T' | 't' => {
                (req.filter_by, req.trunk_available) = (req.filter_by | VOLUME_TRUNK_AVAILABLE, (*f == 'T') as u8)
            }
            _ => {}
        }
    }
    let (_, client) = load_client(Path::new(&a.config), None)?;
    let r = runtime()?.block_on(client.tracker.volume_stat(&req));
    Ok(stat_output(r, "list volumns", |v| super::cluster_stat::volumes(&v)))
}
