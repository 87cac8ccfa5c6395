//! `fdfs_list_files <client.conf> <group> [filters]`: the live files of a group, one file ID per
//! line (or JSON Lines), as one storage of the group keeps them in its binlog (120 LIST_FILES,
//! fastdfs-rs's own command). With `--delete` each listed file is deleted through the normal
//! delete path (the tracker names the storage, the delete is recorded and replicated).
//!
//! A member lists what it holds: a member still catching up with its group's replication
//! lists fewer files than its source. The tracker is asked for an ACTIVE member unless
//! `--storage` names one.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::client::Client;
use crate::file_id::{FileType, RemoteFilename};
use crate::protocol::listing::{list_flags, ListFilesReq, ListedFile};
use crate::protocol::status;

#[derive(Parser, Debug)]
#[command(
    name = "fdfs_list_files",
    about = "List a group's live files (from a storage's binlog); optionally delete them",
    after_help = "TIME is unix seconds, YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\" (local time)."
)]
struct Args {
    /// client.conf (its tracker_server lines are used)
    config: PathBuf,
    /// The group to list
    group: String,
    /// Ask this storage (HOST:PORT) instead of an ACTIVE member named by the tracker
    #[arg(long)]
    storage: Option<String>,
    /// Files created at or after TIME
    #[arg(long, value_name = "TIME")]
    created_after: Option<String>,
    /// Files created before TIME
    #[arg(long, value_name = "TIME")]
    created_before: Option<String>,
    /// Files created more than DAYS days ago (with --delete: a retention run)
    #[arg(long, value_name = "DAYS")]
    older_than: Option<u64>,
    /// Files created in the last DAYS days
    #[arg(long, value_name = "DAYS")]
    newer_than: Option<u64>,
    /// Remote filenames that start with this (M00/, M00/0A/)
    #[arg(long)]
    prefix: Option<String>,
    /// Files with this extension (jpg; no dot)
    #[arg(long)]
    ext: Option<String>,
    /// Files of at least this many bytes
    #[arg(long, value_name = "BYTES")]
    min_size: Option<u64>,
    /// Files of at most this many bytes
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// JSON Lines: file_id, size, create_time, crc32 (when known), metadata (with --metadata)
    #[arg(long)]
    json: bool,
    /// With --json: each file's metadata
    #[arg(long)]
    metadata: bool,
    /// With --json: the CRC32 of appender and slave files too (the storage reads them whole)
    #[arg(long)]
    crc32: bool,
    /// Delete every listed file (printed as it is deleted)
    #[arg(long)]
    delete: bool,
    /// With --delete: print what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// With --delete: at most this many deletes per second (0: no limit)
    #[arg(long, default_value_t = 0)]
    rate: u32,
}

pub fn main(args: &[String]) -> Result<ExitCode> {
    let args: Args = match super::parse_args("fdfs_list_files", args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let req = request(&args)?;
    let (_, client) = super::load_client(&args.config, None)?;
    super::runtime()?.block_on(run(&client, &args, &req))
}

fn request(a: &Args) -> Result<ListFilesReq> {
    let now = crate::timefmt::now_unix();
    let days_ago = |d: u64| now.saturating_sub(d.saturating_mul(86_400) as i64);
    let mut created_after = a.created_after.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    let mut created_before = a.created_before.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    if let Some(d) = a.older_than {
        created_before = match created_before {
            0 => days_ago(d),
            b => b.min(days_ago(d)),
        };
    }
    if let Some(d) = a.newer_than {
        created_after = created_after.max(days_ago(d));
    }
    if a.dry_run && !a.delete {
        bail!("--dry-run goes with --delete");
    }
    let ext = a.ext.clone().unwrap_or_default();
    let ext = ext.strip_prefix('.').unwrap_or(&ext).to_owned();
    if !crate::protocol::storage::valid_ext(&ext) {
        bail!("--ext {ext:?}: at most 6 letters, digits, '.', '_' or '-'");
    }
    let prefix = a.prefix.clone().unwrap_or_default();
    if prefix.len() > crate::protocol::listing::MAX_PREFIX || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("--prefix {prefix:?}: at most 64 characters of a file name");
    }
    let mut flags = 0;
    if a.metadata {
        flags |= list_flags::METADATA;
    }
    if a.crc32 {
        flags |= list_flags::CRC32;
    }
    Ok(ListFilesReq {
        group: a.group.clone(),
        flags,
        created_after,
        created_before,
        min_size: a.min_size.unwrap_or(0),
        max_size: a.max_size.unwrap_or(0),
        ext,
        prefix,
    })
}

/// Unix seconds, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, local time.
fn parse_time(text: &str) -> Result<i64> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
        .with_context(|| format!("{text:?} is not unix seconds, YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\""))?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .with_context(|| format!("{text:?} does not exist in the local time zone"))
}

