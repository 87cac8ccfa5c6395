//! Metrics and health over HTTP (`metrics_listen`, off by default): Prometheus text at
//! `/metrics` (the `prometheus-client` crate keeps and encodes them) and `/healthz`. Request
//! counters and latency histograms are updated as requests finish; the rest (disk space,
//! connections, replication lag, cluster membership) is read by the daemon at each scrape.
//!
//! The HTTP side is deliberately tiny: one GET per connection, a request head of at most 8 KiB
//! read within 5 seconds, nothing else accepted, at most [`MAX_CONNECTIONS`] at once (more are
//! closed at accept: a flood of scrapes must not take the file descriptors the daemon serves
//! with).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::server::Shutdown;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    command: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cmd {
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: String,
}

/// Labels of a gauge read at scrape time.
pub type GaugeLabels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// One daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    latency: Family<Cmd, Histogram, fn() -> Histogram>,
    bytes: Family<Direction, Counter>,
    gauges: Vec<(&'static str, Family<GaugeLabels, Gauge>)>,
}

impl Metrics {
    /// The request metrics, plus one gauge family per `(name, help)` of `gauges`, all named
    /// `fastdfs_<name>`.
    pub fn new(gauges: &[(&'static str, &'static str)]) -> Self {
        let mut registry = Registry::with_prefix("fastdfs");
        let requests = Family::<Outcome, Counter>::default();
        registry.register("requests", "Requests served, by command and result (ok or error)", requests.clone());
        let latency = Family::<Cmd, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("request_duration_seconds", "Time to serve a request, by command", latency.clone());
        let bytes = Family::<Direction, Counter>::default();
        registry.register("content_bytes", "File content received (in) and sent (out)", bytes.clone());
        let gauges = gauges
            .iter()
            .map(|(name, help)| {
                let f = Family::<GaugeLabels, Gauge>::default();
                registry.register(*name, *help, f.clone());
                (*name, f)
            })
            .collect();
        Self { registry, requests, latency, bytes, gauges }
    }

    /// A request finished.
    pub fn request(&self, command: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.requests.get_or_create(&Outcome { command: command.to_owned(), result: result.into() }).inc();
        self.latency.get_or_create(&Cmd { command: command.to_owned() }).observe(took.as_secs_f64());
    }

    /// Content bytes received (`inbound`) or sent.
    pub fn content(&self, inbound: bool, n: u64) {
        let direction = if inbound { "in" } else { "out" };
        self.bytes.get_or_create(&Direction { direction: direction.into() }).inc_by(n);
    }

    /// Replaces the values of gauge family `name` (a scrape-time reading).
    pub fn set_gauges(&self, name: &str, values: impl IntoIterator<Item = (GaugeLabels, i64)>) {
        let Some((_, f)) = self.gauges.iter().find(|(n, _)| *n == name) else { return };
        f.clear();
        for (labels, v) in values {
            f.get_or_create(&labels).set(v);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What a daemon answers on the metrics port.
pub trait Exporter: Send + Sync + 'static {
    /// `/metrics`: the gauges refreshed, then everything encoded.
    fn metrics(&self) -> String;
    /// `/healthz`: whether the daemon serves, and a short reason.
    fn health(&self) -> (bool, String);
}

/// Most metrics connections open at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves `/metrics` and `/healthz` on `addr` until shutdown.
pub async fn serve(addr: SocketAddr, exporter: Arc<dyn Exporter>, shutdown: Shutdown) {
    crate::server::http::serve("metrics_listen", addr, MAX_CONNECTIONS, shutdown, move |sock| {
        let e = exporter.clone();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(sock, e)).await;
        }
    })
    .await
}

async fn answer(mut sock: tokio::net::TcpStream, exporter: Arc<dyn Exporter>) -> std::io::Result<()> {
    let Some(head) = crate::server::http::read_request_head(&mut sock, Vec::new()).await? else { return Ok(()) };
    let (status, kind, body) = match (head.method.as_str(), head.path()) {
        ("GET", "/metrics") => {
            let e = exporter.clone();
            let text = tokio::task::spawn_blocking(move || e.metrics()).await.unwrap_or_default();
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
        }
        ("GET", "/healthz") => match exporter.health() {
            (true, why) => ("200 OK", "text/plain", format!("ok {why}\n")),
            (false, why) => ("503 Service Unavailable", "text/plain", format!("not serving: {why}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "/metrics or /healthz\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
    };
    crate::server::http::write_reply(&mut sock, status, kind, body.as_bytes(), false, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_encode_as_prometheus_text() {
        let m = Metrics::new(&[("store_path_free_bytes", "Free space")]);
        m.request("UPLOAD_FILE", true, Duration::from_millis(2));
        m.request("UPLOAD_FILE", false, Duration::from_millis(1));
        m.content(true, 4096);
        m.set_gauges("store_path_free_bytes", [(vec![("path".into(), "0".into())], 123)]);
        let text = m.encode();
        assert!(text.contains("fastdfs_requests_total{command=\"UPLOAD_FILE\",result=\"ok\"} 1"), "{text}");
        assert!(text.contains("fastdfs_requests_total{command=\"UPLOAD_FILE\",result=\"error\"} 1"), "{text}");
        assert!(text.contains("fastdfs_request_duration_seconds_count{command=\"UPLOAD_FILE\"} 2"), "{text}");
        assert!(text.contains("fastdfs_content_bytes_total{direction=\"in\"} 4096"), "{text}");
        assert!(text.contains("fastdfs_store_path_free_bytes{path=\"0\"} 123"), "{text}");
        m.set_gauges("store_path_free_bytes", []);
        assert!(!m.encode().contains("path=\"0\""), "a gauge reading replaces the last");
        assert!(text.ends_with("# EOF\n"));
    }
}
