//! `fdfs_monitor [<client_cfg_file>] [-h <tracker_server>] [list|delete|set_trunk_server <group_name> [storage_id]]`,
//! with C 6.16.1's forms and output: no argument reads `/etc/fdfs/client.conf`; `-h HOST[:PORT]`
//! or `-hHOST` picks one of the configured trackers (else a random one of several); `delete
//! GROUP` deletes an empty group, `delete GROUP ID` a storage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use fdfs_core::client::TrackerClient;
use fdfs_core::config::ServerAddr;
use fdfs_core::tools::{load_client, monitor, runtime};

use fdfs_core::tools::cluster_stat::DEFAULT_CLIENT_CONF as DEFAULT_CONF;
const DEFAULT_TRACKER_PORT: u16 = 22122;

fn usage(argv0: &str) -> String {
    format!(
        "\nUsage:\n  {argv0} <client_cfg_file> [-h <tracker_server>]\n  \
         [list|delete|set_trunk_server <group_name> [storage_id]]\n\n\
         Note:\n  the tracker server format: host[:port], the tracker default port is {DEFAULT_TRACKER_PORT}\n  \
         {argv0} without parameter equals: {argv0} {DEFAULT_CONF}\n"
    )
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// The command line after the config file: `-h` in either form, then the operation (`list`
/// when there is none) and its arguments.
struct Args {
    tracker: Option<String>,
    op: String,
    rest: Vec<String>,
}

fn parse(mut args: std::collections::VecDeque<String>) -> Option<Args> {
    let mut tracker = None;
    if let Some(h) = args.front().filter(|a| a.starts_with("-h")).cloned() {
        args.pop_front();
        tracker = Some(if h == "-h" { args.pop_front()? } else { h[2..].to_owned() });
    }
    let op = args.pop_front().unwrap_or_else(|| "list".into());
    Some(Args { tracker, op, rest: args.into() })
}

fn real_main() -> Result<ExitCode> {
    let mut argv: std::collections::VecDeque<String> = std::env::args().collect();
    let argv0 = argv.pop_front().unwrap_or_else(|| "fdfs_monitor".into());
    let conf = PathBuf::from(argv.pop_front().unwrap_or_else(|| DEFAULT_CONF.into()));
    let Some(args) = parse(argv) else {
        print!("{}", usage(&argv0));
        return Ok(ExitCode::from(1));
    };
    let (mut config, _) = load_client(&conf, None)?;
    // Which configured tracker to ask: the one `-h` names, or a random one of several (the
    // others stay behind it, for when it does not answer).
    let count = config.tracker_servers.len();
    let index = match &args.tracker {
        Some(t) => {
            let wanted = ServerAddr::parse(t).or_else(|| ServerAddr::parse(&format!("{t}:{DEFAULT_TRACKER_PORT}")));
            let found = wanted.and_then(|w| {
                config
                    .tracker_servers
                    .iter()
                    .position(|s| s.port == w.port && w.hosts.iter().any(|h| s.hosts.contains(h)))
            });
            let Some(i) = found else {
                fdfs_core::outln!("tracker server: {t} not exists!");
                return Ok(ExitCode::from(2));
            };
            config.tracker_servers = vec![config.tracker_servers[i].clone()];
            i
        }
        None => {
            // A client.conf names at least one tracker (it does not load otherwise).
            let i = fastrand::usize(..count);
            config.tracker_servers.rotate_left(i);
            i
        }
    };
    let client = fdfs_core::client::Client::new(&config);
    fdfs_core::logging::init_stderr(config.log_level);
    runtime()?.block_on(async move {
        let t = &client.tracker;
        fdfs_core::outln!("tracker server count={count}, current server index={index}");
        fdfs_core::outln!("\ntracker server is {}\n", t.trackers()[0].primary());
        let group = args.rest.first().cloned();
        let id = args.rest.get(1).cloned();
        match (args.op.as_str(), group) {
            ("list", group) => list(t, group.as_deref(), id.as_deref()).await,
            ("delete", Some(group)) => match id {
                Some(id) => delete_storage(&config, &group, &id).await,
                None => Ok(report(&format!("delete group: {group}"), t.delete_group(&group).await)),
            },
            ("set_trunk_server", Some(group)) => {
                let id = id.unwrap_or_default();
                match t.set_trunk_server(&group, &id).await {
                    Ok(new) => {
                        fdfs_core::outln!("set trunk server {group}::{id} success, new trunk server: {new}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Ok(failed(&format!("set trunk server {group}::{id} fail"), &e)),
                }
            }
            (op, _) => {
                fdfs_core::outln!("Invalid command {op}\n");
                fdfs_core::outln!("{}", usage(&argv0));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `SUBJECT success`, or C's failure line and the errno as the exit status.
fn report(subject: &str, r: fdfs_core::client::ClientResult<()>) -> ExitCode {
    match r {
        Ok(()) => {
            fdfs_core::outln!("{subject} success");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&format!("{subject} fail"), &e),
    }
}

/// Prints C's failure line (on stdout, as `fdfs_monitor` does) and returns the exit status.
fn failed(what: &str, e: &fdfs_core::client::ClientError) -> ExitCode {
    let (line, code) = fdfs_core::tools::commands::failure(what, e);
    fdfs_core::outln!("{line}");
    code
}

/// Every group (`group count`, then `Group N:` above each), or only `group` (one storage of it
/// with `id`, which C 6.16.1 ignores); a group the tracker does not have prints nothing.
async fn list(t: &TrackerClient, group: Option<&str>, id: Option<&str>) -> Result<ExitCode> {
    match group {
        Some(g) => {
            if let Ok(stat) = t.list_group(g).await {
                let storages = t.list_storages(g, id).await?;
                fdfs_core::tools::out(format_args!("{}", monitor::group_report(&stat, &storages)));
            }
        }
        None => {
            let groups = t.list_groups().await?;
            fdfs_core::outln!("group count: {}", groups.len());
            for (i, g) in groups.iter().enumerate() {
                let storages = t.list_storages(&g.group, None).await?;
                fdfs_core::tools::out(format_args!("\nGroup {}:\n{}", i + 1, monitor::group_report(g, &storages)));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes on every tracker, as the original does, after checking none reports it online.
async fn delete_storage(config: &fdfs_core::config::ClientConfig, group: &str, id: &str) -> Result<ExitCode> {
    let mut status = ExitCode::SUCCESS;
    for server in &config.tracker_servers {
        let mut one = config.clone();
        one.tracker_servers = vec![server.clone()];
        let c = fdfs_core::client::Client::new(&one);
        let r = c.tracker.delete_storage(group, id).await;
        let code = report(&format!("delete storage server {group}::{id}"), r);
        if code != ExitCode::SUCCESS {
            status = code;
        }
    }
    Ok(status)
}
