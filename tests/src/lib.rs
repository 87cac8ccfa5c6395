//! Harness for end-to-end tests with real processes: each daemon runs from the workspace's
//! built binaries in its own temp dir with a generated config, on an ephemeral loopback port;
//! it is stopped with SIGTERM when dropped, and its logs are printed if the test failed.

pub mod capture;
pub mod fixture;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where the workspace's binaries are: `FDFS_BIN_DIR`, else the target dir of this test.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("FDFS_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run `cargo build --workspace` (or set FDFS_BIN_DIR)", path.display());
    path
}

/// The `shared/` folder beside the checkout.
/// The recorded test data in the repository (`tests/data/`): golden captures of real FastDFS
/// 6.16.1 traffic and storage trees written by the C daemons, copied from `shared/`.
pub fn test_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// `shared/` beside the checkout (`FDFS_SHARED_DIR` overrides): what is not test data, the C
/// FastDFS binaries (`reference/`) and the third-party clients' drivers (`interop/`). Tests that
/// need it skip, with a message, where it is absent.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("FDFS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base_path: PathBuf,
    pub conf: PathBuf,
    stderr_log: PathBuf,
}

impl Daemon {
    /// Starts `program conf foreground` and waits for its "listening on ADDR" line.
    pub fn start(program: &str, conf: &Path, base_path: &Path) -> Self {
        Self::start_with(Command::new(bin(program)), program, conf, base_path)
    }

