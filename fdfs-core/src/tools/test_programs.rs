//! C's client test programs, the ones the FastDFS tutorial runs first: `fdfs_test` and
//! `fdfs_test1` (upload a master with metadata and a slave, download, getmeta, setmeta,
//! delete, query_servers; `1` names files by file ID) and `fdfs_appender_test` /
//! `fdfs_appender_test1` (upload an appender file, truncate, append, modify). Same arguments,
//! requests and stdout as C 6.16.1's (their `printf` lines, failures included); one difference,
//! as in every tool here: the exit code is the failed operation's errno, where C returns the
//! status of its closing ACTIVE_TEST and so exits 0 after a failed download or delete.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::commands::{describe, failure, open_local, Described, Progress};
use super::{datetime, load_client, runtime};
use crate::client::{file_ext, Client, ClientError, Content, UploadKind};
use crate::config::ClientConfig;
use crate::file_id::FileId;
use crate::protocol::storage::{FileIdResp, MetaOp};
use crate::protocol::Command;

/// The metadata C's test programs attach to every upload.
const META: [(&str, &str); 4] = [("ext_name", "jpg"), ("width", "160"), ("height", "80"), ("file_size", "115120")];

/// `fdfs_test` names files by group and remote filename, `fdfs_test1` by file ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    Group,
    FileId,
}

/// How C's program reads the local file: the wire is the same, the printed labels differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UploadType {
    File,
    Buff,
    Callback,
}

impl UploadType {
    fn parse(arg: Option<&String>) -> Self {
        match arg.map(String::as_str) {
            Some("BUFF") => Self::Buff,
            Some("CALLBACK") => Self::Callback,
            _ => Self::File,
        }
    }

    /// `storage_<what>_by_filename`, `..._by_filebuff` or `..._by_callback`.
    fn label(self, what: &str) -> String {
        let how = match self {
            Self::File => "filename",
            Self::Buff => "filebuff",
            Self::Callback => "callback",
        };
        format!("storage_{what}_by_{how}")
    }
}

fn banner() {
    crate::outln!(
        "This is FastDFS client test program v6.16.1\n\nCopyright (C) 2008, Happy Fish / YuQing\n\n\
         FastDFS may be copied only under the terms of the GNU General\n\
         Public License V3, which may be found in the FastDFS source kit.\n\
         Please visit the FastDFS Home Page http://www.fastken.com/ \nfor more detail.\n"
    );
}

/// The settings line C's `fdfs_client_init` logs at the programs' DEBUG level (on stderr).
fn log_settings(c: &ClientConfig) {
    eprintln!(
        "[{}] DEBUG - base_path={}, connect_timeout={}, network_timeout={}, tracker_server_count={}, \
         anti_steal_token={}, anti_steal_secret_key length={}, use_connection_pool={}, \
         g_connection_pool_max_idle_time={}s, use_storage_id={}, storage server id count: 0\n",
        crate::logging::local_datetime(),
        c.base_path.display(),
        c.connect_timeout.as_secs(),
        c.network_timeout.as_secs(),
        c.tracker_servers.len(),
        u8::from(c.anti_steal_check_token),
        c.anti_steal_secret_key.len(),
        u8::from(c.use_connection_pool),
        c.connection_pool_max_idle_time.as_secs(),
        u8::from(c.use_storage_id),
    );
}

/// C's failure line, on stdout as the test programs print it.
fn failed(what: &str, e: &ClientError) -> ExitCode {
    let (line, code) = failure(what, e);
    crate::outln!("{line}");
    code
}

/// `http://HOST[:PORT]/FILE_ID` (the port part only when it is not 80), as C builds it.
fn url(host: &str, port: u16, file_id: &str) -> String {
    match port {
        80 => format!("http://{host}/{file_id}"),
        p => format!("http://{host}:{p}/{file_id}"),
    }
}

fn print_described(d: &Described, crc: bool) {
    crate::outln!("source ip address: {}", d.source_ip);
    crate::outln!("file timestamp={}", datetime(d.timestamp));
    crate::outln!("file size={}", d.size);
    if crc {
        crate::outln!("file crc32={}", d.crc32);
    }
}

/// The local file, streamed from disk as C sends it.
async fn local(path: &str) -> Result<(Progress<tokio::fs::File>, u64), ClientError> {
    open_local(Path::new(path)).await.map_err(ClientError::Local)
}

