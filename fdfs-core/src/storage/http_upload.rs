//! Uploads over HTTP (`POST /upload`, behind nginx's `proxy_request_buffering off`): a browser
//! or curl uploads straight into the group, with a grant the application server signed
//! ([`crate::grant`]). The body is either a multipart form (the file in field `file`, other
//! fields as metadata) or the file itself (`?filename=` gives its extension). The file is
//! stored as a protocol upload is (names, binlog, replication, de-duplication, trunk slots);
//! the answer is JSON: file ID, URL, size, CRC32, metadata.
//!
//! A raw body streams into the store as it arrives. A form's file part is streamed into an
//! unnamed temporary file first (its length is known only at its end, and a FastDFS upload
//! states its length first), then stored. Memory stays bounded either way. Refusals come
//! before the body is read where they can: a missing or bad grant 403, a declared length over
//! the grant's or `http_upload_max_size` 413, an extension not granted 415.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::content::Content;
use super::http::{body_stream, framing, linger, set_text_metadata, sized, BodyStream, Kept, Pump};
use super::StorageServer;
use crate::client::file_ext;
use crate::file_id::RemoteFilename;
use crate::grant::{GrantError, UploadGrant};
use crate::http::parse_args;
use crate::protocol::storage::UploadHead;
use crate::protocol::Status;
use crate::server::http::{write_reply, Framing, RequestHead};

/// What a form may add around its file part (boundaries, part heads, small fields).
const FORM_SLACK: u64 = 64 << 10;
/// The most a form may make the parser hold that is not a field's content (the preamble, a
/// part's head): it buffers those until their end, so without this a form with no boundary
/// would be held whole in memory.
const FORM_HOLD: u64 = 1 << 20;
/// The longest form field taken as metadata, and how many.
const MAX_FIELD: usize = 4096;
const MAX_FIELDS: usize = 64;

/// Why an upload is refused, with its HTTP status.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Grant(#[from] GrantError),
    #[error("HTTP uploads are off on this storage (http_upload_secret is empty)")]
    Off,
    #[error("the grant is for group {0}")]
    OtherGroup(String),
    #[error("a Content-Length is required")]
    NoLength,
    #[error("larger than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("extension {0:?} is not allowed")]
    Extension(String),
    #[error("the form has no field named file")]
    NoFile,
    #[error("malformed form: {0}")]
    Form(String),
    #[error("storing it: {0:?}")]
    Store(Status),
    /// Spooling a form's file part here.
    #[error("spooling it: {0}")]
    Io(#[from] std::io::Error),
}

impl Refused {
    fn http_status(&self) -> &'static str {
        match self {
            Refused::Grant(_) | Refused::OtherGroup(_) => "403 Forbidden",
            Refused::Off => "404 Not Found",
            Refused::NoLength => "411 Length Required",
            Refused::TooLarge(_) => "413 Content Too Large",
            Refused::Extension(_) => "415 Unsupported Media Type",
            Refused::NoFile | Refused::Form(_) => "400 Bad Request",
            Refused::Store(Status::ENOSPC) => "507 Insufficient Storage",
            Refused::Store(_) | Refused::Io(_) => "500 Internal Server Error",
        }
    }
}

/// A stored upload, as the answer describes it.
struct Stored {
    filename: String,
    size: u64,
    meta: Vec<(String, String)>,
}

/// `POST /upload?<grant>[&filename=NAME]`.
/// The connection is given back after a success when the client keeps it.
pub(super) async fn answer(srv: &Arc<StorageServer>, sock: TcpStream, head: RequestHead) -> std::io::Result<Kept> {
    let started = std::time::Instant::now();
    let (read, mut write) = sock.into_split();
    let (body, pump) = match framing(&head) {
        Some(framing) => {
            let (body, pump) = body_stream(head.rest.clone(), read, framing);
            (Some((body, framing)), pump)
        }
        None => (None, Pump::Done(None)),
    };
    let result = receive(srv, body, &head).await;
    srv.metrics.request("HttpUpload", result.is_ok(), started.elapsed());
    let keep = head.keep_alive && result.is_ok();
    match result {
        Ok(s) => {
            let id = format!("{}/{}", srv.group, s.filename);
            let crc32 = RemoteFilename::parse(&s.filename, None).map(|n| n.info().crc32).unwrap_or(0);
            let meta: serde_json::Map<String, serde_json::Value> =
                s.meta.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            let body = serde_json::json!({
                "file_id": id,
                "url": format!("/{id}"),
                "size": s.size,
                "crc32": crc32,
                "metadata": meta,
            });
            write_reply(&mut write, "200 OK", "application/json", format!("{body}\n").as_bytes(), false, keep).await?;
        }
        Err(e) => {
            tracing::warn!("HTTP upload refused: {e}");
            let body = serde_json::json!({ "error": e.to_string() });
            let body = format!("{body}\n");
            write_reply(&mut write, e.http_status(), "application/json", body.as_bytes(), false, false).await?;
        }
    }
    // What the client still sends of a refused body is read, so it gets the answer.
    Ok(linger(pump, write, keep).await)
}

