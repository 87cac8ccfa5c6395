//! Thumbnails on request (#28) with the real nginx + module in front of a replicating trunk
//! pair: a derivative (`<master>_<W>x<H>[_fill].<ext>`, or `?w=&h=&mode=`) is made once by the
//! storage from a JPEG (also a de-duplicated one), PNG (regular and trunk-resident), WebP or GIF master, looks like PIL's
//! Lanczos resize of the master, is a real slave file (file info, replicated, served by the
//! other member's module without being made again); sizes not listed, non-images and bombs
//! are refused and make nothing; eight requests at once for a new one make it once. A client
//! that accepts WebP gets the derivative's WebP variant under the same URL (`Vary: Accept`),
//! made once and stored as a slave of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_e2e::{common_free_port, eventually, get, http, NginxProc, StorageProc, TrackerProc};

const TRUNK_TRACKER: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 64KB\ntrunk_file_size = 4MB\n";

/// Makes the masters and compares a derivative with PIL's own resize of its master.
const PIL: &str = r#"
import math, sys
from PIL import Image, ImageDraw, ImageOps
cmd = sys.argv[1]
if cmd == "gen":
    d = sys.argv[2]
    img = Image.new("RGB", (1200, 800), (30, 60, 90))
    draw = ImageDraw.Draw(img)
    for x in range(0, 1200, 60):
        draw.rectangle([x, 0, x + 30, 800], fill=(x % 256, 80, 255 - x % 256))
    draw.ellipse([300, 200, 900, 600], fill=(250, 200, 40))
    img.save(d + "/master.jpg", quality=92)
    img.resize((600, 400)).save(d + "/master.webp", lossless=True)
    img.resize((300, 200)).convert("P").save(d + "/master.gif")
    png = Image.new("RGBA", (640, 480), (0, 0, 0, 0))
    ImageDraw.Draw(png).ellipse([40, 40, 600, 440], fill=(10, 200, 90, 255))
    png.save(d + "/master.png")
    small = Image.new("RGB", (320, 240), (200, 30, 30))
    ImageDraw.Draw(small).rectangle([80, 60, 240, 180], fill=(20, 20, 220))
    small.save(d + "/slot.png")
    # Stored landscape (600x400) with EXIF orientation 6: shown portrait (400x600).
    rot = Image.new("RGB", (600, 400), (20, 120, 220))
    ImageDraw.Draw(rot).rectangle([0, 0, 150, 400], fill=(255, 0, 0))
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(d + "/rotated.jpg", exif=exif.tobytes(), quality=92)
else:
    master, deriv, mode = sys.argv[2], sys.argv[3], sys.argv[4]
    w, h = int(sys.argv[5]), int(sys.argv[6])
    ref = ImageOps.exif_transpose(Image.open(master)).convert("RGB")
    got = Image.open(deriv).convert("RGB")
    if mode == "fill":
        ref = ImageOps.fit(ref, (w, h), Image.LANCZOS)
    else:
        ref = ref.resize(got.size, Image.LANCZOS)
    def psnr(a, b):
        a, b = a.tobytes(), b.tobytes()
        mse = sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)
        return 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)
    print(got.size[0], got.size[1], round(psnr(ref, got), 2), round(psnr(ref.convert("L"), got.convert("L")), 2))
"#;

