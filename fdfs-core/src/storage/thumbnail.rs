//! Thumbnails made on request (`thumbnail_config`; asked through `http_listen`, see `http.rs`). The
//! nginx module serves a derivative (`<master>_<W>x<H>.<ext>`, see [`crate::http::Derivative`])
//! like any file once it exists; when it does not and its master is here, the module proxies the
//! request to this daemon's `GET /thumbnail/<group>/<name>`, which makes it once: the master read
//! (regular file or trunk slot), decoded within the source limits, scaled, encoded, and stored as a
//! slave file of the master through the same path as UPLOAD_SLAVE_FILE (binlog, replication to the
//! group, de-duplication), then answered. Making runs on the blocking pool, at most
//! `thumbnail_concurrency` at once, and under the derivative's file lock, so two requests for the
//! same new derivative make it once. Nothing is stored unless it was made whole.
//!
//! With `thumbnail_webp`, `?as=webp` asks for a derivative's WebP variant (the same box as the
//! master's slave `…_<W>x<H>.webp`), which the module serves to clients that accept WebP.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use image::codecs::{gif::GifEncoder, jpeg::JpegEncoder, png::PngEncoder};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits};

use super::content::Content;
use super::located::open_located;
use super::StorageServer;
use crate::config::{FitMode, ThumbnailConfig};
use crate::http::Derivative;
use crate::protocol::storage::SlaveUploadHead;
use crate::protocol::Status;
use crate::server::http::{write_reply, write_reply_with, RequestHead};

/// Why a derivative was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("not a thumbnail name, or a box or mode the settings do not allow")]
    NotAllowed,
    #[error("its master is not on this storage")]
    NoMaster,
    #[error("the master is larger than the thumbnail source limits")]
    TooLarge,
    #[error("the master is not an image that can be read: {0}")]
    NotAnImage(String),
    #[error("too many thumbnails in the making")]
    Busy,
    #[error("storing it: {0:?}")]
    Store(Status),
}

impl ThumbError {
    fn http_status(&self) -> &'static str {
        match self {
            ThumbError::NotAllowed | ThumbError::NoMaster => "404 Not Found",
            ThumbError::TooLarge => "413 Content Too Large",
            ThumbError::NotAnImage(_) => "415 Unsupported Media Type",
            ThumbError::Busy => "503 Service Unavailable",
            ThumbError::Store(_) => "500 Internal Server Error",
        }
    }
}

/// What makes derivatives: the settings and the permits that bound how many at once.
#[derive(Debug)]
pub struct Maker {
    settings: ThumbnailConfig,
    permits: tokio::sync::Semaphore,
}

impl Maker {
    pub fn new(settings: ThumbnailConfig) -> Self {
        let permits = tokio::sync::Semaphore::new(settings.concurrency);
        Self { settings, permits }
    }
}

