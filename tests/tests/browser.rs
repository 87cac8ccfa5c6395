//! Images in a real browser: PNGs uploaded through the cluster, an HTML page whose `<img>` tags
//! point at them, served by nginx with the module; headless Chromium (Debian's `chromium`)
//! loads the page, and every image must have decoded at the size it was uploaded with. A
//! screenshot is kept in `target/test-artifacts/browser.png`.

use std::path::PathBuf;

use fdfs_core::client::{Content, UploadKind};
use fdfs_e2e::{chromium, common_free_port, Cluster, NginxProc};

/// A PNG of `w`×`h` RGB pixels, zlib with stored (uncompressed) blocks: no image crate needed.
fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&[(x as u8).wrapping_mul(3).wrapping_add(seed), (y as u8).wrapping_mul(5), seed]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push((i + 1 == blocks.len()) as u8);
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + byte as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let chunk = |t: &[u8], d: &[u8]| {
        let mut c = (d.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(t);
        c.extend_from_slice(d);
        c.extend_from_slice(&crc32fast::hash(&[t, d].concat()).to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &z), chunk(b"IEND", b"")].concat()
}

#[tokio::test]
async fn uploaded_images_decode_in_headless_chromium() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let mod_conf =
        format!("group_name = group1\nurl_have_group_name = true\nstore_path0 = {}\n", cl.storages[0].base().display());
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf, "types { image/png png; text/html html; }");
    let c = cl.client();
    let sizes = [(120u32, 80u32), (33, 77), (640, 360), (1, 1)];
    let mut imgs = String::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let id = c.upload(UploadKind::Normal, None, "png", Content::Bytes(&png(w, h, i as u8 * 60))).await.unwrap();
        imgs.push_str(&format!("<img id=\"i{i}\" src=\"/{id}\" data-w=\"{w}\" data-h=\"{h}\">\n"));
    }
    let page = format!(
        "<!doctype html><html><head><title>fastdfs-rs</title></head><body style=\"background:#eee\">\n{imgs}\
         <pre id=\"result\">pending</pre>\n<script>\nwindow.addEventListener('load', () => {{\n\
         const r = [...document.images].map(i => i.id + ':' + i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight + ':' + i.dataset.w + 'x' + i.dataset.h);\n\
         document.getElementById('result').textContent = 'DONE ' + r.join(' ');\n}});\n</script></body></html>\n"
    );
    let static_dir = ngx.prefix.path().join("static");
    std::fs::create_dir_all(&static_dir).unwrap();
    std::fs::write(static_dir.join("index.html"), page).unwrap();
    let url = format!("http://{}/static/index.html", ngx.addr);

    let out = chromium(&["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let line = dom
        .lines()
        .find(|l| l.contains("DONE"))
        .unwrap_or_else(|| panic!("page did not finish: {dom}\n{}", String::from_utf8_lossy(&out.stderr)));
    let results: Vec<&str> = line.split("DONE ").nth(1).unwrap().trim_end_matches("</pre>").split(' ').collect();
    assert_eq!(results.len(), sizes.len(), "{line}");
    for r in results {
        let parts: Vec<&str> = r.split(':').collect();
        assert_eq!(parts[1], "true", "{r}: not loaded");
        assert_eq!(parts[2], parts[3], "{r}: decoded size differs from the uploaded one");
        assert_ne!(parts[2], "0x0", "{r}: did not decode");
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("browser.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[format!("--screenshot={}", shot.display()), "--window-size=1000,600".into(), url]);
    let bytes =
        std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 1000, "screenshot is a PNG");
}