async fn run(client: &Client, a: &Args, req: &ListFilesReq) -> Result<ExitCode> {
    let addr = match &a.storage {
        Some(s) => s.clone(),
        None => storage_of(client, &a.group).await?,
    };
    // Deleting while the list streams would keep the listing waiting on the deletes: the
    // IDs go to a file first (memory stays flat), and are deleted from it.
    let mut spool = if a.delete { Some(Spool::create()?) } else { None };
    let mut failed: Option<std::io::Error> = None;
    let listed = client
        .storage
        .list_files(&addr, req, |f| {
            let r = match spool.as_mut() {
                Some(s) => s.push(&a.group, &f),
                None => {
                    print_file(&a.group, &f, a.json, a.crc32, a.metadata);
                    Ok(())
                }
            };
            r.map_err(|e| failed = Some(e)).is_ok()
        })
        .await;
    if let Some(e) = failed {
        return Err(e).context("writing the list");
    }
    let listed = match listed {
        Ok(n) => n,
        Err(e) if e.status() == crate::protocol::Status::EINVAL => {
            eprintln!(
                "list files fail: storage {addr} refused LIST_FILES (a C FastDFS storage does not have it, \
                 or group {} is not its group)",
                a.group
            );
            return Ok(ExitCode::from(22));
        }
        Err(e) => {
            let (line, code) = super::commands::failure("list files fail", &e);
            eprintln!("{line}");
            return Ok(code);
        }
    };
    let Some(spool) = spool else { return Ok(ExitCode::SUCCESS) };
    delete_spooled(client, a, spool, listed).await
}

/// An ACTIVE member of `group`, as the tracker lists them.
async fn storage_of(client: &Client, group: &str) -> Result<String> {
    let members = client.tracker.list_storages(group, None).await.with_context(|| format!("listing group {group}"))?;
    let m = members
        .iter()
        .find(|m| m.status == status::ACTIVE)
        .with_context(|| format!("group {group} has no ACTIVE storage"))?;
    Ok(crate::config::join_host_port(&m.ip, m.storage_port.clamp(0, 65535) as u16))
}

/// One file as a line of stdout (a closed stdout ends the tool as the other tools end).
fn print_file(group: &str, f: &ListedFile, json: bool, all_crc: bool, with_metadata: bool) {
    if !json {
        return crate::outln!("{group}/{}", f.filename);
    }
    let mut v = serde_json::json!({
        "file_id": format!("{group}/{}", f.filename),
        "size": f.size,
        "create_time": f.created,
    });
    // Appender and slave names do not carry their CRC32: known only when computed.
    let kind = RemoteFilename::parse(&f.filename, None).map(|n| n.info().file_type);
    if all_crc || kind.is_ok_and(|k| k == FileType::Normal) {
        v["crc32"] = f.crc32.into();
    }
    if with_metadata {
        let meta: serde_json::Map<String, serde_json::Value> = crate::protocol::storage::parse_metadata(&f.metadata)
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned().into()))
            .collect();
        v["metadata"] = meta.into();
    }
    crate::outln!("{v}");
}

/// The IDs to delete, in an unnamed temporary file (gone with the process however it ends).
struct Spool(std::io::BufWriter<std::fs::File>);

impl Spool {
    fn create() -> Result<Self> {
        Ok(Self(std::io::BufWriter::new(tempfile::tempfile().context("creating a temporary file")?)))
    }

    fn push(&mut self, group: &str, f: &ListedFile) -> std::io::Result<()> {
        writeln!(self.0, "{group}/{}", f.filename)
    }

    /// The IDs written, from the first.
    fn ids(self) -> Result<impl Iterator<Item = std::io::Result<String>>> {
        use std::io::Seek;
        let mut file = self.0.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(std::io::BufReader::new(file).lines())
    }
}

async fn delete_spooled(client: &Client, a: &Args, spool: Spool, listed: u64) -> Result<ExitCode> {
    let ids = spool.ids()?;
    let pause = (a.rate > 0).then(|| std::time::Duration::from_secs(1) / a.rate);
    let (mut deleted, mut failures) = (0u64, 0u64);
    for id in ids {
        let id = id?;
        if a.dry_run {
            crate::outln!("{id}");
            continue;
        }
        match client.delete(&id).await {
            Ok(()) => {
                deleted += 1;
                crate::outln!("{id}");
            }
            // Gone already (another run, a member's delete replicated meanwhile): not a failure.
            Err(e) if e.status() == crate::protocol::Status::ENOENT => {}
            Err(e) => {
                failures += 1;
                eprintln!("{}", super::commands::failure(&format!("delete file {id}"), &e).0);
            }
        }
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    if a.dry_run {
        eprintln!("would delete {listed} file(s)");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("deleted {deleted} of {listed} listed file(s), {failures} failed");
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(["fdfs_list_files", "c.conf", "group1"].iter().chain(extra)).unwrap()
    }

    #[test]
    fn filters_become_the_request() {
        let r = request(&args(&["--created-after", "100", "--created-before", "200", "--ext", ".jpg"])).unwrap();
        assert_eq!((r.created_after, r.created_before, r.ext.as_str()), (100, 200, "jpg"));
        let r = request(&args(&["--older-than", "1", "--created-before", "100"])).unwrap();
        assert_eq!(r.created_before, 100, "the earlier bound wins");
        let now = crate::timefmt::now_unix();
        let r = request(&args(&["--older-than", "2"])).unwrap();
        assert!((r.created_before - (now - 2 * 86_400)).abs() <= 2);
        assert!(request(&args(&["--dry-run"])).is_err(), "dry run needs --delete");
        assert!(request(&args(&["--ext", "toolongext"])).is_err());
        assert!(request(&args(&["--prefix", "M00/ x"])).is_err());
        let r = request(&args(&["--metadata", "--crc32", "--min-size", "3", "--max-size", "9"])).unwrap();
        assert_eq!(r.flags, list_flags::METADATA | list_flags::CRC32);
        assert_eq!((r.min_size, r.max_size), (3, 9));
    }

    #[test]
    fn times_parse_as_seconds_or_local_dates() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        let day = parse_time("2024-03-01").unwrap();
        assert_eq!(parse_time("2024-03-01 00:00:10").unwrap(), day + 10);
        assert!(parse_time("yesterday").is_err());
    }
}
