//! Resumable uploads with the tus 1.0 protocol (creation, termination and expiration
//! extensions) on `http_listen` under `/files/`, mapped onto FastDFS appender files: creation
//! (`POST /files/?<grant>`) makes an empty appender file and answers its upload URL; each
//! `PATCH` writes its bytes at the offset the client states, which must be where the upload is
//! (409 otherwise); `HEAD` answers where it is, so a client whose connection dropped, or whose
//! storage restarted or was killed, resumes from there. Where the upload is counts whole
//! PATCHes only (recorded in the appender's metadata after each): bytes of a PATCH cut short
//! are rolled back, or, after a crash, overwritten by the PATCH that resumes and cut off behind
//! it, so the file and its replicas hold exactly what the client sent. A PATCH is a modify at
//! its offset, so one repeated after a lost answer writes the same bytes again instead of
//! adding them twice. When the upload reaches `Upload-Length` the file gets its final, normal
//! name (as `fdfs_regenerate_filename` gives it), answered as `Fastdfs-File-Id` by that PATCH
//! and by any later HEAD. An upload unfinished at its `Upload-Expires` (24 h) is deleted.
//!
//! The upload URL is `/files/<appender name>.<signature>`: the name with `/` as `~`, signed
//! with `http_upload_secret`, so only the grant's holder can continue or end it. Its length,
//! offset, expiry and the grant's metadata live in the appender's metadata file; a finished
//! upload's final ID in `data/tus/<signature>` until it expires.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use base64::Engine;
use hmac::Mac;
use tokio::net::TcpStream;

use super::content::Content;
use super::http::{body_stream, framing, linger, set_text_metadata, sized, BodyStream, Kept, Pump};
use super::StorageServer;
use crate::client::file_ext;
use crate::grant::{from_hex, mac, to_hex, UploadGrant};
use crate::http::parse_args;
use crate::protocol::listing::{list_flags, ListFilesReq, ListedFile};
use crate::protocol::storage::{parse_metadata, UploadHead};
use crate::protocol::Status;
use crate::server::http::{write_reply_with, Framing, RequestHead};
use crate::timefmt::http_date;

/// How long an unfinished upload is kept, and a finished one's final ID remembered.
const EXPIRES_SECS: i64 = 24 * 3600;
/// The metadata keys the upload's own state is kept under.
const LENGTH_KEY: &str = "tus_length";
const EXPIRES_KEY: &str = "tus_expires";
/// How many bytes whole PATCHes wrote, recorded after each: what `HEAD` answers. The file
/// itself may be longer after a crash in the middle of a PATCH (its bytes were written, its
/// binlog record never was), so its size is not asked.
const OFFSET_KEY: &str = "tus_offset";
const OWN_KEYS: [&str; 3] = [LENGTH_KEY, EXPIRES_KEY, OFFSET_KEY];

