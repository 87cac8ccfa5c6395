//! The storage's own HTTP side (`http_listen`, ours): what nginx on this host hands it. The
//! module proxies a thumbnail not made yet (`GET /thumbnail/…`, [`super::thumbnail`]); an
//! upload location proxies browser and curl uploads (`POST /upload`, [`super::http_upload`])
//! and resumable ones (tus 1.0 under `/files/`, [`super::tus`]).
//! One request per connection, as nginx's proxy sends them; the head within
//! `network_timeout`, at most [`MAX_CONNECTIONS`] connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use super::StorageServer;
use crate::server::http::{read_request_head, write_reply};
use crate::server::Shutdown;

/// Most connections open at once (nginx's proxy opens one per request); more are closed at
/// accept.
const MAX_CONNECTIONS: usize = 64;

/// Serves `http_listen` until shutdown.
pub async fn serve(srv: Arc<StorageServer>, addr: SocketAddr, shutdown: Shutdown) {
    crate::server::http::serve("http_listen", addr, MAX_CONNECTIONS, shutdown, move |sock| {
        let s = srv.clone();
        async move {
            if let Err(e) = answer(&s, sock).await {
                tracing::debug!("http_listen: {e}");
            }
        }
    })
    .await
}

async fn answer(srv: &Arc<StorageServer>, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
    let timeout = srv.config.network_timeout;
    let Ok(Some(head)) = tokio::time::timeout(timeout, read_request_head(&mut sock)).await? else {
        return Ok(());
    };
    match (head.method.as_str(), head.path()) {
        ("GET" | "HEAD", p) if p.starts_with("/thumbnail/") => super::thumbnail::answer(srv, &mut sock, &head).await,
        ("POST", "/upload") => super::http_upload::answer(srv, sock, head).await,
        (_, p) if p == "/files" || p.starts_with("/files/") => super::tus::answer(srv, sock, head).await,
        (_, "/upload") => write_reply(&mut sock, "405 Method Not Allowed", "text/plain", b"POST only\n", false).await,
        _ => {
            write_reply(
                &mut sock,
                "404 Not Found",
                "text/plain",
                b"/thumbnail/<group>/<name>, /upload or /files/\n",
                false,
            )
            .await
        }
    }
}

/// A request body as it arrives.
pub(super) type BodyStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What is still read of a body the answer no longer needs (a refusal before or in the middle
/// of it), so the client gets the answer instead of a reset connection; more than this, or
/// longer than [`LINGER_TIME`], and the connection is closed anyway.
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A request body of `length` bytes (`rest` came with the head, the remainder is on `read`),
/// read by a task of its own and handed over in chunks, at most a few in flight. When the
/// stream is dropped before the end, the task reads on and discards (see [`LINGER_BYTES`]);
/// await the handle after answering, so the socket is closed only then. A body that came
/// whole with the head (a small upload) needs no task: there is nothing left to read.
pub(super) fn body_stream(
    rest: Vec<u8>,
    mut read: OwnedReadHalf,
    length: u64,
) -> (BodyStream, Option<tokio::task::JoinHandle<()>>) {
    if rest.len() as u64 >= length {
        let whole = Bytes::from(rest).slice(..length as usize);
        return (Box::pin(futures_util::stream::iter([Ok(whole)])), None);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let pump = tokio::spawn(async move {
        let mut left = length;
        let first = Bytes::from(rest);
        let first = first.slice(..first.len().min(usize::try_from(left).unwrap_or(usize::MAX)));
        left -= first.len() as u64;
        let mut wanted = first.is_empty() || tx.send(Ok(first)).await.is_ok();
        let mut buf = vec![0u8; 64 << 10];
        let mut drained = 0u64;
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = if wanted {
                match read.read(&mut buf[..want]).await {
                    Ok(0) => {
                        let _ = tx.send(Err(std::io::ErrorKind::UnexpectedEof.into())).await;
                        return;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            } else {
                match tokio::time::timeout_at(deadline, read.read(&mut buf[..want])).await {
                    Ok(Ok(n)) if n > 0 && drained < LINGER_BYTES => n,
                    _ => return,
                }
            };
            left -= n as u64;
            if wanted {
                wanted = tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_ok();
            } else {
                drained += n as u64;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (Box::pin(stream), Some(pump))
}

/// Waits for a body's reader to finish draining (bounded by [`LINGER_TIME`]).
pub(super) async fn linger(pump: Option<tokio::task::JoinHandle<()>>) {
    if let Some(pump) = pump {
        let _ = tokio::time::timeout(LINGER_TIME + Duration::from_secs(1), pump).await;
    }
}

/// Sets a file's metadata (overwriting it) from text pairs; nothing when there are none.
pub(super) async fn set_text_metadata(
    srv: &Arc<StorageServer>,
    name: &str,
    meta: &[(String, String)],
) -> Result<(), crate::protocol::Status> {
    if meta.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(Vec<u8>, Vec<u8>)> =
        meta.iter().map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes())).collect();
    let req = crate::protocol::storage::SetMetadataReq {
        op: crate::protocol::storage::MetaOp::Overwrite,
        group: srv.group.clone(),
        filename: name.to_owned(),
        meta: crate::protocol::storage::pack_metadata(&pairs),
    };
    super::ops::set_metadata(srv, req).await
}
