//! `fdfs_monitor <config_file> [-h <tracker_server>] [list|delete|set_trunk_server <group_name> [storage_id]]`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use fdfs_core::client::TrackerClient;
use fdfs_core::tools::{load_client, monitor, runtime};

fn usage() -> String {
    "Usage: fdfs_monitor <config_file> [-h <tracker_server>] [list|delete|set_trunk_server <group_name> [storage_id]]"
        .into()
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

fn real_main() -> Result<ExitCode> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        bail!(usage());
    }
    let conf = PathBuf::from(args.remove(0));
    let mut tracker = None;
    if args.first().map(String::as_str) == Some("-h") {
        args.remove(0);
        if args.is_empty() {
            bail!(usage());
        }
        tracker = Some(args.remove(0));
    }
    let (config, client) = load_client(&conf, tracker.as_deref())?;
    let op = args.first().cloned().unwrap_or_else(|| "list".into());
    let group = args.get(1).cloned();
    let id = args.get(2).cloned();
    fdfs_core::logging::init_stderr(config.log_level);
    runtime()?.block_on(async move {
        let t = &client.tracker;
        fdfs_core::outln!(
            "server_count={}, server_index=0\n\ntracker server is {}\n",
            t.trackers().len(),
            t.trackers()[0].primary()
        );
        match op.as_str() {
            "list" => list(t, group.as_deref(), id.as_deref()).await,
            "delete" => {
                let (Some(group), Some(id)) = (group, id) else { bail!(usage()) };
                delete(&config, &group, &id).await
            }
            "set_trunk_server" => {
                let Some(group) = group else { bail!(usage()) };
                let id = id.unwrap_or_default();
                match t.set_trunk_server(&group, &id).await {
                    Ok(new) => {
                        fdfs_core::outln!("set trunk server {group}::{id} success, new trunk server: {new}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        let code = e.status().0;
                        fdfs_core::outln!("set trunk server {group}::{id} fail, error no: {code}, error info: {e}");
                        Ok(ExitCode::from(code.max(1)))
                    }
                }
            }
            _ => bail!(usage()),
        }
    })
}

async fn list(t: &TrackerClient, group: Option<&str>, id: Option<&str>) -> Result<ExitCode> {
    let groups = match group {
        Some(g) => vec![t.list_group(g).await?],
        None => t.list_groups().await?,
    };
    fdfs_core::outln!("group count: {}\n", groups.len());
    for (i, g) in groups.iter().enumerate() {
        let storages = t.list_storages(&g.group, id).await?;
        fdfs_core::outln!("{}", monitor::group_report(i + 1, g, &storages));
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes on every tracker, as the original does, after checking none reports it online.
async fn delete(config: &fdfs_core::config::ClientConfig, group: &str, id: &str) -> Result<ExitCode> {
    let mut failed = 0;
    for server in &config.tracker_servers {
        let mut one = config.clone();
        one.tracker_servers = vec![server.clone()];
        let c = fdfs_core::client::Client::new(&one);
        match c.tracker.delete_storage(group, id).await {
            Ok(()) => fdfs_core::outln!("delete storage server {group}::{id} success"),
            Err(e) => {
                failed += 1;
                fdfs_core::outln!(
                    "delete storage server {group}::{id} fail, error no: {}, error info: {e}",
                    e.status().0
                );
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