type Headers = Vec<(&'static str, String)>;

/// An answer: status, headers, body.
struct Reply(&'static str, Headers, Vec<u8>);

impl Reply {
    fn new(status: &'static str) -> Self {
        Reply(status, vec![("Tus-Resumable", "1.0.0".into())], Vec::new())
    }

    fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.1.push((name, value.to_string()));
        self
    }

    fn refused(status: &'static str, why: impl std::fmt::Display) -> Self {
        let mut r = Reply::new(status).header("Content-Type", "text/plain");
        r.2 = format!("{why}\n").into_bytes();
        r
    }
}

/// A tus request on `/files/…`; the connection is given back after a success when the client
/// keeps it.
pub(super) async fn answer(srv: &Arc<StorageServer>, sock: TcpStream, head: RequestHead) -> std::io::Result<Kept> {
    let started = std::time::Instant::now();
    let (read, mut write) = sock.into_split();
    let (body, pump) = match framing(&head) {
        Some(Framing::Length(0)) | None => (None, Pump::Done(Some((read, head.rest.clone())))),
        Some(framing) => {
            let (body, pump) = body_stream(head.rest.clone(), read, framing);
            (Some((body, framing)), pump)
        }
    };
    let reply = match srv.config.http_upload_secret.clone() {
        None => Reply::refused("404 Not Found", "HTTP uploads are off on this storage"),
        Some(secret) => route(srv, body, &head, &secret).await,
    };
    let ok = reply.0.starts_with('2');
    srv.metrics.request("TusRequest", ok, started.elapsed());
    if !ok {
        tracing::info!("tus {} {}: {}", head.method, head.path(), String::from_utf8_lossy(&reply.2).trim_end());
    }
    let keep = head.keep_alive && ok;
    let Reply(status, headers, body) = reply;
    let no_body = head.method == "HEAD";
    write_reply_with(&mut write, status, &headers, (!no_body).then_some(&body[..]), body.len(), keep).await?;
    // What the client still sends of a refused PATCH is read, so it gets the answer.
    Ok(linger(pump, write, keep).await)
}

async fn route(
    srv: &Arc<StorageServer>,
    body: Option<(BodyStream, Framing)>,
    head: &RequestHead,
    secret: &str,
) -> Reply {
    if head.method == "OPTIONS" {
        return Reply::new("204 No Content")
            .header("Tus-Version", "1.0.0")
            .header("Tus-Extension", "creation,termination,expiration")
            .header("Tus-Max-Size", srv.config.http_upload_max_size);
    }
    if head.header("tus-resumable") != Some("1.0.0") {
        return Reply::refused("412 Precondition Failed", "Tus-Resumable: 1.0.0 is required")
            .header("Tus-Version", "1.0.0");
    }
    let rest = head.path().trim_start_matches("/files").trim_start_matches('/');
    if rest.is_empty() {
        return match head.method.as_str() {
            "POST" => create(srv, head, secret).await,
            _ => Reply::refused("405 Method Not Allowed", "POST creates an upload"),
        };
    }
    let Some(upload) = Upload::from_token(rest, secret) else {
        return Reply::refused("404 Not Found", "no such upload");
    };
    sweep(srv);
    match head.method.as_str() {
        "HEAD" => status(srv, &upload).await,
        "PATCH" => patch(srv, &upload, body, head).await,
        "DELETE" => match super::ops::delete(srv, upload.name.clone()).await {
            Ok(()) => Reply::new("204 No Content"),
            Err(_) => Reply::refused("404 Not Found", "no such upload"),
        },
        _ => Reply::refused("405 Method Not Allowed", "HEAD, PATCH or DELETE"),
    }
}

/// An upload named by its URL.
struct Upload {
    /// The appender file's remote filename.
    name: String,
    /// The URL's signature, also the name of its finished-upload record.
    sign: String,
}

/// What an upload URL's signature is computed over, besides the appender's name.
const URL_CONTEXT: &[u8] = b"fastdfs-rs tus v1\n";

impl Upload {
    fn token(name: &str, secret: &str) -> String {
        let sign = mac(secret, URL_CONTEXT, name.as_bytes()).finalize().into_bytes();
        format!("{}.{}", name.replace('/', "~"), to_hex(&sign[..16]))
    }

    fn from_token(token: &str, secret: &str) -> Option<Self> {
        let (name, sign) = token.rsplit_once('.')?;
        let name = name.replace('~', "/");
        crate::file_id::RemoteFilename::parse(&name, None).ok()?;
        let given = from_hex(sign).filter(|g| g.len() == 16)?;
        // Constant time, as the grant's check.
        mac(secret, URL_CONTEXT, name.as_bytes()).verify_truncated_left(&given).ok()?;
        Some(Upload { name, sign: sign.to_owned() })
    }
}

/// `POST /files/?<grant>`: an empty appender file for `Upload-Length` bytes.
async fn create(srv: &Arc<StorageServer>, head: &RequestHead, secret: &str) -> Reply {
    let grant = match UploadGrant::from_query(&parse_args(head.query()), secret, crate::timefmt::now_unix()) {
        Ok(g) => g,
        Err(e) => return Reply::refused("403 Forbidden", e),
    };
    if grant.group.as_ref().is_some_and(|g| *g != srv.group) {
        return Reply::refused("403 Forbidden", "the grant is for another group");
    }
    let Some(length) = head.header("upload-length").and_then(|v| v.parse::<u64>().ok()) else {
        return Reply::refused("400 Bad Request", "Upload-Length is required (deferred lengths are not supported)");
    };
    let max = grant.limit(srv.config.http_upload_max_size);
    if length > max {
        return Reply::refused("413 Content Too Large", format!("larger than the {max} bytes allowed"));
    }
    let given = upload_metadata(head.header("upload-metadata").unwrap_or(""));
    let filename =
        given.iter().find(|(k, _)| k == "filename" || k == "name").map(|(_, v)| v.clone()).unwrap_or_default();
    let ext = file_ext(std::path::Path::new(&filename));
    if !grant.allows_ext(&ext) {
        return Reply::refused("415 Unsupported Media Type", format!("extension {ext:?} is not allowed"));
    }
    let head_ = UploadHead { store_path_index: -1, file_size: 0, ext: ext.chars().take(6).collect() };
    let mut empty: &[u8] = &[];
    let mut content = Content::new(&mut empty, 0, srv.body_timer());
    let name = match super::ops::upload(srv, &head_, &mut content, true).await {
        Ok(n) => n,
        Err(e) => return Reply::refused(store_status(e.status), format!("creating it: {:?}", e.status)),
    };
    let expires = crate::timefmt::now_unix() + EXPIRES_SECS;
    let mut meta: Vec<(String, String)> =
        given.into_iter().filter(|(k, _)| !grant.meta.iter().any(|(g, _)| g == k)).collect();
    meta.extend(grant.meta.iter().cloned());
    meta.push((LENGTH_KEY.into(), length.to_string()));
    meta.push((EXPIRES_KEY.into(), expires.to_string()));
    meta.push((OFFSET_KEY.into(), "0".into()));
    if let Err(s) = set_text_metadata(srv, &name, &meta).await {
        let _ = super::ops::delete(srv, name).await;
        return Reply::refused(store_status(s), format!("recording it: {s:?}"));
    }
    Reply::new("201 Created")
        .header("Location", format!("/files/{}", Upload::token(&name, secret)))
        .header("Upload-Expires", http_date(expires))
}

/// `HEAD`: how far the upload is, or its final ID once finished.
async fn status(srv: &Arc<StorageServer>, u: &Upload) -> Reply {
    if let Some(done) = finished(srv, u) {
        return Reply::new("200 OK")
            .header("Upload-Offset", done.1)
            .header("Upload-Length", done.1)
            .header("Fastdfs-File-Id", done.0)
            .header("Cache-Control", "no-store");
    }
    match state(srv, &u.name).await {
        Some((size, length, expires)) => Reply::new("200 OK")
            .header("Upload-Offset", size)
            .header("Upload-Length", length)
            .header("Upload-Expires", http_date(expires))
            .header("Cache-Control", "no-store"),
        None => Reply::refused("404 Not Found", "no such upload"),
    }
}

/// `PATCH`: the body written at `Upload-Offset`, which must be the file's size.
async fn patch(srv: &Arc<StorageServer>, u: &Upload, body: Option<(BodyStream, Framing)>, head: &RequestHead) -> Reply {
    if head.header("content-type") != Some("application/offset+octet-stream") {
        return Reply::refused("415 Unsupported Media Type", "Content-Type: application/offset+octet-stream");
    }
    let (Some(offset), Some(_)) = (head.header("upload-offset").and_then(|v| v.parse::<u64>().ok()), framing(head))
    else {
        return Reply::refused("400 Bad Request", "Upload-Offset and Content-Length (or chunks) are required");
    };
    if let Some(done) = finished(srv, u) {
        return Reply::refused("409 Conflict", "finished").header("Upload-Offset", done.1);
    }
    let Some((size, length, _)) = state(srv, &u.name).await else {
        return Reply::refused("404 Not Found", "no such upload (expired or ended)");
    };
    if offset != size {
        return Reply::refused("409 Conflict", format!("the upload is at {size}")).header("Upload-Offset", size);
    }
    // Never past Upload-Length (`offset` is where the upload is, so at most its length).
    let too_long = || Reply::refused("413 Content Too Large", format!("past Upload-Length {length}"));
    let (mut body, len) = match body {
        None => (Box::new(tokio::io::empty()) as super::http::SizedBody, 0),
        Some((body, framing)) => match sized(srv, body, framing, length.saturating_sub(offset)).await {
            Ok(Some(sized)) => sized,
            Ok(None) => return too_long(),
            Err(e) => return Reply::refused("400 Bad Request", format!("reading it: {e}")),
        },
    };
    let mut content = Content::new(&mut body, len, srv.body_timer());
    // A modify at the stated offset: a PATCH repeated after a lost answer writes the same
    // bytes again instead of adding them twice.
    if let Err(e) = super::ops::append_or_modify(srv, &u.name, Some(offset), &mut content).await {
        return Reply::refused(store_status(e.status), format!("writing it: {:?}", e.status));
    }
    let now = offset + len;
    if let Err(s) = settle(srv, &u.name, now).await {
        return Reply::refused(store_status(s), format!("recording it: {s:?}"));
    }
    let mut reply = Reply::new("204 No Content").header("Upload-Offset", now);
    if now == length {
        match finish(srv, u).await {
            Ok(id) => reply = reply.header("Fastdfs-File-Id", id),
            Err(s) => return Reply::refused(store_status(s), format!("finishing it: {s:?}")),
        }
    }
    reply
}

/// After a whole PATCH up to `offset`: bytes past it (left by a crash in an earlier PATCH) cut
/// off, and `offset` recorded as where the upload is.
async fn settle(srv: &Arc<StorageServer>, name: &str, offset: u64) -> Result<(), Status> {
    let at = srv.paths.locate(name)?;
    if std::fs::metadata(&at.path).map_err(|e| Status::from_io(&e))?.len() > offset {
        let req = crate::protocol::storage::TruncateReq { filename: name.to_owned(), new_size: offset };
        super::ops::truncate(srv, req).await?;
    }
    let mut meta = own_metadata(srv, name).await;
    meta.retain(|(k, _)| k != OFFSET_KEY);
    meta.push((OFFSET_KEY.into(), offset.to_string()));
    set_text_metadata(srv, name, &meta).await
}

/// A file's metadata as text pairs.
async fn own_metadata(srv: &Arc<StorageServer>, name: &str) -> Vec<(String, String)> {
    let raw = super::ops::get_metadata(srv, &srv.group, name).await.unwrap_or_default();
    parse_metadata(&raw)
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The finished upload gets its final name; its ID is remembered for later HEADs.
async fn finish(srv: &Arc<StorageServer>, u: &Upload) -> Result<String, Status> {
    let meta = own_metadata(srv, &u.name).await;
    let final_name = super::ops::regenerate(srv, u.name.clone()).await?;
    let id = format!("{}/{final_name}", srv.group);
    let dir = srv.config.base_path.join("data/tus");
    let record = format!("{id}\n{}\n", u.name);
    let (d, sign) = (dir.clone(), u.sign.clone());
    super::disk::Disk::io(move || {
        std::fs::create_dir_all(&d)?;
        crate::durable::write_atomic(&d, &sign, record.as_bytes())
    })
    .await
    .map_err(|e| Status::from_io(&e))?;
    // The upload's own keys go; what the client and the grant gave stays.
    let kept: Vec<(String, String)> = meta.into_iter().filter(|(k, _)| !OWN_KEYS.contains(&k.as_str())).collect();
    set_text_metadata(srv, &final_name, &kept).await?;
    Ok(id)
}

/// A finished upload's (file ID, size).
fn finished(srv: &StorageServer, u: &Upload) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(srv.config.base_path.join("data/tus").join(&u.sign)).ok()?;
    let id = text.lines().next()?.to_owned();
    let name = id.split_once('/')?.1;
    let size = std::fs::metadata(srv.paths.locate(name).ok()?.path).ok()?.len();
    Some((id, size))
}

/// An unfinished upload's (offset, Upload-Length, expiry).
async fn state(srv: &Arc<StorageServer>, name: &str) -> Option<(u64, u64, i64)> {
    let meta = own_metadata(srv, name).await;
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let offset: u64 = get(OFFSET_KEY)?.parse().ok()?;
    let length: u64 = get(LENGTH_KEY)?.parse().ok()?;
    let expires: i64 = get(EXPIRES_KEY)?.parse().ok()?;
    (expires >= crate::timefmt::now_unix()).then_some((offset, length, expires))
}

/// `Upload-Metadata`: `key base64value` pairs separated by commas.
fn upload_metadata(header: &str) -> Vec<(String, String)> {
    header
        .split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let key = it.next().filter(|k| !k.is_empty())?;
            let value = it
                .next()
                .map_or(Some(Vec::new()), |v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())?;
            Some((key.to_owned(), String::from_utf8_lossy(&value).into_owned()))
        })
        .take(32)
        .collect()
}