    /// As [`Self::start`], inside network namespace `ns` (`ip netns exec` execs the program,
    /// so the child is the daemon itself).
    pub fn start_in_netns(ns: &str, program: &str, conf: &Path, base_path: &Path) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin(program));
        Self::start_with(cmd, program, conf, base_path)
    }

    fn start_with(mut cmd: Command, program: &str, conf: &Path, base_path: &Path) -> Self {
        let stderr_log = base_path.join(format!("{program}.stderr"));
        let err = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut child = cmd
            .arg(conf)
            .arg("foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut d = Daemon {
            name: program.to_owned(),
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            base_path: base_path.to_owned(),
            conf: conf.to_owned(),
            stderr_log,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => d.addr = addr.parse().expect("bound address"),
            Err(_) => {
                d.print_logs();
                panic!("{program} did not report its address within 20 s");
            }
        }
        d
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the process ever had, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid().expect("running"))).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in /proc status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends SIGTERM without waiting (to watch what a stopping daemon does).
    pub fn signal_term(&self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
    }

    /// SIGTERM and wait (SIGKILL after 30 s, and the test fails: a daemon must stop cleanly).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            assert!(terminate(child, Duration::from_secs(30)), "{} did not stop on SIGTERM within 30 s", self.name);
        }
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn print_logs(&self) {
        eprintln!("----- {} stderr ({}) -----", self.name, self.stderr_log.display());
        eprintln!("{}", std::fs::read_to_string(&self.stderr_log).unwrap_or_default());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10));
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL. True when it stopped by itself.
fn terminate(mut child: Child, grace: Duration) -> bool {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// `defaults` overridden by the `key = value` lines of `extra` (a config key read once must
/// appear once).
pub fn merge_conf(defaults: &[(&str, String)], extra: &str) -> String {
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_owned();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let mut text: String = defaults
        .iter()
        .filter(|(k, _)| !overridden.iter().any(|o| o == k))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    text.push_str(extra);
    text.push('\n');
    text
}

/// Writes a tracker.conf into `dir` (port 0 unless `extra` sets one) and returns its path.
pub fn write_tracker_conf(dir: &Path, extra: &str) -> PathBuf {
    let base = dir.join("tracker");
    std::fs::create_dir_all(&base).unwrap();
    let conf = dir.join("tracker.conf");
    let defaults = [
        ("bind_addr", "127.0.0.1".to_owned()),
        ("port", "0".to_owned()),
        ("base_path", base.display().to_string()),
        ("log_level", "debug".to_owned()),
        ("reserved_storage_space", "1MB".to_owned()),
        ("network_timeout", "30".to_owned()),
    ];
    std::fs::write(&conf, merge_conf(&defaults, extra)).unwrap();
    conf
}

/// A tracker in its own temp dir.
#[derive(Debug)]
pub struct TrackerProc {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
}

impl TrackerProc {
    pub fn start(extra_conf: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("fdfs-tracker-").tempdir().unwrap();
        let conf = write_tracker_conf(dir.path(), extra_conf);
        let daemon = Daemon::start("fdfs_trackerd", &conf, &dir.path().join("tracker"));
        Self { daemon, dir }
    }

    /// Restarts on the same port and data.
    pub fn restart(&mut self) {
        let port = self.daemon.addr.port();
        self.daemon.stop();
        let conf =
            std::fs::read_to_string(&self.daemon.conf).unwrap().replace("port = 0\n", &format!("port = {port}\n"));
        std::fs::write(&self.daemon.conf, conf).unwrap();
        self.daemon = Daemon::start("fdfs_trackerd", &self.daemon.conf.clone(), &self.daemon.base_path.clone());
    }

    pub fn addr(&self) -> String {
        self.daemon.addr.to_string()
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A storage in its own temp dir, reporting to `tracker`, listening on `ip`.
#[derive(Debug)]
pub struct StorageProc {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
    pub ip: String,
    /// How the tracker names it: its storage ID, or its address.
    pub id: String,
    pub group: String,
}

impl StorageProc {
    /// Starts and waits until the tracker lists it ACTIVE.
    pub async fn start(tracker: &str, ip: &str, extra_conf: &str) -> Self {
        Self::start_as(tracker, ip, ip, extra_conf).await
    }

    /// As [`Self::start`], for a storage the tracker knows by the storage ID `id`.
    pub async fn start_as(tracker: &str, ip: &str, id: &str, extra_conf: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("fdfs-storage-").tempdir().unwrap();
        let base = dir.path().join("storage");
        std::fs::create_dir_all(&base).unwrap();
        let conf = dir.path().join("storage.conf");
        let defaults = [
            ("group_name", "group1".to_owned()),
            ("bind_addr", ip.to_owned()),
            ("port", "0".to_owned()),
            ("base_path", base.display().to_string()),
            ("store_path0", base.display().to_string()),
            ("subdir_count_per_path", "4".to_owned()),
            ("tracker_server", tracker.to_owned()),
            ("heart_beat_interval", "1".to_owned()),
            ("stat_report_interval", "1".to_owned()),
            ("network_timeout", "20".to_owned()),
            ("log_level", "debug".to_owned()),
        ];
        std::fs::write(&conf, merge_conf(&defaults, extra_conf)).unwrap();
        let daemon = Daemon::start("fdfs_storaged", &conf, &base);
        let group = extra_conf
            .lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == "group_name").map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_else(|| "group1".to_owned());
        let s = Self { daemon, dir, ip: ip.to_owned(), id: id.to_owned(), group };
        s.wait_active(tracker).await;
        s
    }

    pub fn addr(&self) -> String {
        self.daemon.addr.to_string()
    }

    pub fn base(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub async fn wait_active(&self, tracker: &str) {
        let c = client_for(tracker);
        let id = self.id.clone();
        eventually(Duration::from_secs(20), "storage ACTIVE at the tracker", || {
            let (c, id, group) = (&c, id.clone(), self.group.clone());
            async move {
                let list = c.tracker.list_storages(&group, Some(&id)).await.ok()?;
                (list.first()?.status == fdfs_core::tracker::status::ACTIVE).then_some(())
            }
        })
        .await;
    }

    /// Restarts on the same port, data and config; waits for ACTIVE.
    pub async fn restart(&mut self, tracker: &str, crash: bool) {
        self.restart_after(tracker, crash, |_| {}).await;
    }

    /// As [`Self::restart`], running `while_down` (given this storage) between stop and start:
    /// to change its config or damage its files.
    pub async fn restart_after(&mut self, tracker: &str, crash: bool, while_down: impl FnOnce(&StorageProc)) {
        let port = self.daemon.addr.port();
        if crash {
            self.daemon.kill9();
        } else {
            self.daemon.stop();
        }
        while_down(self);
        let conf =
            std::fs::read_to_string(&self.daemon.conf).unwrap().replace("port = 0\n", &format!("port = {port}\n"));
        std::fs::write(&self.daemon.conf, conf).unwrap();
        self.daemon = Daemon::start("fdfs_storaged", &self.daemon.conf.clone(), &self.base());
        self.wait_active(tracker).await;
    }
}

pub fn client_for(tracker: &str) -> fdfs_core::client::Client {
    let addr = fdfs_core::config::ServerAddr::parse(tracker).expect("tracker address");
    fdfs_core::client::Client::new(&fdfs_core::config::ClientConfig::for_tracker(addr))
}

/// A tracker and `ips.len()` storages of group1, plus a client.conf for the tools.
#[derive(Debug)]
pub struct Cluster {
    pub tracker: TrackerProc,
    pub storages: Vec<StorageProc>,
    pub client_conf: PathBuf,
}

impl Cluster {
    pub async fn start(tracker_conf: &str, ips: &[&str], storage_conf: &str) -> Self {
        let tracker = TrackerProc::start(tracker_conf);
        // Members of a group share one port (FastDFS refuses a member on another port).
        let port = common_free_port(ips);
        let conf = format!("port = {port}\n{storage_conf}");
        let mut storages = Vec::new();
        for ip in ips {
            storages.push(StorageProc::start(&tracker.addr(), ip, &conf).await);
        }
        let client_conf = tracker.dir.path().join("client.conf");
        std::fs::write(
            &client_conf,
            format!("tracker_server = {}\nbase_path = /tmp\nnetwork_timeout = 60\n", tracker.addr()),
        )
        .unwrap();
        Self { tracker, storages, client_conf }
    }

    pub fn client(&self) -> fdfs_core::client::Client {
        client_for(&self.tracker.addr())
    }

    /// Runs a tool with the cluster's client.conf first; returns (exit code, stdout, stderr).
    pub fn tool(&self, name: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin(name)).arg(&self.client_conf).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The nginx binary built by nginx-sys (`FDFS_NGINX_BIN` overrides) and our module next to the
/// test binaries (`FDFS_NGX_MODULE` overrides).
pub fn nginx_paths() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir").to_owned();
    let module =
        std::env::var_os("FDFS_NGX_MODULE").map(PathBuf::from).unwrap_or_else(|| profile_dir.join("libngx_fastdfs.so"));
    let nginx = std::env::var_os("FDFS_NGINX_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(profile_dir.join("build"))
            .expect("build dir")
            .flatten()
            .map(|e| e.path().join("out/objs/nginx"))
            .filter(|p| p.exists())
            .map(|p| (p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
            .collect();
        found.sort();
        found.pop().expect("no nginx built: cargo build -p ngx-fastdfs").1
    });
    assert!(module.exists(), "{} missing: cargo build -p ngx-fastdfs", module.display());
    (nginx, module)
}

/// nginx with our module, in its own prefix directory.
#[derive(Debug)]
pub struct NginxProc {
    pub prefix: tempfile::TempDir,
    nginx: PathBuf,
    pub addr: String,
}

impl NginxProc {
    /// nginx with the module serving group1's files from store path `store` (URLs with the
    /// group name), on a free port of `ip`.
    pub fn serving_store(ip: &str, store: &Path) -> Self {
        let port = common_free_port(&[ip]);
        Self::start(
            ip,
            port,
            &format!("group_name=group1\nurl_have_group_name=true\nstore_path0={}\n", store.display()),
            "",
        )
    }

    /// `mod_conf` is the content of mod_fastdfs.conf; the server listens on `ip:port`.
    pub fn start(ip: &str, port: u16, mod_conf: &str, extra_http: &str) -> Self {
        Self::start_with(ip, port, mod_conf, extra_http, "")
    }

    /// As [`Self::start`], with `extra_server` inside the server block (more locations).
    pub fn start_with(ip: &str, port: u16, mod_conf: &str, extra_http: &str, extra_server: &str) -> Self {
        let (nginx, module) = nginx_paths();
        let prefix = tempfile::Builder::new().prefix("fdfs-nginx-").tempdir().unwrap();
        let p = prefix.path();
        std::fs::create_dir_all(p.join("conf")).unwrap();
        std::fs::create_dir_all(p.join("logs")).unwrap();
        std::fs::write(p.join("conf/mod_fastdfs.conf"), mod_conf).unwrap();
        // Workers started by root would run as nobody, who cannot read the tests' 0700 dirs.
        let user = if nix::unistd::Uid::effective().is_root() { "user root;" } else { "" };
        let conf = format!(
            "load_module {module};\n{user}\nworker_processes 1;\nerror_log logs/error.log info;\npid logs/nginx.pid;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  types {{ image/jpeg jpg; text/plain txt; application/octet-stream bin; }}\n  default_type application/octet-stream;\n\
               access_log off;\n  sendfile on;\n  fastdfs_config {mc};\n{extra_http}\n\
               server {{\n    listen {ip}:{port};\n\
                 location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ {{ ngx_fastdfs_module; }}\n\
                 location @fastdfs_proxy {{ proxy_pass $fastdfs_proxy_url; }}\n\
                 location /static/ {{ root {root}; }}\n{extra_server}\n  }}\n}}\n",
            module = module.display(),
            mc = p.join("conf/mod_fastdfs.conf").display(),
            root = p.display(),
        );
        std::fs::write(p.join("conf/nginx.conf"), conf).unwrap();
        let out = Command::new(&nginx).arg("-p").arg(p).arg("-c").arg("conf/nginx.conf").output().unwrap();
        assert!(
            out.status.success(),
            "nginx did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(p.join("logs/error.log")).unwrap_or_default()
        );
        Self { prefix, nginx, addr: format!("{ip}:{port}") }
    }

    /// The worker's PID (to prove a worker survived).
    pub fn worker_pids(&self) -> Vec<u32> {
        let master: u32 =
            std::fs::read_to_string(self.prefix.path().join("logs/nginx.pid")).unwrap().trim().parse().unwrap();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let ppid: u32 = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if ppid == master {
                pids.push(pid);
            }
        }
        pids.sort();
        pids
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for NginxProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- nginx error.log -----\n{}", self.error_log());
        }
        let _ = Command::new(&self.nginx)
            .arg("-p")
            .arg(self.prefix.path())
            .arg("-c")
            .arg("conf/nginx.conf")
            .arg("-s")
            .arg("stop")
            .output();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); reads to EOF.
pub fn http(addr: &str, method: &str, target: &[u8], headers: &[(&str, &str)]) -> HttpResponse {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes());
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned()))).collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}