/// Uploads `path` to `storage` and gives it C's metadata, as `storage_upload_by_filename`
/// with a meta list does (11 or 23, then 13).
async fn upload_with_meta(
    client: &Client,
    storage: &str,
    kind: UploadKind,
    store_path_index: u8,
    path: &str,
) -> Result<FileIdResp, ClientError> {
    let (mut src, len) = local(path).await?;
    let ext = file_ext(Path::new(path));
    let r = client.storage.upload(storage, kind, store_path_index as i8, &ext, Content::Reader(&mut src, len)).await?;
    client.storage.set_metadata(storage, &r.group, &r.filename, &meta(), MetaOp::Overwrite).await?;
    Ok(r)
}

fn meta() -> Vec<(Vec<u8>, Vec<u8>)> {
    META.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn tracker_host(c: &ClientConfig) -> String {
    c.tracker_servers.first().and_then(|t| t.hosts.first().cloned()).unwrap_or_default()
}

pub fn fdfs_test(args: &[String]) -> Result<ExitCode> {
    test_program(args, Naming::Group, "fdfs_test")
}

pub fn fdfs_test1(args: &[String]) -> Result<ExitCode> {
    test_program(args, Naming::FileId, "fdfs_test1")
}

fn test_program(args: &[String], naming: Naming, prog: &str) -> Result<ExitCode> {
    banner();
    if args.len() < 2 {
        crate::outln!(
            "Usage: {prog} <config_file> <operation>\n\toperation: upload, download, getmeta, setmeta, delete and query_servers"
        );
        return Ok(ExitCode::from(1));
    }
    let (config, client) = load_client(Path::new(&args[0]), None)?;
    log_settings(&config);
    let op = args[1].as_str();
    runtime()?.block_on(async {
        match op {
            "upload" => upload(&client, &config, args, naming, prog).await,
            "download" | "getmeta" | "setmeta" | "query_servers" | "delete" => {
                file_operation(&client, args, naming, prog).await
            }
            _ => {
                crate::outln!("invalid operation: {op}");
                Ok(ExitCode::from(22))
            }
        }
    })
}

/// Both connections were used: C ends with an ACTIVE_TEST to each.
async fn active_tests(client: &Client, storage: &str) {
    let tracker = client.tracker.trackers().first().map(ToString::to_string).unwrap_or_default();
    if let Err(e) = client.tracker.call(Command::ActiveTest, &[]).await {
        crate::outln!("active_test to tracker server {tracker} fail, errno: {}", e.status().0);
    }
    if let Err(e) = client.storage.active_test(storage).await {
        crate::outln!("active_test to storage server {storage} fail, errno: {}", e.status().0);
    }
}

/// Every writable storage, as C's programs print them before an upload (106, or 107 for
/// group1 in the file-ID program).
async fn print_store_list(client: &Client, naming: Naming) {
    let (all, heading) = match naming {
        Naming::Group => (client.tracker.query_store_all(None).await, "without_group"),
        Naming::FileId => (client.tracker.query_store_all(Some("group1")).await, "with_group"),
    };
    if let Ok(all) = all {
        crate::outln!("tracker_query_storage_store_list_{heading}: ");
        for (i, s) in all.servers.iter().enumerate() {
            crate::outln!("\tserver {}. group_name={}, ip_addr={}, port={}", i + 1, all.group, s.ip, s.port);
        }
        crate::outln!("");
    }
}

impl UploadType {
    /// The prefix of the slave file C's programs upload after the master.
    fn slave_prefix(self, naming: Naming) -> &'static str {
        match (self, naming) {
            (UploadType::File, _) => "_big",
            (UploadType::Buff, _) => "1024x1024",
            (UploadType::Callback, Naming::Group) => "-small",
            (UploadType::Callback, Naming::FileId) => "_small",
        }
    }
}