async fn receive(
    srv: &Arc<StorageServer>,
    body: Option<(BodyStream, Framing)>,
    head: &RequestHead,
) -> Result<Stored, Refused> {
    let secret = srv.config.http_upload_secret.as_deref().ok_or(Refused::Off)?;
    let query = parse_args(head.query());
    let grant = UploadGrant::from_query(&query, secret, crate::timefmt::now_unix())?;
    if let Some(g) = grant.group.as_ref().filter(|g| **g != srv.group) {
        return Err(Refused::OtherGroup(g.clone()));
    }
    let (body, framing) = body.ok_or(Refused::NoLength)?;
    let max = grant.limit(srv.config.http_upload_max_size);
    let boundary = head.header("content-type").and_then(|t| multer::parse_boundary(t).ok());
    let (filename, size, fields) = match boundary {
        Some(boundary) => {
            if matches!(framing, Framing::Length(length) if length > max.saturating_add(FORM_SLACK)) {
                return Err(Refused::TooLarge(max));
            }
            from_form(srv, body, boundary, &grant, max).await?
        }
        None => {
            let name = query.get("filename").cloned().unwrap_or_default();
            let ext = file_ext(std::path::Path::new(&name));
            if !grant.allows_ext(&ext) {
                return Err(Refused::Extension(ext));
            }
            let (mut body, length) = sized(srv, body, framing, max).await?.ok_or(Refused::TooLarge(max))?;
            (store(srv, &mut body, length, &ext).await?, length, Vec::new())
        }
    };
    // The grant's metadata wins over the form's fields of the same name.
    let mut meta: Vec<(String, String)> =
        fields.into_iter().filter(|(k, _)| !grant.meta.iter().any(|(g, _)| g == k)).collect();
    meta.extend(grant.meta.iter().cloned());
    set_text_metadata(srv, &filename, &meta).await.map_err(Refused::Store)?;
    Ok(Stored { filename, size, meta })
}

/// A form: its file part spooled (at most `max` bytes), its other fields kept as metadata;
/// then the file stored. Returns the stored name, its size and the fields.
async fn from_form(
    srv: &Arc<StorageServer>,
    body: BodyStream,
    boundary: String,
    grant: &UploadGrant,
    max: u64,
) -> Result<(String, u64, Vec<(String, String)>), Refused> {
    // What the parser pulled, less the field content handed out: what it holds.
    let handed_out = Arc::new(AtomicU64::new(0));
    let seen = handed_out.clone();
    let mut pulled = 0u64;
    let guarded = body.map(move |item| {
        pulled += item.as_ref().map_or(0, |b| b.len() as u64);
        if pulled.saturating_sub(seen.load(Ordering::Relaxed)) > FORM_HOLD {
            return Err(std::io::Error::other(format!(
                "more than {FORM_HOLD} bytes of the form are not a field's content"
            )));
        }
        item
    });
    let mut form = multer::Multipart::new(guarded, boundary);
    let mut fields = Vec::new();
    let mut spooled = None;
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" && spooled.is_none() {
            let file_name = field.file_name().unwrap_or("").to_owned();
            let ext = file_ext(std::path::Path::new(&file_name));
            if !grant.allows_ext(&ext) {
                return Err(Refused::Extension(ext));
            }
            let spool = tempfile::tempfile_in(srv.paths.temp_dir(0))?;
            let mut spool = tokio::fs::File::from_std(spool);
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                handed_out.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                size += chunk.len() as u64;
                if size > max {
                    return Err(Refused::TooLarge(max));
                }
                spool.write_all(&chunk).await?;
            }
            spool.flush().await?;
            spooled = Some((spool, size, ext));
        } else if fields.len() < MAX_FIELDS && !name.is_empty() {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                handed_out.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                value.extend_from_slice(&chunk);
                if value.len() > MAX_FIELD {
                    return Err(Refused::Form(format!("field {name} is longer than {MAX_FIELD} bytes")));
                }
            }
            fields.push((name, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    let (mut spool, size, ext) = spooled.ok_or(Refused::NoFile)?;
    spool.seek(std::io::SeekFrom::Start(0)).await?;
    Ok((store(srv, &mut spool, size, &ext).await?, size, fields))
}

/// A parser error with what caused it (ours, when the form was held too long, is a source).
fn form_error(e: multer::Error) -> Refused {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    Refused::Form(text)
}

/// Stores `size` bytes from `src` as a new file, as UPLOAD_FILE does.
async fn store<R: tokio::io::AsyncRead + Unpin>(
    srv: &Arc<StorageServer>,
    src: &mut R,
    size: u64,
    ext: &str,
) -> Result<String, Refused> {
    let head = UploadHead { store_path_index: -1, file_size: size, ext: ext.chars().take(6).collect() };
    let mut content = Content::new(src, size, srv.body_timer());
    super::ops::upload(srv, &head, &mut content, false).await.map_err(|e| Refused::Store(e.status))
}