fn store_status(s: Status) -> &'static str {
    match s {
        Status::ENOSPC => "507 Insufficient Storage",
        Status::ENOENT => "404 Not Found",
        _ => "500 Internal Server Error",
    }
}

/// At most once an hour (on a request): finished-upload records past their expiry are
/// removed, and so are this storage's unfinished uploads past theirs.
fn sweep(srv: &Arc<StorageServer>) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = crate::timefmt::now_unix();
    if now - LAST.load(Ordering::Relaxed) < 3600 {
        return;
    }
    LAST.store(now, Ordering::Relaxed);
    let s = srv.clone();
    tokio::spawn(async move {
        let scan = s.clone();
        let expired = tokio::task::spawn_blocking(move || {
            let dir = scan.config.base_path.join("data/tus");
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let at = e.metadata().ok().and_then(|m| m.modified().ok()).map(crate::timefmt::unix_secs);
                if at.is_some_and(|t| now - t > EXPIRES_SECS) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let req = ListFilesReq { group: scan.group.clone(), flags: list_flags::METADATA, ..Default::default() };
            let mut names = Vec::new();
            let _ = scan.catalog().each_live(&req, true, |f| {
                if unfinished_and_expired(&f, now) {
                    names.push(f.filename);
                }
                names.len() < 10_000
            });
            names
        })
        .await
        .unwrap_or_default();
        for name in expired {
            tracing::info!("tus: upload {name} expired unfinished; deleted");
            let _ = super::ops::delete(&s, name).await;
        }
    });
}

/// An appender file with this module's expiry in its metadata, past it.
fn unfinished_and_expired(f: &ListedFile, now: i64) -> bool {
    let appender = crate::file_id::RemoteFilename::parse(&f.filename, None)
        .is_ok_and(|n| n.info().file_type == crate::file_id::FileType::Appender);
    let expires = parse_metadata(&f.metadata)
        .into_iter()
        .find(|(k, _)| k == EXPIRES_KEY.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(&v).ok()?.parse::<i64>().ok());
    appender && expires.is_some_and(|e| e < now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_are_signed_and_metadata_decoded() {
        let name = "M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg";
        let token = Upload::token(name, "s");
        let u = Upload::from_token(&token, "s").unwrap();
        assert_eq!(u.name, name);
        assert!(Upload::from_token(&token, "other").is_none());
        let forged = token.replace("wKgB", "wKgC");
        assert!(Upload::from_token(&forged, "s").is_none());
        assert_eq!(
            upload_metadata("filename d29ybGQuanBn,is_confidential"),
            vec![("filename".to_owned(), "world.jpg".to_owned()), ("is_confidential".to_owned(), String::new())]
        );
    }
}