async fn upload(
    client: &Client,
    config: &ClientConfig,
    args: &[String],
    naming: Naming,
    prog: &str,
) -> Result<ExitCode> {
    let Some(local) = args.get(2) else {
        crate::outln!("Usage: {prog} <config_file> upload <local_filename> [FILE | BUFF | CALLBACK] ");
        return Ok(ExitCode::from(22));
    };
    let kind = UploadType::parse(args.get(3));
    let ids = super::commands::storage_ids(config);
    print_store_list(client, naming).await;
    let target = match client.tracker.query_store(None).await {
        Ok(t) => t,
        Err(e) => return Ok(failed("tracker_query_storage fail", &e)),
    };
    crate::outln!("group_name={}, ip_addr={}, port={}", target.group, target.ip, target.port);
    let storage = crate::config::join_host_port(&target.ip, target.port as u16);
    let ext = file_ext(Path::new(local));
    let upload_label = kind.label("upload");
    if naming == Naming::FileId {
        crate::outln!("{upload_label}");
    }
    let master = upload_with_meta(client, &storage, UploadKind::Normal, target.store_path_index, local).await;
    if naming == Naming::Group {
        crate::outln!("{upload_label}");
    }
    let master = match master {
        Ok(m) => m,
        Err(e) => return Ok(failed("upload file fail", &e)),
    };
    let port = config.http_tracker_server_port;
    let master_id = master.file_id();
    if naming == Naming::Group {
        crate::outln!("group_name={}, remote_filename={}", master.group, master.filename);
    }
    if let Ok(d) = describe(client, &master_id, 0, ids.as_ref()).await {
        print_described(&d, true);
    }
    crate::outln!("example file url: {}", url(&target.ip, port, &master_id));

    let prefix = kind.slave_prefix(naming);
    let slave_label = kind.label("upload_slave");
    if naming == Naming::FileId {
        crate::outln!("{slave_label}");
    }
    let slave = upload_slave_with_meta(client, &storage, &master_id, (prefix, &ext), local).await;
    if naming == Naming::Group {
        crate::outln!("{slave_label}");
    }
    let slave_id = match slave {
        Ok(s) => s,
        Err(e) => return Ok(failed("upload slave file fail", &e)),
    };
    if naming == Naming::Group {
        let remote = slave_id.split_once('/').map_or(slave_id.as_str(), |(_, r)| r);
        crate::outln!("group_name={}, remote_filename={remote}", master.group);
    }
    if let Ok(d) = describe(client, &slave_id, 0, ids.as_ref()).await {
        print_described(&d, true);
    }
    crate::outln!("example file url: {}", url(&target.ip, port, &slave_id));
    let expected = crate::file_id::slave_filename(&master_id, prefix, &ext).unwrap_or_default();
    if expected != slave_id {
        match naming {
            Naming::Group => crate::outln!("slave_filename={expected}\nremote_filename={slave_id}\nnot equal!"),
            Naming::FileId => crate::outln!("slave_file_id={expected}\nfile_id={slave_id}\nnot equal!"),
        }
    }
    active_tests(client, &storage).await;
    Ok(ExitCode::SUCCESS)
}

/// A slave of `master_id` from the local file, and the sample metadata set on it.
async fn upload_slave_with_meta(
    client: &Client,
    storage: &str,
    master_id: &str,
    (prefix, ext): (&str, &str),
    local: &str,
) -> Result<String, ClientError> {
    let (mut src, len) = self::local(local).await?;
    let id = client.upload_slave(master_id, prefix, ext, Content::Reader(&mut src, len)).await?;
    let fid = FileId::parse(&id)?;
    client.storage.set_metadata(storage, &fid.group, &fid.remote.to_string(), &meta(), MetaOp::Overwrite).await?;
    Ok(id)
}

/// `query_servers`: every storage that has the file (`failing` names the call that failed).
async fn query_servers(client: &Client, fid: &FileId, failing: String) -> ExitCode {
    match client.tracker.query_fetch_all(fid).await {
        Ok(list) => {
            crate::outln!("server list ({}):", list.servers.len());
            for s in &list.servers {
                crate::outln!("\t{}:{}", s.ip, s.port);
            }
            crate::outln!("");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&failing, &e),
    }
}