pub fn get(addr: &str, path: &str) -> HttpResponse {
    http(addr, "GET", path.as_bytes(), &[])
}

/// A port free on every one of `ips` (nginx fronts of several storages share one port, as the
/// original's proxying to "the port the request came in on" assumes), for a daemon to bind
/// next. Taken below the kernel's ephemeral range: a port `bind(ip, 0)` hands out is one any
/// outgoing connection from `ip` may take a moment later (storages make theirs from their own
/// address, `client_bind`), and a storage started in a test running beside others once found
/// its port taken that way (EADDRINUSE).
pub fn common_free_port(ips: &[&str]) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let ports = 10_000..ephemeral_low.max(20_000);
    for _ in 0..1000 {
        let port = fastrand::u16(ports.clone());
        if ips.iter().all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no common free port");
}

/// A port free on `ip` (see [`common_free_port`]).
pub fn free_port(ip: &str) -> u16 {
    common_free_port(&[ip])
}

/// One request on a fresh connection, as a bare client would send it: returns the answer's
/// status and body. For checking the exact bytes a server answers.
pub fn raw_request(addr: &str, cmd: u8, body: &[u8]) -> (u8, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw_exchange(&mut s, cmd, body)
}

/// The C FastDFS 6.16.1 binaries of `shared/reference/`, unpacked once into the temp dir and
/// reused by later runs; `None`, after a `SKIPPED` line naming `test`, when the archive is
/// absent.
pub fn c_fastdfs_bin(test: &str) -> Option<PathBuf> {
    let tarball = shared_dir().join("reference/c-fastdfs-6.16.1-linux-x86_64.tar.gz");
    if !tarball.exists() {
        eprintln!("SKIPPED {test}: {} is absent", tarball.display());
        return None;
    }
    let cache = std::env::temp_dir().join("fdfs-c-reference-6.16.1");
    if !cache.join("bin/fdfs_storaged").exists() {
        // Unpacked beside it and renamed into place: a run cut short leaves no half tree.
        let staging = tempfile::Builder::new().prefix("fdfs-c-reference-").tempdir().unwrap();
        let st = Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(staging.path()).status().unwrap();
        assert!(st.success(), "unpacking {}", tarball.display());
        // Another test binary may have won the race: its tree is as good.
        let _ = std::fs::rename(staging.path().join("c-fastdfs-6.16.1"), &cache);
    }
    Some(cache.join("bin"))
}