/// `GET|HEAD /thumbnail/<group>/<name>[?as=webp]`: the derivative (or its WebP variant), made
/// now if it is not yet. `keep`:
/// the connection may serve another request after a success. Whether it was one.
pub(super) async fn answer(
    srv: &Arc<StorageServer>,
    sock: &mut tokio::net::TcpStream,
    head: &RequestHead,
    keep: bool,
) -> std::io::Result<bool> {
    let head_only = head.method == "HEAD";
    let Some((group, name)) = head.path().strip_prefix("/thumbnail/").and_then(|p| p.split_once('/')) else {
        let what = b"/thumbnail/<group>/<name>\n";
        write_reply(sock, "404 Not Found", "text/plain", what, head_only, false).await?;
        return Ok(false);
    };
    let started = Instant::now();
    let webp = crate::http::parse_args(head.query()).get("as").is_some_and(|v| v == "webp");
    match thumbnail(srv, group, name, webp).await {
        Ok((bytes, made, name)) => {
            let what = if made { "ThumbnailMade" } else { "ThumbnailServed" };
            srv.metrics.request(what, true, started.elapsed());
            let mut headers = vec![("Content-Type", content_type(&name).to_owned())];
            // The module asks for the variant the client's Accept takes, under one URL.
            if srv.thumbnails.as_ref().is_some_and(|m| m.settings.webp) {
                headers.push(("Vary", "Accept".to_owned()));
            }
            let body = (!head_only).then_some(&bytes[..]);
            write_reply_with(sock, "200 OK", &headers, body, bytes.len(), keep).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!("thumbnail {group}/{name}: {e}");
            srv.metrics.request("ThumbnailRefused", false, started.elapsed());
            let why = format!("{e}\n");
            write_reply(sock, e.http_status(), "text/plain", why.as_bytes(), head_only, false).await?;
            Ok(false)
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "application/octet-stream",
    }
}

/// The derivative `name` of `group` (`webp`: its WebP variant): its bytes, whether this call
/// made it, and its name.
pub async fn thumbnail(
    srv: &Arc<StorageServer>,
    group: &str,
    name: &str,
    webp: bool,
) -> Result<(Vec<u8>, bool, String), ThumbError> {
    let Some(maker) = srv.thumbnails.as_ref() else { return Err(ThumbError::NotAllowed) };
    srv.check_group(group).map_err(|_| ThumbError::NotAllowed)?;
    let mut d =
        Derivative::parse(name).filter(|d| maker.settings.allows(d.size, d.mode)).ok_or(ThumbError::NotAllowed)?;
    if webp {
        // A WebP master's derivative is its own variant.
        if !maker.settings.webp {
            return Err(ThumbError::NotAllowed);
        }
        d = d.as_webp().unwrap_or(d);
    }
    let name = d.name.clone();
    let at = srv.paths.locate(&d.name).map_err(|_| ThumbError::NotAllowed)?;
    // Made by a task of its own, which answers as soon as the bytes are there and stores them
    // after (still holding the derivative's lock, so a second request finds them stored): the
    // client does not wait for the store's sync, and a client that leaves does not stop it.
    let (answer, made) = tokio::sync::oneshot::channel();
    let s = srv.clone();
    tokio::spawn(async move { make(&s, d, at.path, answer).await });
    made.await.unwrap_or(Err(ThumbError::Busy)).map(|(bytes, made)| (bytes, made, name))
}

/// Makes and stores the derivative `d` (its file at `path`) unless it is there; its bytes go
/// to `answer` before it is stored.
async fn make(
    srv: &Arc<StorageServer>,
    d: Derivative,
    path: std::path::PathBuf,
    answer: tokio::sync::oneshot::Sender<Result<(Vec<u8>, bool), ThumbError>>,
) {
    let Some(maker) = srv.thumbnails.as_ref() else { return };
    // One maker per derivative: a second request waits here, then finds it made.
    let _lock = srv.lock_file(&path).await;
    let made = async {
        // Made meanwhile (or uploaded: the module serves those itself; this is the race).
        if let Some(bytes) = read_whole(srv, &d.name, maker.settings.max_source_bytes).await? {
            return Ok((bytes, false));
        }
        let _permit = tokio::time::timeout(srv.config.network_timeout, maker.permits.acquire())
            .await
            .map_err(|_| ThumbError::Busy)?
            .map_err(|_| ThumbError::Busy)?;
        let source = read_whole(srv, &d.master, maker.settings.max_source_bytes).await?.ok_or(ThumbError::NoMaster)?;
        let (settings, job) = (maker.settings.clone(), d.clone());
        let made = tokio::task::spawn_blocking(move || render(&source, &job, &settings))
            .await
            .map_err(|e| ThumbError::NotAnImage(format!("the decoder failed: {e}")))??;
        Ok((made, true))
    }
    .await;
    let stored = match &made {
        Ok((bytes, true)) => Some(bytes.clone()),
        _ => None,
    };
    let _ = answer.send(made);
    if let Some(bytes) = stored {
        // Not stored: served all the same, and made again on the next request.
        if let Err(e) = store(srv, &d, &bytes).await {
            tracing::warn!("thumbnail {}: made and served, not stored: {e}", d.name);
        }
    }
}

/// The whole content of `name` (`None` when it is not here), refused when over `limit` bytes.
async fn read_whole(srv: &Arc<StorageServer>, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ThumbError> {
    let Ok(at) = srv.paths.locate(name) else { return Ok(None) };
    let opened = match open_located(&srv.paths, at).await {
        Ok(o) => o,
        Err(Status::ENOENT | Status::EISDIR) => return Ok(None),
        Err(s) => return Err(ThumbError::Store(s)),
    };
    if opened.size > limit {
        return Err(ThumbError::TooLarge);
    }
    let read = tokio::task::spawn_blocking(move || {
        let mut bytes = vec![0u8; opened.size as usize];
        std::os::unix::fs::FileExt::read_exact_at(&opened.file, &mut bytes, opened.offset).map(|_| bytes)
    });
    match read.await {
        Ok(Ok(bytes)) => Ok(Some(bytes)),
        _ => Err(ThumbError::Store(Status::EIO)),
    }
}

/// Stores `bytes` as the master's slave file, as UPLOAD_SLAVE_FILE would.
async fn store(srv: &Arc<StorageServer>, d: &Derivative, bytes: &[u8]) -> Result<(), ThumbError> {
    let head = SlaveUploadHead {
        master_filename: d.master.clone(),
        file_size: bytes.len() as u64,
        prefix: Derivative::prefix(d.size, d.mode),
        ext: d.name_ext().to_owned(),
    };
    let mut src = bytes;
    let mut content = Content::new(&mut src, bytes.len() as u64, srv.body_timer());
    match super::ops::upload_slave(srv, &head, &mut content).await {
        Ok(name) if name == d.name => Ok(()),
        Ok(other) => {
            tracing::error!("thumbnail {} stored as {other}", d.name);
            Err(ThumbError::Store(Status::EIO))
        }
        // Replicated or uploaded meanwhile: the same name, served as it is.
        Err(e) if e.status == Status::EEXIST => Ok(()),
        Err(e) if e.status == Status::ENOENT => Err(ThumbError::NoMaster),
        Err(e) => Err(ThumbError::Store(e.status)),
    }
}

/// Decodes `source` (within the limits), applies its EXIF orientation, fits it to the box and
/// encodes it in the format of the derivative's extension. Blocking, CPU-bound.
pub fn render(source: &[u8], d: &Derivative, settings: &ThumbnailConfig) -> Result<Vec<u8>, ThumbError> {
    let bad = |e: image::ImageError| ThumbError::NotAnImage(e.to_string());
    let reader = || {
        ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|e| ThumbError::NotAnImage(e.to_string()))
    };
    // The size from the header first: a bomb is refused before anything is allocated for it.
    let (w, h) = reader()?.into_dimensions().map_err(bad)?;
    if u64::from(w) * u64::from(h) > settings.max_source_pixels {
        return Err(ThumbError::TooLarge);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(settings.max_source_pixels * 8 + (64 << 20));
    let mut reader = reader()?;
    let jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    // Decoders fill a JPEG cut short with grey and at most warn: one without its end marker
    // (FF D9, which entropy-coded data cannot hold: an FF there is stuffed or a restart
    // marker) is refused. Looked for in the last KiB, which may hold bytes after it.
    if jpeg && !source[source.len().saturating_sub(1024)..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(ThumbError::NotAnImage("a JPEG cut short (no end marker)".into()));
    }
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let icc = decoder.icc_profile().ok().flatten();
    // A JPEG much larger than its derivative is decoded scaled down (the IDCT at 1/2, 1/4 or
    // 1/8, as libjpeg's shrink-on-load that vipsthumbnail uses): a fraction of the work, and
    // still at least the derivative's size, so the final resize filters from there.
    let shrunk = if jpeg { needed((w, h), d, orientation).and_then(|want| shrunk_jpeg(source, want)) } else { None };
    let mut img = match shrunk {
        Some(img) => img,
        None => DynamicImage::from_decoder(decoder).map_err(bad)?,
    };
    img.apply_orientation(orientation);
    let out = fit(&img, d.size, d.mode);
    encode(&out, &d.ext(), settings, icc, is_lossless_webp(source)).map_err(bad)
}

/// Whether `source` is a WebP image in the lossless format (every frame `VP8L`): its
/// derivatives stay lossless, where a WebP variant of a JPEG, PNG or GIF is lossy.
fn is_lossless_webp(source: &[u8]) -> bool {
    image_webp::WebPDecoder::new(Cursor::new(source)).is_ok_and(|mut d| !d.is_lossy())
}

/// The stored size a source of stored size `(w, h)` needs to be decoded at for `d`: what the
/// derivative takes of it (the decoder rounds up to its next scale, and the resize after
/// filters from there, as vipsthumbnail's shrink-on-load does); `None` when that is more than
/// half of it.
fn needed((w, h): (u32, u32), d: &Derivative, orientation: image::metadata::Orientation) -> Option<(u32, u32)> {
    use image::metadata::Orientation::*;
    let turned = matches!(orientation, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH);
    // The box in stored orientation.
    let (bw, bh) = if turned { (d.size.1, d.size.0) } else { d.size };
    let (sx, sy) = (f64::from(bw) / f64::from(w), f64::from(bh) / f64::from(h));
    let scale = match d.mode {
        FitMode::Fit => sx.min(sy),
        FitMode::Fill => sx.max(sy),
        FitMode::Crop => return None,
    };
    (scale < 0.5).then(|| ((f64::from(w) * scale).ceil() as u32, (f64::from(h) * scale).ceil() as u32))
}

/// A JPEG decoded at the smallest IDCT scale (1/8, 1/4 or 1/2) that is at least `want`, by
/// libjpeg-turbo; `None` when no such scale is smaller than the source or for what is left to
/// the full decode to decide: colour spaces it does not turn into RGB (CMYK), any error.
fn shrunk_jpeg(source: &[u8], (ww, wh): (u32, u32)) -> Option<DynamicImage> {
    // libjpeg reports an error by unwinding (the mozjpeg crate's design): caught here, it is
    // a JPEG the full decode then refuses with its reason.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Option<DynamicImage>> {
        let mut d = mozjpeg::Decompress::new_mem(source)?;
        let (w, h) = (d.width() as u64, d.height() as u64);
        let fits = |n: u64| w * n / 8 >= u64::from(ww) && h * n / 8 >= u64::from(wh);
        let Some(n) = [1u8, 2, 4].into_iter().find(|n| fits(u64::from(*n))) else { return Ok(None) };
        d.scale(n);
        if d.color_space() == mozjpeg::ColorSpace::JCS_GRAYSCALE {
            let mut img = d.grayscale()?;
            let (w, h) = (img.width() as u32, img.height() as u32);
            let pixels: Vec<u8> = img.read_scanlines()?;
            img.finish()?;
            Ok(image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8))
        } else {
            let mut img = d.rgb()?;
            let (w, h) = (img.width() as u32, img.height() as u32);
            let pixels: Vec<[u8; 3]> = img.read_scanlines()?;
            img.finish()?;
            Ok(image::RgbImage::from_raw(w, h, pixels.concat()).map(DynamicImage::ImageRgb8))
        }
    });
    decoded.ok()?.ok()?
}

