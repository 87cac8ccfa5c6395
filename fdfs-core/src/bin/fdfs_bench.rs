//! `fdfs_bench`: a load generator for any FastDFS cluster (ours or the C one).
//!
//! ```text
//! fdfs_bench --tracker 127.0.0.1:22122 --op upload --size 4096 --count 5000 --concurrency 16
//! fdfs_bench --conf /etc/fdfs/client.conf --op mixed --size 1MiB --json out.json
//! ```
//! Prints files/s, MB/s, p50/p99/max latency and errors; `--json` also writes them as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_core::config::{ClientConfig, ServerAddr};
use fdfs_core::protocol::storage::{FileIdResp, StreamedHead, UploadHead};
use fdfs_core::protocol::tracker::StoreTarget;
use fdfs_core::protocol::{Command, Header, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Upload,
    Download,
    Delete,
    Mixed,
    /// Upload to `--source`, time until `--replica` serves the file.
    Lag,
    /// No network, no protocol: write files into `--dir` as a storage writes them (temp file,
    /// write, rename into one of 256 directories), synced per `--sync`. The physical limit the
    /// upload figures are compared with.
    RawWrite,
    /// Serve, at `--listen`, the floor any tracker and storage pair sits on: a blocking server,
    /// a thread per connection, that answers a query for a storage with its own address and an
    /// upload by writing the file as a storage must (temp file, write, rename into one of 256
    /// directories under `--dir`, a binlog line), nothing synced, no checks; a download by
    /// opening, measuring and reading the file and answering in one write. Runs until killed.
    /// A load run against it measures what this machine's loopback, client and file calls
    /// leave for a real cluster to be faster than another.
    Floor,
}

/// How `--op raw-write` makes its files durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RawSync {
    /// fsync the file, rename, fsync the directory (one file at a time).
    PerFile,
    /// Group commit: writers share sync rounds (the files renamed since the last round and
    /// their directories), each waiting for the round that covers it.
    Batch,
    /// No sync: written and renamed only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientStyle {
    Standard,
    Java,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for FastDFS clusters")]
struct Args {
    /// Tracker address HOST:PORT (instead of --conf).
    #[arg(long)]
    tracker: Option<String>,
    /// client.conf to read tracker_server and timeouts from.
    #[arg(long)]
    conf: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "upload")]
    op: Op,
    /// File size: bytes, or with KiB/MiB/K/M suffix.
    #[arg(long, default_value = "4096")]
    size: String,
    /// Operations to time.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Extension of uploaded files.
    #[arg(long, default_value = "bin")]
    ext: String,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// `lag`: the storage (HOST:PORT) uploads go to.
    #[arg(long)]
    source: Option<String>,
    /// `lag`: the member of the same group polled until it has the file.
    #[arg(long)]
    replica: Option<String>,
    /// `java`: uploads as the Java client sends them (Nagle on, header and body as two writes,
    /// one kept connection to the tracker and one per storage), which exposes servers that
    /// delay their ACKs. Only with `--op upload`.
    #[arg(long, value_enum, default_value = "standard")]
    client_style: ClientStyle,
    /// `floor`: the address (HOST:PORT) to serve at.
    #[arg(long)]
    listen: Option<String>,
    /// `raw-write`, `floor`: the directory to write into (in a new subdirectory, removed at the end
    /// unless `--keep`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// `raw-write`: how files are made durable.
    #[arg(long, value_enum, default_value = "batch")]
    sync: RawSync,
    /// `raw-write`: copies written of each file (2: what a group of two storages writes for
    /// one upload), each in its own directory tree; files/s counts files, not copies.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Keep the files this run wrote (by default they are deleted when it ends). Mass deletes
    /// slow ext4's inode allocation for the next half minute or so (it avoids reusing recently
    /// freed inodes), so runs that are compared keep their files.
    #[arg(long)]
    keep: bool,
    /// `upload`: the share of uploads (percent) whose content was uploaded before; the others
    /// are made unique (their first 8 bytes are the upload's number). 100: every upload sends
    /// the same bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    repeated: u8,
}

fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("mib").or_else(|| t.strip_suffix('m')) {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("kib").or_else(|| t.strip_suffix('k')) {
        (n, 1 << 10)
    } else {
        (t.as_str(), 1)
    };
    Ok(num.trim().parse::<usize>()? * mult)
}

