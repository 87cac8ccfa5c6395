#!/usr/bin/env bash
# One command to a running fastdfs-rs: tracker + storage + nginx with the module on loopback,
# configured from the nginx-conf/ samples, serving an uploaded sample image.
#   ci/quickstart.sh          build (release), (re)start everything, upload, print the URL
#   ci/quickstart.sh stop     stop everything
# Data and configs live in ./run (kept between runs). Ports: QS_TRACKER_PORT (22122),
# QS_STORAGE_PORT (23000), QS_HTTP_PORT (8888), QS_MAKER_PORT (8089: the storage's thumbnail maker).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run=$root/run
bin=$root/target/release
tport=${QS_TRACKER_PORT:-22122}
sport=${QS_STORAGE_PORT:-23000}
hport=${QS_HTTP_PORT:-8888}
mport=${QS_MAKER_PORT:-8089}

nginx_bin() { ls -t "$root"/target/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1; }

stop_all() {
  local n; n=$(nginx_bin)
  if [[ -n $n && -f $run/nginx/logs/nginx.pid ]]; then "$n" -p "$run/nginx" -c conf/nginx.conf -s stop 2>/dev/null || true; fi
  [[ -f $run/storage.conf ]] && "$bin/fdfs_storaged" "$run/storage.conf" stop 2>/dev/null || true
  [[ -f $run/tracker.conf ]] && "$bin/fdfs_trackerd" "$run/tracker.conf" stop 2>/dev/null || true
  sleep 0.3
}

if [[ ${1:-} == stop ]]; then
  stop_all
  echo "stopped (data kept in $run)"
  exit 0
fi

# shellcheck source=ci/lib.sh
source ci/lib.sh
ensure_apt_packages "${BUILD_PACKAGES[@]}"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
echo "building (release)..."
cargo build --release --locked -q -p fdfs-core --bins
cargo build --release --locked -q -p ngx-fastdfs
nginx=$(nginx_bin)

stop_all
mkdir -p "$run/tracker" "$run/storage" "$run/nginx/conf" "$run/nginx/logs" "$run/nginx/html"
# The secret HTTP upload grants are signed with, made once per run directory.
[[ -s $run/upload.secret ]] || od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$run/upload.secret"
secret=$(cat "$run/upload.secret")
# The samples, with paths and ports of this run.
sed -e "s#^base_path = .*#base_path = $run/tracker#" -e "s#^port = .*#port = $tport#" \
    -e "s#^bind_addr =.*#bind_addr = 127.0.0.1#" -e "s#^reserved_storage_space = .*#reserved_storage_space = 1GB#" \
    nginx-conf/tracker.conf > "$run/tracker.conf"
sed -e "s#^base_path = .*#base_path = $run/storage#" -e "s#^store_path0 = .*#store_path0 = $run/storage#" \
    -e "s#^port = .*#port = $sport#" -e "s#^bind_addr =.*#bind_addr = 127.0.0.1#" \
    -e "s#^tracker_server = .*#tracker_server = 127.0.0.1:$tport#" -e "s#^heart_beat_interval = .*#heart_beat_interval = 2#" \
    -e "s#^stat_report_interval = .*#stat_report_interval = 2#" \
    -e "s#^http_listen =.*#http_listen = 127.0.0.1:$mport#" \
    -e "s#^thumbnail_config =.*#thumbnail_config = $run/nginx/conf/mod_fastdfs.conf#" \
    -e "s#^http_upload_secret =.*#http_upload_secret = $secret#" \
    nginx-conf/storage.conf > "$run/storage.conf"
sed -e "s#^tracker_server = .*#tracker_server = 127.0.0.1:$tport#" nginx-conf/client.conf > "$run/client.conf"
sed -e "s#^store_path0 = .*#store_path0 = $run/storage#" -e "s#^tracker_server = .*#tracker_server = 127.0.0.1:$tport#" \
    -e "s#^storage_server_port = .*#storage_server_port = $sport#" -e "s#^thumbnail = .*#thumbnail = true#" \
    -e "s#^thumbnail_webp = .*#thumbnail_webp = true#" -e "s#^thumbnail_maker = .*#thumbnail_maker = 127.0.0.1:$mport#" \
    nginx-conf/mod_fastdfs.conf > "$run/nginx/conf/mod_fastdfs.conf"