/// `img` fitted to the box by `mode`, never enlarged.
fn fit(img: &DynamicImage, (bw, bh): (u32, u32), mode: FitMode) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    match mode {
        FitMode::Fit if w <= bw && h <= bh => img.clone(),
        FitMode::Fit => img.resize(bw, bh, FilterType::Lanczos3),
        // As PIL's ImageOps.fit and nginx's `image_filter crop`: the middle of the source at
        // the box's aspect, then scaled to the box.
        FitMode::Fill if w >= bw && h >= bh => {
            let scale = (f64::from(w) / f64::from(bw)).min(f64::from(h) / f64::from(bh));
            let (cw, ch) =
                (((f64::from(bw) * scale).round() as u32).min(w), ((f64::from(bh) * scale).round() as u32).min(h));
            img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch).resize_exact(bw, bh, FilterType::Lanczos3)
        }
        FitMode::Fill | FitMode::Crop => {
            let (cw, ch) = (bw.min(w), bh.min(h));
            img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch)
        }
    }
}

/// `img` encoded as `ext`; `lossless`: WebP without loss (a lossless master's derivative).
fn encode(
    img: &DynamicImage,
    ext: &str,
    settings: &ThumbnailConfig,
    icc: Option<Vec<u8>>,
    lossless: bool,
) -> image::ImageResult<Vec<u8>> {
    let mut out = Vec::new();
    match ext {
        "jpg" | "jpeg" => {
            let mut e = JpegEncoder::new_with_quality(&mut out, settings.jpeg_quality);
            if let Some(p) = icc {
                let _ = e.set_icc_profile(p);
            }
            // JPEG has no alpha: what was transparent is composed on black, as PIL does.
            DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(e)?;
        }
        "png" => {
            let mut e = PngEncoder::new(&mut out);
            if let Some(p) = icc {
                let _ = e.set_icc_profile(p);
            }
            img.write_with_encoder(e)?;
        }
        "webp" => out = webp(img, (settings.webp_quality, lossless), icc.as_deref())?,
        "gif" => {
            let mut e = GifEncoder::new(&mut out);
            e.encode_frame(image::Frame::new(img.to_rgba8()))?;
        }
        other => {
            return Err(image::ImageError::Unsupported(image::error::UnsupportedError::from_format_and_kind(
                image::error::ImageFormatHint::Name(other.to_owned()),
                image::error::UnsupportedErrorKind::Format(image::error::ImageFormatHint::Name(other.to_owned())),
            )))
        }
    }
    Ok(out)
}