/// A C daemon of the reference tree (it daemonizes itself) in a temp dir of its own, stopped
/// when dropped: `fdfs_storaged` ([`CDaemon::storage`]) or `fdfs_trackerd` ([`CDaemon::tracker`]).
#[derive(Debug)]
pub struct CDaemon {
    bin: PathBuf,
    program: &'static str,
    pub conf: PathBuf,
    pub dir: tempfile::TempDir,
    pub addr: String,
}

impl CDaemon {
    /// A storage of `group` on `ip:port` under `tracker` (not a loopback-127.0.0.1 address: the
    /// C storage refuses that), with `extra` storage.conf lines.
    pub fn storage(bin: &Path, tracker: &str, group: &str, ip: &str, port: u16, extra: &str) -> Self {
        Self::start(bin, "fdfs_storaged", &format!("{ip}:{port}"), extra, |base| {
            vec![
                ("group_name", group.to_owned()),
                ("bind_addr", ip.to_owned()),
                ("port", port.to_string()),
                ("base_path", base.to_owned()),
                ("store_path_count", "1".to_owned()),
                ("store_path0", base.to_owned()),
                ("tracker_server", tracker.to_owned()),
                ("thread_stack_size", "512KB".to_owned()),
                ("subdir_count_per_path", "4".to_owned()),
                ("heart_beat_interval", "1".to_owned()),
                ("stat_report_interval", "1".to_owned()),
                // C replicates from its binlog file, which it flushes this often (60 s otherwise).
                ("sync_binlog_buff_interval", "1".to_owned()),
            ]
        })
    }