cp nginx-conf/http.conf nginx-conf/mime.types "$run/nginx/conf/"
user=""; [[ $(id -u) -eq 0 ]] && user="user root;"
cat > "$run/nginx/conf/nginx.conf" <<CONF
load_module $bin/libngx_fastdfs.so;
$user
worker_processes 1;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
  types { image/png png; image/jpeg jpg jpeg; text/html html; }
  default_type application/octet-stream;
  sendfile on;
  access_log off;
  fastdfs_config $run/nginx/conf/mod_fastdfs.conf;
  upstream fastdfs_storage { server 127.0.0.1:$mport; keepalive 32; }
  server {
    listen 127.0.0.1:$hport;
    location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ { ngx_fastdfs_module; }
    location @fastdfs_proxy { proxy_pass \$fastdfs_proxy_url; proxy_connect_timeout 2s; proxy_send_timeout 5s; proxy_read_timeout 10s; }
    location = /upload { proxy_pass http://fastdfs_storage; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_request_buffering off; client_max_body_size 1g; proxy_read_timeout 60s; }
    location /files/ { proxy_pass http://fastdfs_storage; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_request_buffering off; client_max_body_size 0; proxy_read_timeout 60s; }
    location / { root $run/nginx/html; }
  }
}
CONF

"$bin/fdfs_trackerd" "$run/tracker.conf" start
"$bin/fdfs_storaged" "$run/storage.conf" start
"$nginx" -p "$run/nginx" -c conf/nginx.conf
for _ in $(seq 100); do
  # Read whole first: grep -q closing the pipe early would make the tool exit 141 (pipefail).
  out=$("$bin/fdfs_monitor" "$run/client.conf" 2>/dev/null || true)
  grep -q ' ACTIVE' <<<"$out" && break
  sleep 0.2
done

# A sample image: a 320x200 PNG gradient, made here so nothing is downloaded.
python3 - "$run/sample.png" <<'PY'
import struct, sys, zlib
w, h = 320, 200
rows = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 255 // w, y * 255 // h, 160)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                             + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
id=$("$bin/fdfs_upload_file" "$run/client.conf" "$run/sample.png")
url="http://127.0.0.1:$hport/$id"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[[ $code == 200 ]] || { echo "nginx answered $code for $url"; tail -5 "$run/nginx/logs/error.log"; exit 1; }
thumb="${url%.*}_150x150.${url##*.}"
code=$(curl -s -o /dev/null -w '%{http_code}' "$thumb")
[[ $code == 200 ]] || { echo "nginx answered $code for $thumb"; tail -5 "$run/nginx/logs/error.log"; exit 1; }
# An upload over HTTP with a day's grant, and a page with a form that uses one.
grant=$("$bin/fdfs_http_token" "$run/storage.conf" --expires 86400)
upload_url="http://127.0.0.1:$hport/upload$grant"
answer=$(curl -s -F "file=@$run/sample.png" "$upload_url")
grep -q '"file_id":"group1/' <<<"$answer" || { echo "HTTP upload failed: $answer"; exit 1; }
cat > "$run/nginx/html/upload.html" <<HTML
<!doctype html><title>fastdfs-rs upload</title>
<form method="post" enctype="multipart/form-data" action="/upload$grant">
<input type="file" name="file"> <input name="title" placeholder="title (metadata)"> <button>upload</button>
</form><p>The answer is JSON: file_id, url, size, crc32, metadata.</p>
HTML
echo "$url" > "$run/last_url"
cat <<MSG

fastdfs-rs is running:
  tracker  127.0.0.1:$tport   storage 127.0.0.1:$sport   nginx http://127.0.0.1:$hport
  uploaded $run/sample.png
  file ID  $id
  URL      $url
  thumbnail URL $thumb   (made once on first request; 150x150 and 300x300 allowed; WebP for browsers that take it)
  upload URL $upload_url
             (curl -F file=@photo.jpg '<upload URL>'; a form: http://127.0.0.1:$hport/upload.html)
  tus endpoint http://127.0.0.1:$hport/files/$grant   (resumable uploads)
Try:  $bin/fdfs_upload_file $run/client.conf <file>
      $bin/fdfs_monitor $run/client.conf
Stop: ci/quickstart.sh stop
MSG