/// download, getmeta, setmeta, delete and query_servers of one file.
async fn file_operation(client: &Client, args: &[String], naming: Naming, prog: &str) -> Result<ExitCode> {
    let op = args[1].as_str();
    let (file_id, rest) = match naming {
        Naming::Group if args.len() >= 4 => (format!("{}/{}", args[2], args[3]), &args[4..]),
        Naming::FileId if args.len() >= 3 => (args[2].clone(), &args[3..]),
        Naming::Group => {
            crate::outln!("Usage: {prog} <config_file> {op} <group_name> <remote_filename>");
            return Ok(ExitCode::from(22));
        }
        Naming::FileId => {
            crate::outln!("Usage: {prog} <config_file> {op} <file_id>");
            return Ok(ExitCode::from(22));
        }
    };
    let named = |naming: Naming| match naming {
        Naming::Group => {
            let (g, r) = file_id.split_once('/').unwrap_or((&file_id, ""));
            format!("group_name={g}, filename={r}")
        }
        Naming::FileId => format!("file_id={file_id}"),
    };
    let fid = match FileId::parse(&file_id) {
        Ok(f) => f,
        Err(e) => return Ok(failed(&format!("tracker_query_storage_fetch fail, {}", named(naming)), &e.into())),
    };
    if op == "query_servers" {
        let what = match naming {
            Naming::Group => "tracker_query_storage_list",
            Naming::FileId => "tracker_query_storage_list1",
        };
        return Ok(query_servers(client, &fid, format!("{what} fail, {}", named(naming))).await);
    }
    // fdfs_test asks where to change a file (103) for setmeta and delete; fdfs_test1 asks
    // where to read it (102) for everything.
    let changes = naming == Naming::Group && matches!(op, "setmeta" | "delete");
    let target = if changes { client.tracker.query_update(&fid).await } else { client.tracker.query_fetch(&fid).await };
    let target = match target {
        Ok(t) => t,
        Err(e) => return Ok(failed(&format!("tracker_query_storage_fetch fail, {}", named(naming)), &e)),
    };
    crate::outln!("storage={}:{}", target.ip, target.port);
    let storage = crate::config::join_host_port(&target.ip, target.port as u16);
    let result = match op {
        "download" => download(client, &storage, &fid, rest).await,
        "getmeta" => getmeta(client, &storage, &fid).await,
        "setmeta" => match setmeta(client, &file_id, rest) {
            Some(done) => done.await,
            None => {
                let what = match naming {
                    Naming::Group => "<group_name> <remote_filename>",
                    Naming::FileId => "<file_id>",
                };
                crate::outln!(
                    "Usage: {prog} <config_file> {op} {what} <op_flag> <metadata_list>\n\
                     \top_flag: O for overwrite, M for merge\n\tmetadata_list: name1=value1,name2=value2,..."
                );
                return Ok(ExitCode::from(22));
            }
        },
        _ => match client.delete(&file_id).await {
            Ok(()) => {
                crate::outln!("delete file success");
                Ok(())
            }
            Err(e) => Err(failed("delete file fail", &e)),
        },
    };
    active_tests(client, &storage).await;
    Ok(result.err().unwrap_or(ExitCode::SUCCESS))
}

/// `download`: the file streamed into `rest[0]` (or its name's last part), never whole in memory.
async fn download(client: &Client, storage: &str, fid: &FileId, rest: &[String]) -> Result<(), ExitCode> {
    let (group, remote) = (fid.group.as_str(), fid.remote.to_string());
    let local = rest.first().cloned().unwrap_or_else(|| remote.rsplit('/').next().unwrap_or("").to_owned());
    let r = async {
        let mut out = tokio::fs::File::create(&local).await.map_err(ClientError::Local)?;
        let n = client.storage.download_into(storage, group, &remote, 0, 0, &mut out).await;
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(ClientError::Local)?;
        if n.is_err() {
            let _ = std::fs::remove_file(&local);
        }
        n
    }
    .await;
    match r {
        Ok(n) => {
            crate::outln!("download file success, file size={n}, file save to {local}");
            Ok(())
        }
        Err(e) => Err(failed("download file fail", &e)),
    }
}

/// `getmeta`: every name=value of the file.
async fn getmeta(client: &Client, storage: &str, fid: &FileId) -> Result<(), ExitCode> {
    match client.storage.get_metadata(storage, &fid.group, &fid.remote.to_string()).await {
        Ok(list) => {
            crate::outln!("get meta data success, meta count={}", list.len());
            for (k, v) in list {
                crate::outln!("{}={}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            }
            Ok(())
        }
        Err(e) => Err(failed("getmeta fail", &e)),
    }
}

/// `setmeta <op_flag> <metadata_list>`; `None` when the two arguments are missing.
fn setmeta<'a>(
    client: &'a Client,
    file_id: &'a str,
    rest: &[String],
) -> Option<impl std::future::Future<Output = Result<(), ExitCode>> + 'a> {
    let (flag, list) = (rest.first()?, rest.get(1)?);
    let op_flag = if flag.starts_with('M') { MetaOp::Merge } else { MetaOp::Overwrite };
    let meta: Vec<(Vec<u8>, Vec<u8>)> = list
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.as_bytes().to_vec(), v.as_bytes().to_vec())
        })
        .collect();
    Some(async move {
        match client.set_metadata(file_id, &meta, op_flag).await {
            Ok(()) => {
                crate::outln!("set meta data success");
                Ok(())
            }
            Err(e) => Err(failed("setmeta fail", &e)),
        }
    })
}