#[derive(Debug, Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    ids: Vec<String>,
    first_error: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let size = parse_size(&args.size)?;
    if args.op == Op::Floor {
        let (Some(listen), Some(dir)) = (&args.listen, &args.dir) else { bail!("--op floor needs --listen and --dir") };
        return floor::serve(listen, dir);
    }
    if args.op == Op::RawWrite {
        let Some(dir) = &args.dir else { bail!("--op raw-write needs --dir") };
        let (latencies, elapsed) =
            raw::run(dir, size, args.count, args.concurrency.max(1), args.sync, args.copies.max(1), args.keep)?;
        let mut all = Outcome { latencies, ..Default::default() };
        return report(&args, size, &mut all, elapsed);
    }
    let config = match (&args.tracker, &args.conf) {
        (Some(t), _) => {
            let Some(addr) = ServerAddr::parse(t) else { bail!("bad --tracker {t}") };
            ClientConfig::for_tracker(addr)
        }
        (None, Some(c)) => ClientConfig::load(c)?,
        (None, None) => bail!("give --tracker HOST:PORT or --conf client.conf"),
    };
    // No more workers than cores: more only take turns on them, woken and put to sleep (the
    // load generator's CPU is shared with the servers it measures).
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.concurrency.clamp(1, cores.min(8)))
        .enable_all()
        .build()?;
    rt.block_on(run(args, config, size))
}

async fn run(args: Args, config: ClientConfig, size: usize) -> Result<()> {
    let payload: Arc<Vec<u8>> = Arc::new((0..size).map(|_| fastrand::u8(..)).collect());
    let config = Arc::new(config);
    // Files to read or delete are uploaded first, untimed.
    let seed = match args.op {
        Op::Download | Op::Mixed => {
            upload_many(&config, &payload, args.count.clamp(1, 200), args.concurrency, &args.ext).await?
        }
        Op::Delete => upload_many(&config, &payload, args.count, args.concurrency, &args.ext).await?,
        Op::Upload | Op::Lag | Op::RawWrite | Op::Floor => Vec::new(),
    };
    let seed = Arc::new(seed);
    let lag_pair = match (args.op, &args.source, &args.replica) {
        (Op::Lag, Some(s), Some(r)) => Some(Arc::new((s.clone(), r.clone()))),
        (Op::Lag, _, _) => bail!("--op lag needs --source and --replica"),
        _ => None,
    };
    if args.client_style == ClientStyle::Java && args.op != Op::Upload {
        bail!("--client-style java goes with --op upload");
    }
    let start = Instant::now();
    let load = Arc::new(Load {
        config: config.clone(),
        payload,
        seed: seed.clone(),
        ext: args.ext.clone(),
        op: args.op,
        count: args.count,
        concurrency: args.concurrency.max(1),
        lag_pair,
        style: args.client_style,
        repeated: usize::from(args.repeated),
    });
    let tasks: Vec<_> = (0..load.concurrency).map(|w| tokio::spawn(worker(load.clone(), w))).collect();
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await?;
        all.latencies.extend(o.latencies);
        all.errors += o.errors;
        all.ids.extend(o.ids);
        if all.first_error.is_none() {
            all.first_error = o.first_error;
        }
    }
    report(&args, size, &mut all, start.elapsed().as_secs_f64())?;
    if !args.keep {
        let mut ids = all.ids;
        if args.op != Op::Delete {
            ids.extend(seed.iter().cloned());
        }
        let client = Client::new(&config);
        for id in ids {
            let _ = client.delete(&id).await;
        }
    }
    if all.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// What every worker of a run shares.
struct Load {
    config: Arc<ClientConfig>,
    payload: Arc<Vec<u8>>,
    /// Files uploaded before the timed run, to read or delete.
    seed: Arc<Vec<String>>,
    ext: String,
    op: Op,
    count: usize,
    concurrency: usize,
    lag_pair: Option<Arc<(String, String)>>,
    style: ClientStyle,
    /// Percent of uploads that repeat one content.
    repeated: usize,
}