/// `/usr/bin/python3` when it has PIL (Debian's python3-pil; ci/test.sh installs it).
fn pil_python() -> Option<PathBuf> {
    let py = PathBuf::from("/usr/bin/python3");
    let ok = Command::new(&py).args(["-c", "import PIL"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

fn run_pil(py: &Path, dir: &Path, args: &[&str]) -> String {
    let script = dir.join("pil.py");
    std::fs::write(&script, PIL).unwrap();
    let out = Command::new(py).arg(&script).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// (width, height, PSNR in dB against PIL's Lanczos resize of the master).
fn compare(py: &Path, dir: &Path, master: &str, derivative: &[u8], mode: &str, size: (u32, u32)) -> (u32, u32, f64) {
    let (w, h, psnr, _) = compare_luma(py, dir, master, derivative, mode, size);
    (w, h, psnr)
}

/// [`compare`], and the PSNR of the luma alone.
fn compare_luma(
    py: &Path,
    dir: &Path,
    master: &str,
    derivative: &[u8],
    mode: &str,
    size: (u32, u32),
) -> (u32, u32, f64, f64) {
    let file = dir.join("derivative");
    std::fs::write(&file, derivative).unwrap();
    let (w, h) = (size.0.to_string(), size.1.to_string());
    let out =
        run_pil(py, dir, &["cmp", &dir.join(master).display().to_string(), &file.display().to_string(), mode, &w, &h]);
    eprintln!("{master} {mode} {size:?}: {out}");
    let v: Vec<&str> = out.split(' ').collect();
    (v[0].parse().unwrap(), v[1].parse().unwrap(), v[2].parse().unwrap(), v[3].parse().unwrap())
}

fn mod_conf(store: &Path, tracker: &str, maker: &str) -> String {
    format!(
        "group_name = group1\nurl_have_group_name = true\nstore_path_count = 1\nstore_path0 = {}\n\
         tracker_server = {tracker}\nresponse_mode = proxy\nthumbnail = true\n\
         thumbnail_sizes = 150x150, 300x300\nthumbnail_modes = fit, fill\nthumbnail_maker = {maker}\n\
         thumbnail_max_source_pixels = 4000000\nthumbnail_webp = true\n",
        store.display()
    )
}

/// The base of a derivative's URL: `/group1/<master without its extension>`.
fn stem(master: &str) -> String {
    format!("/group1/{}", master.rsplit_once('.').unwrap().0)
}

/// How many derivatives a storage has made (its metrics).
fn made(metrics: &str) -> u64 {
    let text = get(metrics, "/metrics");
    let line = String::from_utf8_lossy(&text.body)
        .lines()
        .find(|l| l.starts_with("fastdfs_requests_total{") && l.contains("command=\"ThumbnailMade\""))
        .map(str::to_owned);
    line.and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())).unwrap_or(0.0) as u64
}

async fn upload(c: &Client, to: &str, bytes: &[u8], ext: &str) -> String {
    c.storage.upload(to, UploadKind::Normal, -1, ext, Content::Bytes(bytes)).await.unwrap().filename
}

struct Member {
    _conf: tempfile::TempDir,
    storage: StorageProc,
    nginx: NginxProc,
    metrics: String,
}

async fn member(tracker: &str, ip: &'static str, ports: (u16, u16, u16, u16)) -> Member {
    let (storage_port, http_port, maker_port, metrics_port) = ports;
    let conf_dir = tempfile::tempdir().unwrap();
    let dir = conf_dir.path();
    let maker = format!("{ip}:{maker_port}");
    // The daemon reads the thumbnail keys from the module's file: written first.
    let mod_path = dir.join("mod_fastdfs.conf");
    let base_hint = dir.join("pending");
    std::fs::write(&mod_path, mod_conf(&base_hint, tracker, &maker)).unwrap();
    let conf = format!(
        "port = {storage_port}\nhttp_listen = {maker}\nthumbnail_config = {}\nmetrics_listen = {ip}:{metrics_port}\n\
         check_file_duplicate = 1\n",
        mod_path.display()
    );
    let storage = StorageProc::start(tracker, ip, &conf).await;
    let nginx = NginxProc::start(
        ip,
        http_port,
        &mod_conf(&storage.base(), tracker, &maker),
        "types { image/png png; image/gif gif; image/webp webp; text/html html; }",
    );
    Member { _conf: conf_dir, storage, nginx, metrics: format!("{ip}:{metrics_port}") }
}

#[tokio::test]
async fn derivatives_are_made_once_stored_as_slaves_replicated_and_look_like_pil_s() {
    let Some(py) = pil_python() else {
        eprintln!("SKIPPED: /usr/bin/python3 with PIL (Debian python3-pil) is needed to make and judge the images");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    run_pil(&py, work.path(), &["gen", &work.path().display().to_string()]);
    let read = |n: &str| std::fs::read(work.path().join(n)).unwrap();
    let tracker = TrackerProc::start(TRUNK_TRACKER);
    let ips = ["127.0.0.167", "127.0.0.168"];
    let ports = (common_free_port(&ips), common_free_port(&ips), common_free_port(&ips), common_free_port(&ips));
    let a = member(&tracker.addr(), ips[0], ports).await;
    let b = member(&tracker.addr(), ips[1], ports).await;
    let c = fdfs_e2e::client_for(&tracker.addr());
    let (sa, sb) = (a.storage.addr(), b.storage.addr());

    // A JPEG master, 1200x800: its 300x300 fit is 300x200 and looks like PIL's.
    let jpg = upload(&c, &sa, &read("master.jpg"), "jpg").await;
    let url = format!("{}_300x300.jpg", stem(&jpg));
    let r = get(&a.nginx.addr, &url);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("image/jpeg"));
    let (w, h, psnr) = compare(&py, work.path(), "master.jpg", &r.body, "fit", (300, 300));
    assert_eq!((w, h), (300, 200));
    assert!(psnr >= 30.0, "PSNR against PIL's Lanczos resize: {psnr} dB");
    assert_eq!(made(&a.metrics), 1);
    // A real slave file: file info, downloads, replicated to the member.
    let slave = url.trim_start_matches("/group1/").to_owned();
    let info = c.storage.file_info(&sa, "group1", &slave, 0).await.unwrap();
    assert_eq!(info.file_size, r.body.len() as i64);
    let on_b = eventually(Duration::from_secs(20), "the derivative on the member", || async {
        c.storage.download(&sb, "group1", &slave, 0, 0).await.ok()
    })
    .await;
    assert!(on_b == r.body, "replicated bytes differ");
    // Asked again, here and on the member: served as a file, never made again.
    let again = get(&a.nginx.addr, &url);
    assert!(again.status == 200 && again.body == r.body);
    let there = get(&b.nginx.addr, &url);
    assert!(there.status == 200 && there.body == r.body, "{}", there.status);
    assert_eq!((made(&a.metrics), made(&b.metrics)), (1, 0));

    // A client that accepts WebP (Chromium's Accept for an image): the WebP variant under the
    // same URL, made once, stored as the master's slave `…_300x300.webp`, replicated, and
    // served by the member as a file; a client that does not still gets the JPEG.
    let chromium_accept = [("Accept", "image/avif,image/webp,image/apng,image/*,*/*;q=0.8")];
    let w = http(&a.nginx.addr, "GET", url.as_bytes(), &chromium_accept);
    assert_eq!(w.status, 200, "{}", String::from_utf8_lossy(&w.body));
    assert_eq!((w.header("Content-Type"), w.header("Vary")), (Some("image/webp"), Some("Accept")));
    assert!(w.body.starts_with(b"RIFF") && &w.body[8..12] == b"WEBP");
    // Lossy WebP is always YUV 4:2:0: on this master's saturated 7-pixel colour stripes no
    // encoder reaches 30 dB in RGB (PIL's own WebP of PIL's own resize gets 28.2 dB at quality
    // 80, 28.4 at 90): the luma is held to 30 dB, the colour to that.
    let (ww, wh, psnr, luma) = compare_luma(&py, work.path(), "master.jpg", &w.body, "fit", (300, 300));
    assert_eq!((ww, wh), (300, 200));
    assert!(luma >= 30.0 && psnr >= 28.2, "the WebP variant against PIL's Lanczos resize: {luma} / {psnr} dB");
    assert_eq!(made(&a.metrics), 2);
    let variant = format!("{}_300x300.webp", stem(&jpg)).trim_start_matches("/group1/").to_owned();
    let on_b = eventually(Duration::from_secs(20), "the WebP variant on the member", || async {
        c.storage.download(&sb, "group1", &variant, 0, 0).await.ok()
    })
    .await;
    assert!(on_b == w.body, "replicated WebP bytes differ");
    let there = http(&b.nginx.addr, "GET", url.as_bytes(), &chromium_accept);
    assert!(there.status == 200 && there.body == w.body && there.header("Content-Type") == Some("image/webp"));
    let plain = get(&a.nginx.addr, &url);
    assert!(plain.body == r.body && plain.header("Vary") == Some("Accept"), "without Accept: the JPEG");
    let refused = http(&a.nginx.addr, "GET", url.as_bytes(), &[("Accept", "image/webp;q=0, image/jpeg")]);
    assert_eq!(refused.body, r.body, "q=0 refuses WebP");
    assert_eq!((made(&a.metrics), made(&b.metrics)), (2, 0));

    // Eight requests at once for a new derivative: all get it, it is made once.
    let fill = format!("{}_150x150_fill.jpg", stem(&jpg));
    let answers: Vec<_> = (0..8)
        .map(|_| {
            let (addr, u) = (a.nginx.addr.clone(), fill.clone());
            std::thread::spawn(move || get(&addr, &u))
        })
        .collect();
    let answers: Vec<_> = answers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(answers.iter().all(|r| r.status == 200 && r.body == answers[0].body));
    assert_eq!(made(&a.metrics), 3, "eight requests, one derivative made");
    let (w, h, psnr) = compare(&py, work.path(), "master.jpg", &answers[0].body, "fill", (150, 150));
    assert_eq!((w, h), (150, 150));
    assert!(psnr >= 30.0, "PSNR against PIL's ImageOps.fit: {psnr} dB");

    // The query form names the same stored file as the name form.
    let q = get(&a.nginx.addr, &format!("/group1/{jpg}?w=300&h=300"));
    assert!(q.status == 200 && q.body == r.body, "query form: {}", q.status);

    // A size not listed, or a mode not allowed: 404, nothing stored.
    for bad in [format!("{}_200x200.jpg", stem(&jpg)), format!("/group1/{jpg}?w=300&h=300&mode=crop")] {
        assert_eq!(get(&a.nginx.addr, &bad).status, 404, "{bad}");
    }
    let unlisted = format!("{}_200x200.jpg", stem(&jpg)).trim_start_matches("/group1/").to_owned();
    assert!(c.storage.file_info(&sa, "group1", &unlisted, 0).await.is_err(), "nothing made for a size not listed");
    assert_eq!(made(&a.metrics), 3);

    // PNG (transparent), WebP, GIF and an EXIF-rotated JPEG.
    for (file, ext, box_, want) in [
        ("master.png", "png", 300, (300, 225)),
        ("master.webp", "webp", 150, (150, 100)),
        ("master.gif", "gif", 150, (150, 100)),
        ("rotated.jpg", "jpg", 300, (200, 300)),
    ] {
        let master = upload(&c, &sa, &read(file), ext).await;
        let r = get(&a.nginx.addr, &format!("{}_{box_}x{box_}.{ext}", stem(&master)));
        assert_eq!(r.status, 200, "{file}: {}", String::from_utf8_lossy(&r.body));
        let (w, h, psnr) = compare(&py, work.path(), file, &r.body, "fit", (box_, box_));
        assert_eq!((w, h), want, "{file}");
        assert!(psnr >= 30.0, "{file}: PSNR {psnr} dB");
    }

    // A de-duplicated master (the same bytes again: a link to the first upload's content).
    let twin = upload(&c, &sa, &read("master.jpg"), "jpg").await;
    assert_ne!(twin, jpg);
    let r2 = get(&a.nginx.addr, &format!("{}_300x300.jpg", stem(&twin)));
    assert!(r2.status == 200 && r2.body == r.body, "the twin's derivative: {}", r2.status);

    // A slave the application uploaded itself under a thumbnail's name (tobato's
    // FastDFS_Client does): served untouched, nothing made.
    let png_master = upload(&c, &sa, &read("master.png"), "png").await;
    let own = b"the application's own 150x150 rendition".to_vec();
    let slave =
        c.storage.upload_slave(&sa, &png_master, "_150x150", "png", Content::Bytes(&own)).await.unwrap().filename;
    let before = made(&a.metrics);
    let r = get(&a.nginx.addr, &format!("/group1/{slave}"));
    assert!(r.status == 200 && r.body == own, "the uploaded slave, as it was uploaded");
    assert_eq!(made(&a.metrics), before);

    // A page with three sizes in headless Chromium: each decodes at its size.
    let sizes = [("_150x150.jpg", "150x100"), ("_300x300.jpg", "300x200"), ("_150x150_fill.jpg", "150x150")];
    let imgs: String = sizes
        .iter()
        .enumerate()
        .map(|(i, (suffix, want))| format!("<img id=\"t{i}\" src=\"{}{suffix}\" data-want=\"{want}\">\n", stem(&jpg)))
        .collect();
    let page = format!(
        "<!doctype html><title>thumbnails</title><body>{imgs}<pre id=\"r\">pending</pre><script>\n\
         addEventListener('load', () => {{ document.getElementById('r').textContent = 'DONE ' + \
         [...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight + ':' + i.dataset.want).join(' '); }});\n\
         </script></body>\n"
    );
    let stat = a.nginx.prefix.path().join("static");
    std::fs::create_dir_all(&stat).unwrap();
    std::fs::write(stat.join("thumbs.html"), page).unwrap();
    let page_url = format!("http://{}/static/thumbs.html", a.nginx.addr);
    let out = fdfs_e2e::chromium(&["--dump-dom".into(), page_url.clone()]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = dom.lines().find(|l| l.contains("DONE")).unwrap_or_else(|| panic!("the page did not finish: {dom}"));
    let results = line.split("DONE ").nth(1).unwrap().split("</pre>").next().unwrap();
    for r in results.split(' ') {
        let (got, want) = r.split_once(':').unwrap();
        assert_eq!(got, want, "{line}");
    }
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("thumbnails.png");
    let _ = std::fs::remove_file(&shot);
    fdfs_e2e::chromium(&[format!("--screenshot={}", shot.display()), "--window-size=800,400".into(), page_url]);
    assert!(std::fs::read(&shot).is_ok_and(|b| b.starts_with(b"\x89PNG")), "a screenshot of the page");

    // A master in a trunk slot (small files go into slots once the trunk server is known).
    let small = read("slot.png");
    let in_slot = eventually(Duration::from_secs(30), "an upload into a trunk slot", || async {
        let name = upload(&c, &sa, &small, "png").await;
        (name.len() == 60).then_some(name)
    })
    .await;
    let r = get(&a.nginx.addr, &format!("{}_150x150.png", stem(&in_slot)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(compare(&py, work.path(), "slot.png", &r.body, "fit", (150, 150)).0, 150);

    // Not an image, and a PNG whose header claims 20,000 x 20,000 pixels: refused, nothing kept.
    let text = upload(&c, &sa, b"this is not an image at all, only text", "jpg").await;
    assert_eq!(get(&a.nginx.addr, &format!("{}_150x150.jpg", stem(&text))).status, 415);
    let bomb = upload(&c, &sa, &png_claiming(20_000, 20_000), "png").await;
    assert_eq!(get(&a.nginx.addr, &format!("{}_150x150.png", stem(&bomb))).status, 413);
    let bomb_thumb = format!("{}_150x150.png", stem(&bomb)).trim_start_matches("/group1/").to_owned();
    assert!(c.storage.file_info(&sa, "group1", &bomb_thumb, 0).await.is_err());
    // The worker that proxied all of this is the one that started.
    assert_eq!(a.nginx.worker_pids().len(), 1);
}

/// A PNG whose header says `w` x `h` and whose data is a few bytes: a decompression bomb as
/// far as a decoder that trusts the header knows.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.finalize().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}