/// `img` as WebP by libwebp, lossy at `quality` or lossless (alpha kept where there is any),
/// with the colour profile.
fn webp(img: &DynamicImage, (quality, lossless): (u8, bool), icc: Option<&[u8]>) -> image::ImageResult<Vec<u8>> {
    let failed = |e: String| {
        image::ImageError::Encoding(image::error::EncodingError::new(
            image::error::ImageFormatHint::Exact(image::ImageFormat::WebP),
            format!("libwebp: {e}"),
        ))
    };
    let mut config = webp::WebPConfig::new().map_err(|()| failed("no configuration".into()))?;
    config.lossless = i32::from(lossless);
    config.alpha_compression = i32::from(!lossless);
    // For lossless, quality is effort, not fidelity: libwebp's default.
    config.quality = if lossless { 75.0 } else { f32::from(quality) };
    // Lossless is exact: the colour under transparent pixels too.
    config.exact = i32::from(lossless);
    // The RGB to YUV 4:2:0 conversion that keeps colour edges (a thumbnail is mostly edges):
    // 29.0 to 29.75 dB (RGB PSNR) on the e2e test's striped master at quality 80.
    config.use_sharp_yuv = 1;
    let (w, h) = (img.width(), img.height());
    let encoded = if img.color().has_alpha() {
        let rgba = img.to_rgba8();
        webp::Encoder::from_rgba(rgba.as_raw(), w, h).encode_advanced(&config)
    } else {
        let rgb = img.to_rgb8();
        webp::Encoder::from_rgb(rgb.as_raw(), w, h).encode_advanced(&config)
    };
    let encoded = encoded.map_err(|e| failed(format!("{e:?}")))?;
    Ok(match icc {
        Some(icc) => {
            with_icc_profile(&encoded, icc, (w, h), img.color().has_alpha()).unwrap_or_else(|| encoded.to_vec())
        }
        None => encoded.to_vec(),
    })
}