/// Worker `w` of a run: operations `w`, `w + concurrency`, ... below `count`.
async fn worker(load: Arc<Load>, w: usize) -> Outcome {
    let client = Client::new(&load.config);
    let mut java = JavaStyle::new(&load.config);
    let mut out = Outcome::default();
    let (payload, seed, ext, repeated) = (&load.payload, &load.seed, &load.ext, load.repeated);
    let mut i = w;
    while i < load.count {
        let t = Instant::now();
        let r: Result<Option<String>, String> = match load.op {
            Op::Upload if load.style == ClientStyle::Java => java.upload(payload, ext).await.map(Some),
            // Unique ones spread evenly: upload i is unique when the count of unique uploads so
            // far, (i + 1) * unique% / 100, steps up at i.
            Op::Upload if (i + 1) * (100 - repeated) / 100 > i * (100 - repeated) / 100 && payload.len() >= 8 => {
                let mut unique = payload.to_vec();
                unique[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                upload_one(&client, &unique, ext).await.map(Some)
            }
            Op::Upload => upload_one(&client, payload, ext).await.map(Some),
            Op::Download => download_one(&client, &seed[i % seed.len()], payload.len()).await.map(|_| None),
            Op::Delete => client.delete(&seed[i]).await.map(|_| None).map_err(|e| e.to_string()),
            Op::Mixed if i.is_multiple_of(2) => upload_one(&client, payload, ext).await.map(Some),
            Op::Mixed => download_one(&client, &seed[i % seed.len()], payload.len()).await.map(|_| None),
            Op::RawWrite | Op::Floor => unreachable!("run by main without the cluster"),
            Op::Lag => {
                let (src, replica) = &**load.lag_pair.as_ref().expect("checked");
                lag_one(&client, src, replica, payload, ext, &mut out.latencies).await.map(Some)
            }
        };
        if load.op != Op::Lag {
            out.latencies.push(t.elapsed());
        }
        match r {
            Ok(Some(id)) => out.ids.push(id),
            Ok(None) => {}
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
        i += load.concurrency;
    }
    out
}

/// Prints (and with `--json` writes) the figures of a run that took `elapsed` seconds.
fn report(args: &Args, size: usize, all: &mut Outcome, elapsed: f64) -> Result<()> {
    all.latencies.sort();
    let pct = |p: f64| {
        let n = all.latencies.len();
        if n == 0 {
            return 0.0;
        }
        all.latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1000.0
    };
    let ok = args.count - all.errors;
    let files_per_s = ok as f64 / elapsed;
    let mb_per_s = files_per_s * size as f64 / (1 << 20) as f64;
    let op = format!("{:?}", args.op).to_lowercase();
    println!("op={op} size={size} count={} concurrency={} errors={}", args.count, args.concurrency, all.errors);
    println!(
        "files/s={files_per_s:.1} MB/s={mb_per_s:.2} p50={:.2}ms p99={:.2}ms max={:.2}ms elapsed={elapsed:.2}s",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    if let Some(e) = &all.first_error {
        eprintln!("first error: {e}");
    }
    if let Some(path) = &args.json {
        let json = format!(
            "{{\"op\":\"{op}\",\"size\":{size},\"count\":{},\"concurrency\":{},\"errors\":{},\"files_per_s\":{files_per_s:.2},\"mb_per_s\":{mb_per_s:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"elapsed_s\":{elapsed:.3}}}\n",
            args.count, args.concurrency, all.errors, pct(0.5), pct(0.99), pct(1.0)
        );
        std::fs::write(path, json)?;
    }
    Ok(())
}

/// Uploads to `src`, then polls `replica` (QUERY_FILE_INFO) until it has the file; records the
/// time from the upload's answer to the first successful poll.
async fn lag_one(
    client: &Client,
    src: &str,
    replica: &str,
    payload: &[u8],
    ext: &str,
    lags: &mut Vec<Duration>,
) -> Result<String, String> {
    let r = client
        .storage
        .upload(src, UploadKind::Normal, -1, ext, Content::Bytes(payload))
        .await
        .map_err(|e| e.to_string())?;
    let acked = Instant::now();
    loop {
        if client.storage.file_info(replica, &r.group, &r.filename, 1).await.is_ok() {
            lags.push(acked.elapsed());
            return Ok(r.file_id());
        }
        if acked.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} not on {replica} after 30 s", r.file_id()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn upload_one(client: &Client, payload: &[u8], ext: &str) -> Result<String, String> {
    client.upload(UploadKind::Normal, None, ext, Content::Bytes(payload)).await.map_err(|e| e.to_string())
}

async fn download_one(client: &Client, id: &str, size: usize) -> Result<(), String> {
    let data = client.download(id, 0, 0).await.map_err(|e| e.to_string())?;
    if data.len() != size {
        return Err(format!("{id}: got {} bytes, want {size}", data.len()));
    }
    Ok(())
}

async fn upload_many(
    config: &Arc<ClientConfig>,
    payload: &Arc<Vec<u8>>,
    n: usize,
    conc: usize,
    ext: &str,
) -> Result<Vec<String>> {
    let mut tasks = Vec::new();
    for w in 0..conc.max(1) {
        let (config, payload, ext) = (config.clone(), payload.clone(), ext.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = Client::new(&config);
            let mut ids = Vec::new();
            let mut i = w;
            while i < n {
                ids.push(upload_one(&client, &payload, &ext).await);
                i += conc.max(1);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        for r in t.await? {
            match r {
                Ok(id) => ids.push(id),
                Err(e) => bail!("seeding uploads: {e}"),
            }
        }
    }
    Ok(ids)
}

/// Uploads the way `fastdfs-client-java` sends them: no TCP_NODELAY, the header and the body of a
/// request as separate writes, connections kept between requests, one per server (its connection
/// pool, on by default since 1.29, keys them by address: a group's members named in turn are
/// each connected to once).
struct JavaStyle {
    tracker: String,
    to_tracker: Option<TcpStream>,
    to_storages: std::collections::HashMap<String, TcpStream>,
}

impl JavaStyle {
    fn new(config: &ClientConfig) -> Self {
        let tracker = config.tracker_servers.first().map(ServerAddr::primary).unwrap_or_default();
        JavaStyle { tracker, to_tracker: None, to_storages: Default::default() }
    }

    async fn upload(&mut self, payload: &[u8], ext: &str) -> Result<String, String> {
        let r = self.try_upload(payload, ext).await.map_err(|e| e.to_string());
        if r.is_err() {
            // A failed request leaves the connections in an unknown state.
            self.to_tracker = None;
            self.to_storages.clear();
        }
        r
    }

    async fn try_upload(&mut self, payload: &[u8], ext: &str) -> Result<String> {
        if self.to_tracker.is_none() {
            self.to_tracker = Some(TcpStream::connect(&self.tracker).await?);
        }
        let t = self.to_tracker.as_mut().expect("connected");
        let answer = split_write_request(t, Command::QueryStoreWithoutGroupOne, &[]).await?;
        let target = StoreTarget::decode_any(&answer)?;
        let addr = fdfs_core::config::join_host_port(&target.ip, target.port as u16);
        let s = match self.to_storages.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let conn = TcpStream::connect(e.key()).await?;
                e.insert(conn)
            }
        };
        let mut body = UploadHead {
            store_path_index: target.store_path_index as i8,
            file_size: payload.len() as u64,
            ext: ext.to_owned(),
        }
        .encode_head();
        body.extend_from_slice(payload);
        let answer = split_write_request(s, Command::UploadFile, &body).await?;
        Ok(FileIdResp::decode(&answer)?.file_id())
    }
}

async fn split_write_request(sock: &mut TcpStream, cmd: Command, body: &[u8]) -> Result<Vec<u8>> {
    sock.write_all(&Header::request(cmd, body.len()).encode()).await?;
    if !body.is_empty() {
        sock.write_all(body).await?;
    }
    let mut raw = [0u8; HEADER_LEN];
    sock.read_exact(&mut raw).await?;
    let h = Header::decode(&raw, 1 << 20)?;
    let mut answer = vec![0u8; h.pkg_len as usize];
    sock.read_exact(&mut answer).await?;
    if h.status != 0 {
        bail!("{cmd:?} answered status {}", h.status);
    }
    Ok(answer)
}

/// `--op floor`: the least a tracker and a storage must do for an upload or a download, to run
/// loads against.
mod floor {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use anyhow::{Context, Result};
    use fdfs_core::file_id::{self, NameKind, NewName, RemoteFilename, Source};
    use fdfs_core::protocol::storage::{DownloadReq, FileIdResp, StreamedHead, UploadHead};
    use fdfs_core::protocol::tracker::{FetchTarget, StoreTarget};
    use fdfs_core::protocol::{Command, Header, Profile, Status, HEADER_LEN};

    /// The one group the floor serves.
    const GROUP: &str = "group1";

    struct Floor {
        data: PathBuf,
        /// The answer to a query for a storage to upload to: this server (encoded once).
        store_answer: Vec<u8>,
        /// The answer to a query for a storage to read from: this server (encoded once).
        fetch_answer: Vec<u8>,
        /// The source address in the names it gives.
        ip: std::net::Ipv4Addr,
        binlog: Mutex<File>,
        seq: AtomicU64,
    }

    pub fn serve(listen: &str, dir: &Path) -> Result<()> {
        let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let data = dir.join(format!("floor-{}", std::process::id()));
        std::fs::create_dir_all(data.join("tmp"))?;
        for d in 0..256 {
            std::fs::create_dir_all(data.join(format!("{d:02X}")))?;
        }
        let binlog = File::options().create(true).append(true).open(data.join("binlog"))?;
        let std::net::IpAddr::V4(ip) = addr.ip() else { anyhow::bail!("--listen takes an IPv4 address") };
        let (group, port) = (GROUP.to_owned(), addr.port().into());
        let store = StoreTarget { group: group.clone(), ip: ip.to_string(), port, store_path_index: 0 };
        let fetch = FetchTarget { group, ip: ip.to_string(), port };
        let floor = Arc::new(Floor {
            data,
            store_answer: store.encode(Profile::CLASSIC).to_vec(),
            fetch_answer: fetch.encode(Profile::CLASSIC).to_vec(),
            ip,
            binlog: Mutex::new(binlog),
            seq: AtomicU64::new(0),
        });
        for conn in listener.incoming() {
            let (conn, floor) = (conn?, floor.clone());
            std::thread::spawn(move || {
                let _ = floor.connection(conn);
            });
        }
        Ok(())
    }

    impl Floor {
        fn connection(&self, mut conn: TcpStream) -> Result<()> {
            conn.set_nodelay(true)?;
            let mut body = Vec::new();
            loop {
                let mut raw = [0u8; HEADER_LEN];
                conn.read_exact(&mut raw)?;
                let h = Header::decode(&raw, 64 << 20)?;
                body.resize(h.pkg_len as usize, 0);
                // As every FastDFS server: a client that sends a request in two writes (Nagle
                // on) holds the second back until the first is acknowledged.
                let _ = socket2::SockRef::from(&conn).set_tcp_quickack(true);
                conn.read_exact(&mut body)?;
                let (status, answer) = match Command::try_from(h.cmd) {
                    Ok(Command::QueryStoreWithoutGroupOne) => (Status::OK, self.store_answer.clone()),
                    Ok(Command::UploadFile) if body.len() >= UploadHead::FIXED_LEN => (Status::OK, self.upload(&body)?),
                    Ok(Command::QueryFetchOne) => (Status::OK, self.fetch_answer.clone()),
                    Ok(Command::DownloadFile) => {
                        self.download(&mut conn, &body)?;
                        continue;
                    }
                    _ => (Status::EINVAL, Vec::new()),
                };
                let mut out = Header::response(status, answer.len()).encode().to_vec();
                out.extend_from_slice(&answer);
                conn.write_all(&out)?;
            }
        }

        /// `body`: the upload's head and content. The name is a real FastDFS name (the client
        /// parses it), in one of 256 directories, a hundred files in each before the next.
        fn upload(&self, body: &[u8]) -> Result<Vec<u8>> {
            let head = UploadHead::decode_head(&body[..UploadHead::FIXED_LEN], body.len() as u64)?;
            let content = &body[UploadHead::FIXED_LEN..];
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let new = NewName {
                source: Source::Ip(self.ip),
                timestamp: std::time::UNIX_EPOCH.elapsed()?.as_secs() as u32,
                size: content.len() as u64,
                crc32: crc32fast::hash(content),
                kind: NameKind::Normal,
                ext: &head.ext,
                store_path_index: 0,
                high: ((n / 100) % 256) as u8,
                low: 0,
            };
            let name = file_id::generate(&new, &mut fastrand::Rng::new());
            let temp = self.data.join(format!("tmp/{n}.tmp"));
            let mut f = File::create_new(&temp)?;
            f.write_all(content)?;
            std::fs::rename(&temp, self.local(&name))?;
            writeln!(self.binlog.lock().expect("lock"), "{n} C {name}")?;
            Ok(FileIdResp { group: GROUP.into(), filename: name.to_string() }.encode().to_vec())
        }

        fn local(&self, name: &RemoteFilename) -> PathBuf {
            self.data.join(format!("{:02X}", name.high)).join(&name.name)
        }

        /// A whole file (what the bench reads), as a storage must: the name resolved, the file
        /// opened, measured and read, the answer in one write. Nothing is checked or cached.
        fn download(&self, conn: &mut TcpStream, body: &[u8]) -> Result<()> {
            let req = DownloadReq::decode(body)?;
            let name = RemoteFilename::parse(&req.filename, Some(1)).ok().filter(|_| req.offset == 0 && req.bytes == 0);
            let Some(mut f) = name.and_then(|n| File::open(self.local(&n)).ok()) else {
                conn.write_all(&Header::response(Status::ENOENT, 0).encode())?;
                return Ok(());
            };
            let len = f.metadata()?.len() as usize;
            let mut out = Header::response(Status::OK, len).encode().to_vec();
            out.resize(HEADER_LEN + len, 0);
            f.read_exact(&mut out[HEADER_LEN..])?;
            conn.write_all(&out)?;
            Ok(())
        }
    }
}

/// `--op raw-write`: the disk's limit for a storage's write pattern, measured in-process.
mod raw {
    use std::fs::File;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use fdfs_core::durable::RoundSync;

    use super::RawSync;

    /// Group commit as a storage's writer does it: a file is durable once a sync round that
    /// started after its rename has finished; a round syncs every file renamed since the last
    /// one and each of their directories once, as the writer's rounds do ([`RoundSync`]).
    struct Rounds {
        state: Mutex<RoundState>,
        done: Condvar,
        sync: RoundSync,
    }

    #[derive(Default)]
    struct RoundState {
        renamed: u64,
        synced: u64,
        running: bool,
        waiting: Vec<(File, PathBuf)>,
    }

    impl Rounds {
        fn wait_durable(&self, files: Vec<(File, PathBuf)>) -> Result<()> {
            let mut s = self.state.lock().expect("lock");
            s.renamed += 1;
            s.waiting.extend(files);
            let mine = s.renamed;
            loop {
                if s.synced >= mine {
                    return Ok(());
                }
                if s.running {
                    s = self.done.wait(s).expect("lock");
                    continue;
                }
                s.running = true;
                let target = s.renamed;
                let batch = std::mem::take(&mut s.waiting);
                drop(s);
                let dirs: std::collections::BTreeSet<PathBuf> = batch.iter().map(|(_, d)| d.clone()).collect();
                let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
                let files: Vec<File> = batch.into_iter().map(|(f, _)| f).collect();
                self.sync.sync(&files, &dirs)?;
                s = self.state.lock().expect("lock");
                s.synced = target;
                s.running = false;
                self.done.notify_all();
            }
        }
    }

    pub fn run(
        dir: &Path,
        size: usize,
        count: usize,
        threads: usize,
        sync: RawSync,
        copies: usize,
        keep: bool,
    ) -> Result<(Vec<Duration>, f64)> {
        let data = dir.join(format!("raw-bench-{}-{}", std::process::id(), fastrand::u32(..)));
        let tmp = data.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for copy in 0..copies {
            for d in 0..256 {
                std::fs::create_dir_all(data.join(format!("{copy}/{d:02X}")))?;
            }
        }
        let payload: Vec<u8> = (0..size).map(|_| fastrand::u8(..)).collect();
        let rounds = Rounds { state: Mutex::default(), done: Condvar::new(), sync: RoundSync::new(&[&data]) };
        let latencies = Mutex::new(Vec::with_capacity(count));
        let start = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (data, tmp, payload, rounds, latencies) = (&data, &tmp, &payload, &rounds, &latencies);
                    scope.spawn(move || -> Result<()> {
                        let mut mine = Vec::new();
                        for i in (t..count).step_by(threads) {
                            let start = Instant::now();
                            let mut written = Vec::with_capacity(copies);
                            for copy in 0..copies {
                                let temp = tmp.join(format!("{copy}-{t}-{i}.tmp"));
                                let mut f = File::create_new(&temp)?;
                                f.write_all(payload)?;
                                let dest_dir = data.join(format!("{copy}/{:02X}", (i / 100) % 256));
                                let dest = dest_dir.join(format!("{t}-{i}.bin"));
                                if sync == RawSync::PerFile {
                                    f.sync_all()?;
                                }
                                std::fs::rename(&temp, &dest)?;
                                if sync == RawSync::PerFile {
                                    File::open(&dest_dir)?.sync_all()?;
                                }
                                written.push((f, dest_dir));
                            }
                            if sync == RawSync::Batch {
                                rounds.wait_durable(written)?;
                            }
                            mine.push(start.elapsed());
                        }
                        latencies.lock().expect("lock").extend(mine);
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??;
            }
            Ok(())
        })?;
        let elapsed = start.elapsed().as_secs_f64();
        if !keep {
            std::fs::remove_dir_all(&data)?;
        }
        Ok((latencies.into_inner().expect("lock"), elapsed))
    }
}
