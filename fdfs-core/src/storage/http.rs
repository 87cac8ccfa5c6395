//! The storage's own HTTP side (`http_listen`, ours): what nginx on this host hands it. The
//! module proxies a thumbnail not made yet (`GET /thumbnail/…`, [`super::thumbnail`]); an
//! upload location proxies browser and curl uploads (`POST /upload`, [`super::http_upload`])
//! and resumable ones (tus 1.0 under `/files/`, [`super::tus`]).
//! A connection carries request after request when nginx keeps it (`keepalive` in its
//! upstream, HTTP/1.1) and each was read to its end and answered with a success; a request's
//! head within `network_timeout`, an idle connection kept [`IDLE`]; at most
//! [`MAX_CONNECTIONS`] connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::StorageServer;
use crate::server::http::{read_request_head, write_reply, BodyDecoder, Decoded, Framing, RequestHead};
use crate::server::Shutdown;

/// Most connections open at once (nginx's proxy opens one per request, or keeps up to its
/// upstream's `keepalive` idle per worker); more are closed at accept.
const MAX_CONNECTIONS: usize = 256;

/// How long a kept connection waits for its next request (nginx's upstream
/// `keepalive_timeout` is 60 s by default: ours is shorter, so nginx sees the close of an idle
/// connection before it sends on it).
const IDLE: Duration = Duration::from_secs(50);

/// A connection given back after a request for the next one, with the bytes already read of
/// what follows.
pub(super) type Kept = Option<(TcpStream, Vec<u8>)>;

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

async fn answer(srv: &Arc<StorageServer>, sock: TcpStream) -> std::io::Result<()> {
    let mut kept = Some((sock, Vec::new()));
    let mut first = true;
    while let Some((mut sock, carried)) = kept.take() {
        // A kept connection waits up to IDLE for its next request to begin.
        if !first && carried.is_empty() {
            let mut probe = [0u8; 1];
            if !matches!(tokio::time::timeout(IDLE, sock.peek(&mut probe)).await, Ok(Ok(1))) {
                return Ok(());
            }
        }
        first = false;
        let timeout = srv.config.network_timeout;
        let Ok(Some(head)) = tokio::time::timeout(timeout, read_request_head(&mut sock, carried)).await? else {
            return Ok(());
        };
        kept = route(srv, sock, head).await?;
    }
    Ok(())
}