    /// A tracker on `ip` (not 127.0.0.1: C storages refuse a loopback tracker there) with
    /// `extra` tracker.conf lines.
    pub fn tracker(bin: &Path, ip: &str, extra: &str) -> Self {
        let port = common_free_port(&[ip]);
        Self::start(bin, "fdfs_trackerd", &format!("{ip}:{port}"), extra, |base| {
            vec![
                ("bind_addr", ip.to_owned()),
                ("port", port.to_string()),
                ("base_path", base.to_owned()),
                ("reserved_storage_space", "1%".to_owned()),
            ]
        })
    }

    /// Writes the config (`defaults` of its base path, then `extra`) and starts `program`.
    fn start(
        bin: &Path,
        program: &'static str,
        addr: &str,
        extra: &str,
        defaults: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    ) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("{program}-c-")).tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        let conf = dir.path().join("daemon.conf");
        std::fs::write(&conf, merge_conf(&defaults(&base.display().to_string()), extra)).unwrap();
        let st = Command::new(bin.join(program)).arg(&conf).arg("start").status().unwrap();
        assert!(st.success(), "the C {program} starts");
        Self { bin: bin.to_owned(), program, conf, dir, addr: addr.to_owned() }
    }
}

impl CDaemon {
    /// Stops the daemon (its files stay).
    pub fn stop(&self) {
        let _ = Command::new(self.bin.join(self.program)).arg(&self.conf).arg("stop").output();
    }

    /// Starts it again on its config and data.
    pub fn start_again(&self) {
        let st = Command::new(self.bin.join(self.program)).arg(&self.conf).arg("start").status().unwrap();
        assert!(st.success(), "the C {} starts again", self.program);
    }
}

impl Drop for CDaemon {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join(self.program)).arg(&self.conf).arg("stop").output();
    }
}

/// A JOIN as a FastDFS 6.08 storage of `group` on `storage_port` sends it (classic layout),
/// naming `trackers`: for tests that play a storage.
pub fn storage_join(group: &str, storage_port: u16, trackers: Vec<String>) -> fdfs_core::protocol::report::JoinReq {
    fdfs_core::protocol::report::JoinReq {
        group: group.into(),
        storage_port: storage_port.into(),
        store_path_count: 1,
        subdir_count_per_path: 256,
        upload_priority: 10,
        join_time: 1_700_000_000,
        up_time: 1_700_000_000,
        version: "6.08".into(),
        init_flag: true,
        current_tracker_ip: "127.0.0.1".into(),
        trackers,
        ..Default::default()
    }
}

/// As [`raw_request`], from the local address `from` (127.0.0.x: another host of the test).
pub fn raw_request_from(from: &str, addr: &str, cmd: u8, body: &[u8]) -> (u8, Vec<u8>) {
    let mut s = connect_from(from, addr);
    raw_exchange(&mut s, cmd, body)
}

/// A connection to `addr` from the local address `from`.
pub fn connect_from(from: &str, addr: &str) -> std::net::TcpStream {
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::new(from.parse().unwrap(), 0).into()).unwrap();
    sock.connect(&target.into()).unwrap();
    let s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One request on an open connection (header and body in one write).
pub fn raw_exchange(s: &mut std::net::TcpStream, cmd: u8, body: &[u8]) -> (u8, Vec<u8>) {
    use std::io::{Read, Write};
    let mut req = fdfs_core::protocol::Header::request(cmd, body.len()).encode().to_vec();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut raw = [0u8; fdfs_core::protocol::HEADER_LEN];
    s.read_exact(&mut raw).unwrap();
    let h = fdfs_core::protocol::Header::decode(&raw, 64 << 20).unwrap();
    let mut answer = vec![0u8; h.pkg_len as usize];
    s.read_exact(&mut answer).unwrap();
    (h.status, answer)
}

/// Headless Chromium (Debian's `chromium`, or `FDFS_CHROMIUM`) with a fresh profile and the
/// flags this machine's closed network needs; `args` are the page and what to do with it.
pub fn chromium(args: &[String]) -> std::process::Output {
    let bin = std::env::var("FDFS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&bin).exists(), "{bin} missing: apt-get install chromium (ci/test.sh does)");
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.path().display()));
    cmd.args(args);
    cmd.output().unwrap()
}
