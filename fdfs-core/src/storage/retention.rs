//! Retention rules the storage applies itself (ours; C FastDFS leaves expiry to scripts over
//! directory walks): files older than `retention_days` (optionally only some extensions), and
//! files whose metadata says how many days they live (`retention_metadata_key`, e.g.
//! `expire_days` set at upload), are deleted through the normal delete path (binlog, replicas,
//! de-duplication counts, trunk slots), at most `retention_rate` a second, every
//! `retention_interval`.
//!
//! Each member deletes only the files it is the source of (uploaded to it, its uppercase
//! binlog records); their deletes reach the other members by replication, as a client's do.
//! So every file is judged by one storage, and a rule applies the same on every member.
//! `retention_dry_run` logs what would go and deletes nothing.

use std::sync::Arc;
use std::time::Duration;

use super::StorageServer;
use crate::config::Retention;
use crate::protocol::listing::{list_flags, ListFilesReq, ListedFile};
use crate::protocol::storage::parse_metadata;
use crate::server::Shutdown;

const DAY: i64 = 86_400;

/// Whether `file` has expired at `now` under `rules`.
pub fn expired(rules: &Retention, file: &ListedFile, now: i64) -> bool {
    let by_age = rules.days > 0
        && (rules.extensions.is_empty()
            || crate::protocol::listing::extension(&file.filename)
                .is_some_and(|e| rules.extensions.iter().any(|x| x.eq_ignore_ascii_case(e))))
        && file.created.saturating_add((rules.days as i64).saturating_mul(DAY)) <= now;
    let by_metadata = rules.metadata_key.as_ref().is_some_and(|key| {
        parse_metadata(&file.metadata)
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok())
            .is_some_and(|days| file.created.saturating_add(i64::from(days) * DAY) <= now)
    });
    by_age || by_metadata
}

/// Runs the rules every `interval` until the storage stops.
pub async fn run(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let rules = srv.config.retention.clone();
    if !rules.enabled() {
        return;
    }
    tracing::info!("retention: {}", rules.describe());
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(rules.interval) => {}
        }
        match round(&srv, &rules, &mut shutdown).await {
            Ok((0, _)) => {}
            Ok((n, failed)) if rules.dry_run => {
                tracing::info!("retention (dry run): {n} file(s) would be deleted, {failed} unreadable")
            }
            Ok((n, failed)) => tracing::info!("retention: {n} expired file(s) deleted, {failed} failed"),
            Err(e) => tracing::error!("retention: reading the binlog: {e}"),
        }
    }
}

/// One pass over this storage's own files: (deleted or, dry, to delete; failed).
async fn round(srv: &Arc<StorageServer>, rules: &Retention, shutdown: &mut Shutdown) -> std::io::Result<(u64, u64)> {
    let now = crate::timefmt::now_unix();
    // Without a metadata rule only files old enough can have expired: the storage skips the
    // rest by name. With one, every file's metadata is read.
    let created_before = match rules.metadata_key {
        None => now.saturating_sub((rules.days as i64).saturating_mul(DAY)).saturating_add(1),
        Some(_) => 0,
    };
    let req = ListFilesReq {
        group: srv.group.clone(),
        flags: if rules.metadata_key.is_some() { list_flags::METADATA } else { 0 },
        created_before,
        ..Default::default()
    };
    // The scan runs on the blocking pool and hands names over a bounded queue, so memory stays
    // flat and the deletes pace the scan.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    let (s, r) = (srv.clone(), rules.clone());
    let scan = tokio::task::spawn_blocking(move || {
        s.catalog().each_live(&req, true, |f| !expired(&r, &f, now) || tx.blocking_send(f.filename).is_ok())
    });
    let pause = Duration::from_secs(1) / rules.rate.max(1);
    let (mut done, mut failed) = (0u64, 0u64);
    while let Some(name) = rx.recv().await {
        if rules.dry_run {
            tracing::info!("retention (dry run): would delete {}/{name}", srv.group);
            done += 1;
            continue;
        }
        let started = std::time::Instant::now();
        let r = super::ops::delete(srv, name.clone()).await;
        // In the metrics as a command of its own: fastdfs_requests_total{command="RetentionDelete"}.
        srv.metrics.request("RetentionDelete", r.is_ok(), started.elapsed());
        match r {
            Ok(()) => {
                done += 1;
                tracing::debug!("retention: deleted {}/{name}", srv.group);
            }
            // Deleted meanwhile by a client or a replicated delete.
            Err(crate::protocol::Status::ENOENT) => {}
            Err(e) => {
                failed += 1;
                tracing::warn!("retention: deleting {}/{name}: {e}", srv.group);
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    drop(rx);
    scan.await.map_err(std::io::Error::other)??;
    Ok((done, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, created: i64, meta: &[u8]) -> ListedFile {
        ListedFile { filename: name.into(), created, metadata: meta.to_vec(), ..Default::default() }
    }

    #[test]
    fn age_extension_and_metadata_rules() {
        let now = 100 * DAY;
        let off = Retention::default();
        assert!(!expired(&off, &file("M00/00/00/a.jpg", 0, b""), now));
        let age = Retention { days: 30, ..Default::default() };
        assert!(expired(&age, &file("M00/00/00/a.jpg", now - 30 * DAY, b""), now));
        assert!(!expired(&age, &file("M00/00/00/a.jpg", now - 30 * DAY + 1, b""), now));
        let tmp = Retention { days: 1, extensions: vec!["tmp".into()], ..Default::default() };
        assert!(expired(&tmp, &file("M00/00/00/a.TMP", 0, b""), now));
        assert!(!expired(&tmp, &file("M00/00/00/a.jpg", 0, b""), now));
        assert!(!expired(&tmp, &file("M00/00/00/a", 0, b""), now));
        let meta = Retention { metadata_key: Some("expire_days".into()), ..Default::default() };
        assert!(expired(&meta, &file("M00/00/00/a", now, b"w\x02150\x01expire_days\x020"), now));
        assert!(expired(&meta, &file("M00/00/00/a", now - 2 * DAY, b"expire_days\x02 2"), now));
        assert!(!expired(&meta, &file("M00/00/00/a", now - DAY, b"expire_days\x022"), now));
        assert!(!expired(&meta, &file("M00/00/00/a", 0, b"expire_days\x02never"), now), "not a number: kept");
        assert!(!expired(&meta, &file("M00/00/00/a", 0, b"other\x020"), now));
        assert!(!expired(&meta, &file("M00/00/00/a", 0, b""), now));
    }
}