pub fn appender_test(args: &[String]) -> Result<ExitCode> {
    appender_program(args, Naming::Group, "fdfs_appender_test")
}

pub fn appender_test1(args: &[String]) -> Result<ExitCode> {
    appender_program(args, Naming::FileId, "fdfs_appender_test1")
}

/// Upload an appender file (with C's metadata), truncate it (to half its size; to 0 in the
/// file-ID program), append the file, then modify at the end with it again, describing the
/// file after each step.
fn appender_program(args: &[String], naming: Naming, prog: &str) -> Result<ExitCode> {
    banner();
    if args.len() < 2 {
        crate::outln!("Usage: {prog} <config_file> <local_filename> [FILE | BUFF | CALLBACK]");
        return Ok(ExitCode::from(1));
    }
    let (config, client) = load_client(Path::new(&args[0]), None)?;
    log_settings(&config);
    let ids = super::commands::storage_ids(&config);
    let local = args[1].clone();
    let kind = UploadType::parse(args.get(2));
    // The file-ID program labels some steps with a `1`, as C prints them.
    let one = |label: String, always: bool| match naming {
        Naming::FileId if always || kind != UploadType::File => format!("{label}1"),
        _ => label,
    };
    runtime()?.block_on(async {
        let target = match client.tracker.query_store(None).await {
            Ok(t) => t,
            Err(e) => return Ok(failed("tracker_query_storage fail", &e)),
        };
        crate::outln!("group_name={}, ip_addr={}, port={}", target.group, target.ip, target.port);
        let storage = crate::config::join_host_port(&target.ip, target.port as u16);
        let size = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
        let uploaded = upload_with_meta(&client, &storage, UploadKind::Appender, target.store_path_index, &local).await;
        crate::outln!("{}", one(kind.label("upload_appender"), true));
        let appender = match uploaded {
            Ok(r) => r,
            Err(e) => return Ok(failed("upload file fail", &e)),
        };
        let id = appender.file_id();
        let file_url = url(&tracker_host(&config), config.http_tracker_server_port, &id);
        match naming {
            Naming::Group => crate::outln!("group_name={}, remote_filename={}", appender.group, appender.filename),
            // C's spelling.
            Naming::FileId => crate::outln!("fild_id={id}"),
        }
        let show = |d: Result<Described, ClientError>, crc: bool, expect: u64| {
            if let Ok(d) = d {
                print_described(&d, crc);
                if crc {
                    crate::outln!("file url: {file_url}");
                }
                if d.size != expect {
                    eprint!("file size: {} != {expect}!!!", d.size);
                }
            }
        };
        show(describe(&client, &id, 0, ids.as_ref()).await, true, size);
        let truncated = if naming == Naming::Group { size / 2 } else { 0 };
        if let Err(e) = client.storage.truncate(&storage, &appender.filename, truncated).await {
            return Ok(failed("truncate file fail", &e));
        }
        show(describe(&client, &id, 0, ids.as_ref()).await, true, truncated);
        let appended = async {
            let (mut src, len) = self::local(&local).await?;
            client.storage.append(&storage, &appender.filename, Content::Reader(&mut src, len)).await
        }
        .await;
        crate::outln!("{}", one(kind.label("append"), false));
        if let Err(e) = appended {
            return Ok(failed("append file fail", &e));
        }
        crate::outln!("append file successfully.");
        show(describe(&client, &id, 0, ids.as_ref()).await, false, truncated + size);
        let modified = async {
            let (mut src, len) = self::local(&local).await?;
            client.storage.modify(&storage, &appender.filename, truncated + size, Content::Reader(&mut src, len)).await
        }
        .await;
        crate::outln!("{}", one(kind.label("modify"), false));
        if let Err(e) = modified {
            return Ok(failed("modify file fail", &e));
        }
        crate::outln!("modify file successfully.");
        show(describe(&client, &id, 0, ids.as_ref()).await, false, truncated + 2 * size);
        Ok(ExitCode::SUCCESS)
    })
}
