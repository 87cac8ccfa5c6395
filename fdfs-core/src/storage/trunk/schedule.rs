//! C's two schedules while this storage is the trunk server: trunk binlog compression and
//! trunk files created ahead of need.

use std::sync::Arc;
use std::time::Duration;

use crate::server::Shutdown;
use crate::storage::StorageServer;
use crate::timefmt::now_unix;

/// The latest point of a daily schedule (`base_minutes` after midnight UTC, as the logs, then
/// every `interval` seconds) at or before `now`.
fn last_due(now: i64, base_minutes: i64, interval: i64) -> i64 {
    let mut base = now - now.rem_euclid(86_400) + base_minutes * 60;
    if base > now {
        base -= 86_400;
    }
    base + (now - base) / interval.max(60) * interval.max(60)
}

/// While this storage is the trunk server, C's two schedules: compress the trunk binlog every
/// `trunk_compress_binlog_interval` from `trunk_compress_binlog_time_base`, and (with
/// `trunk_create_file_advance`) create trunk files every `trunk_create_file_interval` from
/// `trunk_create_file_time_base` until `trunk_create_file_space_threshold` bytes are free.
pub async fn schedule_loop(srv: Arc<StorageServer>, mut shutdown: Shutdown) {
    let (mut compressed_for, mut created_for): (Option<i64>, Option<i64>) = (None, None);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if !srv.trunk.is_server() {
            continue;
        }
        let (now, p) = (now_unix(), srv.identity.params());
        if p.trunk_compress.interval > 0 {
            let due = last_due(now, p.trunk_compress.time_base, p.trunk_compress.interval);
            let last: i64 =
                srv.identity.init_flag().other("trunk_last_compress_time").and_then(|v| v.parse().ok()).unwrap_or(0);
            if compressed_for.is_none_or(|d| d < due) && last < due {
                let s = srv.clone();
                match tokio::task::spawn_blocking(move || s.compress_trunk_binlog()).await {
                    Ok(Ok(_)) => compressed_for = Some(due),
                    Ok(Err(e)) => tracing::error!("compressing the trunk binlog: {e}"),
                    Err(e) => tracing::error!("compressing the trunk binlog: {e}"),
                }
            }
        }
        let a = p.trunk_advance;
        if a.enabled && a.threshold > 0 {
            let due = last_due(now, a.time_base, a.interval);
            if created_for.is_none_or(|d| d < due) {
                let s = srv.clone();
                match tokio::task::spawn_blocking(move || s.allocator().create_ahead(a.threshold)).await {
                    Ok(Ok(n)) => {
                        if n > 0 {
                            tracing::info!("{n} trunk file(s) created ahead of need");
                        }
                        created_for = Some(due);
                    }
                    Ok(Err(e)) => tracing::error!("creating trunk files ahead: {e:?}"),
                    Err(e) => tracing::error!("creating trunk files ahead: {e}"),
                }
            }
        }
    }
}