/// A WebP file from libwebp with an `ICCP` chunk added, in the extended layout the WebP
/// container specification sets (`VP8X` first, with its ICC flag, then `ICCP`, then the
/// rest): libwebp's one-call encoder writes none. `None` when `webp` is not laid out as
/// libwebp lays it out.
fn with_icc_profile(webp: &[u8], icc: &[u8], (w, h): (u32, u32), alpha: bool) -> Option<Vec<u8>> {
    const ICC_FLAG: u8 = 0x20;
    const ALPHA_FLAG: u8 = 0x10;
    if webp.len() < 20 || &webp[..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return None;
    }
    let chunk = |fourcc: &[u8], payload: &[u8]| {
        let mut c = Vec::with_capacity(payload.len() + 9);
        c.extend_from_slice(fourcc);
        c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        c.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let body = &webp[12..];
    let (vp8x, rest) = if &body[..4] == b"VP8X" {
        let len = u32::from_le_bytes(body[4..8].try_into().ok()?) as usize;
        let mut payload = body.get(8..8 + len)?.to_vec();
        *payload.first_mut()? |= ICC_FLAG;
        (chunk(b"VP8X", &payload), body.get(8 + len + len % 2..)?)
    } else {
        // The simple layout: one VP8 (or VP8L, whose alpha is in its bitstream: the flag says
        // so) chunk, the canvas its size.
        let flags = if alpha { ICC_FLAG | ALPHA_FLAG } else { ICC_FLAG };
        let mut payload = vec![flags, 0, 0, 0];
        payload.extend_from_slice(&w.checked_sub(1)?.to_le_bytes()[..3]);
        payload.extend_from_slice(&h.checked_sub(1)?.to_le_bytes()[..3]);
        (chunk(b"VP8X", &payload), body)
    };
    let iccp = chunk(b"ICCP", icc);
    let size = 4 + vp8x.len() + iccp.len() + rest.len();
    let mut out = Vec::with_capacity(size + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(size).ok()?.to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&vp8x);
    out.extend_from_slice(&iccp);
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527";

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img).write_with_encoder(PngEncoder::new(&mut out)).unwrap();
        out
    }

    fn settings() -> ThumbnailConfig {
        ThumbnailConfig { enabled: true, sizes: vec![(100, 100)], max_source_pixels: 1_000_000, ..Default::default() }
    }

    fn dims(bytes: &[u8]) -> (u32, u32) {
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().unwrap().into_dimensions().unwrap()
    }

    #[test]
    fn each_mode_fits_the_box_and_never_enlarges() {
        let source = png(400, 200);
        let made = |mode, ext: &str| {
            let d = Derivative::of(&format!("{MASTER}.{ext}"), (100, 100), mode).unwrap();
            render(&source, &d, &settings()).unwrap()
        };
        assert_eq!(dims(&made(FitMode::Fit, "png")), (100, 50));
        assert_eq!(dims(&made(FitMode::Fill, "jpg")), (100, 100));
        assert_eq!(dims(&made(FitMode::Crop, "webp")), (100, 100));
        assert_eq!(dims(&made(FitMode::Fit, "gif")), (100, 50));
        let small = png(60, 30);
        let d = Derivative::of(&format!("{MASTER}.png"), (100, 100), FitMode::Fit).unwrap();
        assert_eq!(dims(&render(&small, &d, &settings()).unwrap()), (60, 30), "never enlarged");
    }

    #[test]
    fn webp_is_lossy_but_for_a_lossless_master_and_keeps_the_colour_profile() {
        let profile = b"a colour profile of odd length".to_vec();
        let photo =
            image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 60]));
        let mut jpeg = Vec::new();
        let mut e = JpegEncoder::new_with_quality(&mut jpeg, 90);
        e.set_icc_profile(profile.clone()).unwrap();
        DynamicImage::ImageRgb8(photo).write_with_encoder(e).unwrap();
        let d = Derivative::of(&format!("{MASTER}.jpg"), (100, 100), FitMode::Fit).unwrap().as_webp().unwrap();
        let made = render(&jpeg, &d, &settings()).unwrap();
        let read = |bytes: &[u8]| {
            let mut dec =
                ImageReader::new(Cursor::new(bytes.to_vec())).with_guessed_format().unwrap().into_decoder().unwrap();
            let icc = dec.icc_profile().unwrap();
            (DynamicImage::from_decoder(dec).unwrap(), icc)
        };
        let (img, icc) = read(&made);
        assert_eq!((img.width(), img.height(), icc), (100, 67, Some(profile.clone())));
        assert_eq!(&made[12..16], b"VP8X");
        // With alpha, libwebp writes the extended layout itself: the profile joins it.
        let clear = image::RgbaImage::from_fn(120, 80, |x, _| image::Rgba([200, 10, 10, (x * 2) as u8]));
        let made = webp(&DynamicImage::ImageRgba8(clear.clone()), (80, false), Some(&profile)).unwrap();
        let (img, icc) = read(&made);
        assert_eq!((img.width(), img.height(), img.color().has_alpha(), icc), (120, 80, true, Some(profile)));
        assert_eq!(u32::from_le_bytes(made[4..8].try_into().unwrap()) as usize, made.len() - 8, "RIFF size");
        assert!(with_icc_profile(b"not a webp file at all", b"p", (1, 1), false).is_none());
        // A lossless master's derivative stays lossless: the same pixels back.
        let lossless = webp(&DynamicImage::ImageRgba8(clear.clone()), (80, true), None).unwrap();
        assert!(is_lossless_webp(&lossless) && !is_lossless_webp(&made));
        // A chunk length that points past the end (a hostile master) ends the walk.
        let mut bogus = b"RIFF\0\0\0\0WEBPXXXX\xff\xff\xff\xff".to_vec();
        bogus.extend_from_slice(b"VP8L");
        assert!(!is_lossless_webp(&bogus) && !is_lossless_webp(b"RIFF"));
        assert_eq!(read(&lossless).0.to_rgba8(), clear);
        // With a profile too: the simple VP8L layout made extended, its alpha flagged.
        let with_profile = webp(&DynamicImage::ImageRgba8(clear.clone()), (80, true), Some(b"p")).unwrap();
        assert_eq!(with_profile[20] & 0x30, 0x30, "ICC and alpha flags");
        assert!(is_lossless_webp(&with_profile));
        assert_eq!(read(&with_profile), (DynamicImage::ImageRgba8(clear.clone()), Some(b"p".to_vec())));
    }

    #[test]
    fn bombs_truncated_files_and_non_images_are_refused() {
        let d = Derivative::of(&format!("{MASTER}.png"), (100, 100), FitMode::Fit).unwrap();
        // 2,000 x 1,000 pixels is over this limit of 1,000,000: refused from the header.
        assert!(matches!(render(&png(2000, 1000), &d, &settings()), Err(ThumbError::TooLarge)));
        let whole = png(400, 200);
        assert!(matches!(render(&whole[..whole.len() / 2], &d, &settings()), Err(ThumbError::NotAnImage(_))));
        assert!(matches!(render(b"not an image at all", &d, &settings()), Err(ThumbError::NotAnImage(_))));
    }

    #[test]
    fn a_large_jpeg_is_decoded_scaled_and_a_damaged_one_is_refused_not_crashed_on() {
        let img = image::RgbImage::from_fn(960, 640, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(img).write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 90)).unwrap();
        // 960x640 for a 100x100 box: libjpeg decodes it at 1/8, 120x80, which fits the box.
        assert_eq!(shrunk_jpeg(&jpeg, (100, 67)).map(|i| (i.width(), i.height())), Some((120, 80)));
        let d = Derivative::of(&format!("{MASTER}.jpg"), (100, 100), FitMode::Fit).unwrap();
        assert_eq!(dims(&render(&jpeg, &d, &settings()).unwrap()), (100, 67));
        // Cut short (no end marker): refused.
        assert!(matches!(render(&jpeg[..jpeg.len() / 2], &d, &settings()), Err(ThumbError::NotAnImage(_))));
        // A broken header with the end marker: libjpeg's error is caught, not a crash.
        let mut broken = jpeg.clone();
        broken[2..40].fill(0xFF);
        assert!(shrunk_jpeg(&broken, (100, 67)).is_none());
        assert!(render(&broken, &d, &settings()).is_err());
    }
}