/// One request: its answer, and the connection back when it serves another.
async fn route(srv: &Arc<StorageServer>, mut sock: TcpStream, head: RequestHead) -> std::io::Result<Kept> {
    // A request without a body may be followed by the next on the same connection.
    let keep = head.keep_alive && framing(&head).is_none_or(|f| f == Framing::Length(0));
    match (head.method.as_str(), head.path()) {
        ("GET" | "HEAD", p) if p.starts_with("/thumbnail/") => {
            let ok = super::thumbnail::answer(srv, &mut sock, &head, keep).await?;
            Ok((keep && ok).then_some((sock, head.rest)))
        }
        ("POST", "/upload") => super::http_upload::answer(srv, sock, head).await,
        (_, p) if p == "/files" || p.starts_with("/files/") => super::tus::answer(srv, sock, head).await,
        (_, "/upload") => {
            write_reply(&mut sock, "405 Method Not Allowed", "text/plain", b"POST only\n", false, false).await?;
            Ok(None)
        }
        _ => {
            let what = b"/thumbnail/<group>/<name>, /upload or /files/\n";
            write_reply(&mut sock, "404 Not Found", "text/plain", what, false, false).await?;
            Ok(None)
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

/// The reading side of a connection once its request's body has been read to its end, with
/// the bytes read past it (the next request's first).
type ReadBack = Option<(OwnedReadHalf, Vec<u8>)>;

/// What reads the rest of a body: nothing (it came whole with the head), or a task.
pub(super) enum Pump {
    Done(ReadBack),
    Task(tokio::task::JoinHandle<ReadBack>),
}

/// A request's body as `framing` says (`rest` came with the head, the remainder is on `read`),
/// read by a task of its own and handed over in chunks, at most a few in flight. When the
/// stream is dropped before the end, the task reads on and discards (see [`LINGER_BYTES`]);
/// pass the pump to [`linger`] after answering, so the socket is closed only then. A body that
/// came whole with the head (a small upload) needs no task: there is nothing left to read.
pub(super) fn body_stream(rest: Vec<u8>, mut read: OwnedReadHalf, framing: Framing) -> (BodyStream, Pump) {
    if let Framing::Length(length) = framing {
        if rest.len() as u64 >= length {
            let mut whole = Bytes::from(rest);
            let after = whole.split_off(length as usize).to_vec();
            return (Box::pin(futures_util::stream::iter([Ok(whole)])), Pump::Done(Some((read, after))));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let pump = tokio::spawn(async move {
        let mut decoder = BodyDecoder::new(framing);
        let mut buf = BytesMut::from(&rest[..]);
        let mut wanted = true;
        let mut drained = 0u64;
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        loop {
            match decoder.next(&mut buf) {
                Ok(Some(Decoded::End)) => return Some((read, buf.to_vec())),
                Ok(Some(Decoded::Data(data))) if wanted => wanted = tx.send(Ok(data)).await.is_ok(),
                Ok(Some(Decoded::Data(data))) => {
                    drained += data.len() as u64;
                    if drained > LINGER_BYTES {
                        return None;
                    }
                }
                Ok(None) => {
                    buf.reserve(64 << 10);
                    let n = if wanted {
                        read.read_buf(&mut buf).await
                    } else {
                        tokio::time::timeout_at(deadline, read.read_buf(&mut buf)).await.unwrap_or(Ok(0))
                    };
                    match n {
                        Ok(0) if wanted => {
                            let _ = tx.send(Err(std::io::ErrorKind::UnexpectedEof.into())).await;
                            return None;
                        }
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return None;
                        }
                    }
                }
                Err(bad) => {
                    let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, bad))).await;
                    return None;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (Box::pin(stream), Pump::Task(pump))
}

/// A request body's framing: its declared length or chunks; `None` when it has neither.
pub(super) fn framing(head: &RequestHead) -> Option<Framing> {
    if head.chunked() {
        Some(Framing::Chunked)
    } else {
        head.content_length().map(Framing::Length)
    }
}

/// A body as a reader with its length, at most `max` bytes (`Ok(None)`: more). A declared
/// length streams as the body arrives; a body whose length is known only at its end (chunked)
/// is spooled into an unnamed temporary file of the store path first, since a FastDFS write
/// states its length before its bytes.
pub(super) async fn sized(
    srv: &StorageServer,
    mut body: BodyStream,
    framing: Framing,
    max: u64,
) -> std::io::Result<Option<(SizedBody, u64)>> {
    if let Framing::Length(length) = framing {
        let reader: SizedBody = Box::new(tokio_util::io::StreamReader::new(body));
        return Ok((length <= max).then_some((reader, length)));
    }
    let mut file = tokio::fs::File::from_std(tempfile::tempfile_in(srv.paths.temp_dir(0))?);
    let mut size = 0u64;
    // Each piece within network_timeout, as a declared length's body is read (a sender that
    // stalls is not waited for).
    let timeout = srv.config.network_timeout;
    let stalled = || std::io::Error::new(std::io::ErrorKind::TimedOut, "the body stalled");
    while let Some(chunk) = tokio::time::timeout(timeout, body.next()).await.map_err(|_| stalled())?.transpose()? {
        size += chunk.len() as u64;
        if size > max {
            return Ok(None);
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.seek(std::io::SeekFrom::Start(0)).await?;
    Ok(Some((Box::new(file), size)))
}

/// A body [`sized`] for storing.
pub(super) type SizedBody = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// Waits for a body's reader to finish draining (bounded by [`LINGER_TIME`]); then, when
/// `keep` and the body was read to its end, the connection is given back whole for the next
/// request.
pub(super) async fn linger(pump: Pump, write: OwnedWriteHalf, keep: bool) -> Kept {
    let back = match pump {
        Pump::Done(back) => back,
        Pump::Task(task) => tokio::time::timeout(LINGER_TIME + Duration::from_secs(1), task).await.ok()?.ok()?,
    };
    let (read, carried) = back.filter(|_| keep)?;
    Some((read.reunite(write).ok()?, carried))
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
