//! `fdfs_http_token CONF [--group G] [--expires SECONDS] [--max-size BYTES] [--ext EXT,...]
//! [--meta NAME=VALUE]...`: prints a signed upload grant as a query string (`?…`) to append to
//! an upload URL (`http://<nginx>/upload`), signed with CONF's `http_upload_secret` (the
//! storages' storage.conf carries the same), so scripts and tests sign without writing code.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::grant::UploadGrant;

#[derive(Parser, Debug)]
#[command(name = "fdfs_http_token", about = "Print a signed HTTP upload grant (?query) for an upload URL")]
struct Args {
    /// A .conf with http_upload_secret (storage.conf, or the application's own).
    config: std::path::PathBuf,
    /// The group uploads must go to (default: whichever storage takes the upload).
    #[arg(long)]
    group: Option<String>,
    /// Seconds from now until the grant is refused.
    #[arg(long, default_value_t = 3600)]
    expires: u64,
    /// The largest file, in bytes (K/M/G suffixes allowed; default: the storage's limit).
    #[arg(long, value_name = "BYTES")]
    max_size: Option<String>,
    /// Extensions allowed, comma-separated (default: any).
    #[arg(long, value_name = "EXT,...")]
    ext: Option<String>,
    /// Metadata every upload gets (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    meta: Vec<String>,
}

pub fn main(args: &[String]) -> Result<ExitCode> {
    let args: Args = match super::parse_args("fdfs_http_token", args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let ini = crate::config::Ini::load(&args.config)?;
    let Some(secret) = ini.global().opt_string("http_upload_secret") else {
        bail!("{}: http_upload_secret is not set", args.config.display());
    };
    let max_size = match &args.max_size {
        Some(v) => crate::config::ini::parse_size(v).with_context(|| format!("--max-size {v}: a size such as 10MB"))?,
        None => 0,
    };
    let meta = args
        .meta
        .iter()
        .map(|m| m.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect::<Option<Vec<_>>>()
        .context("--meta takes NAME=VALUE")?;
    let grant = UploadGrant {
        group: args.group,
        expires: crate::timefmt::now_unix().saturating_add(args.expires.min(i64::MAX as u64) as i64),
        max_size,
        exts: args
            .ext
            .iter()
            .flat_map(|e| e.split(','))
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect(),
        meta,
    };
    crate::outln!("?{}", grant.to_query(&secret));
    Ok(ExitCode::SUCCESS)
}
