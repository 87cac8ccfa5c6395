#!/usr/bin/env bash
# Benchmarks, each reported with figures from this one run:
#   - fdfs_bench against a local fdfs_trackerd + fdfs_storaged (release build): upload and
#     download of 4 KiB and 1 MiB files.
#   - nginx with ngx-fastdfs vs the same nginx's plain `root` location serving the same file
#     (4 KiB and 200 KiB), with wrk; the ratio is module / root requests per second.
#   - replication lag: upload acknowledged on storage A → readable on storage B (p50/p99).
# Two storages of one group run (127.0.0.2 and 127.0.0.3), so the upload figures include
# replication. Not here: the C storage baseline for the upload ratios (the C daemons cannot be
# fetched on these machines).
#   BENCH_COUNT (default 3000), BENCH_CONCURRENCY (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-3000}
conc=${BENCH_CONCURRENCY:-16}
cargo build --release --locked -q -p fdfs-core --bins
cargo build --release --locked -q -p ngx-fastdfs
nginx=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -1)
module=$PWD/target/release/libngx_fastdfs.so
bin=$PWD/target/release
run=$(mktemp -d /tmp/fdfs-bench.XXXXXX)
cleanup() {
  [[ -f $run/ngx/logs/nginx.pid ]] && "$nginx" -p "$run/ngx" -c conf/nginx.conf -s stop 2>/dev/null || true
  "$bin/fdfs_storaged" "$run/storage.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_storaged" "$run/storage2.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_trackerd" "$run/tracker.conf" stop >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport=$(port); sport=$(python3 -c 'import socket
for _ in range(100):
    a=socket.socket(); a.bind(("127.0.0.2",0)); p=a.getsockname()[1]
    try:
        b=socket.socket(); b.bind(("127.0.0.3",p)); print(p); break
    except OSError: pass')
mkdir -p "$run/tracker" "$run/storage" "$run/storage2"
cat > "$run/tracker.conf" <<CONF
bind_addr = 127.0.0.1
port = $tport
base_path = $run/tracker
reserved_storage_space = 1GB
CONF
cat > "$run/storage.conf" <<CONF
group_name = group1
bind_addr = 127.0.0.2
port = $sport
base_path = $run/storage
store_path0 = $run/storage
tracker_server = 127.0.0.1:$tport
heart_beat_interval = 1
stat_report_interval = 1
CONF
sed -e "s#127.0.0.2#127.0.0.3#" -e "s#$run/storage\$#$run/storage2#" "$run/storage.conf" > "$run/storage2.conf"
"$bin/fdfs_trackerd" "$run/tracker.conf" start
"$bin/fdfs_storaged" "$run/storage.conf" start
sleep 1.5
"$bin/fdfs_storaged" "$run/storage2.conf" start
printf 'tracker_server = 127.0.0.1:%s\nbase_path = /tmp\n' "$tport" > "$run/client.conf"
for _ in $(seq 100); do
  [[ $("$bin/fdfs_monitor" "$run/client.conf" 2>/dev/null | grep -c ' ACTIVE') == 2 ]] && break
  sleep 0.2
done

printf '\n%-10s %-8s %10s %10s %9s %9s %9s %7s\n' op size files/s MB/s p50_ms p99_ms max_ms errors
for size in 4KiB 1MiB; do
  n=$count; [[ $size == 1MiB ]] && n=$((count / 6))
  for op in upload download; do
    "$bin/fdfs_bench" --conf "$run/client.conf" --op $op --size $size --count "$n" --concurrency "$conc" --json "$run/r.json" >/dev/null
    python3 - "$run/r.json" "$size" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['op']:<10} {sys.argv[2]:<8} {r['files_per_s']:>10.1f} {r['mb_per_s']:>10.2f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f} {r['errors']:>7}")
PY
  done
done

# The Java client's manners: Nagle on, header and body in two writes (a server that delays its
# ACKs shows ~40 ms per request here).
"$bin/fdfs_bench" --conf "$run/client.conf" --op upload --client-style java --size 4KiB --count "$((count / 5))" \
  --concurrency 1 --json "$run/java.json" >/dev/null
python3 - "$run/java.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'upload-java':<10} {'4KiB':<8} {r['files_per_s']:>10.1f} {r['mb_per_s']:>10.2f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f} {r['errors']:>7}")
PY

printf '\n%-22s %9s %9s %9s %7s\n' "replication lag (4KiB)" p50_ms p99_ms max_ms errors
"$bin/fdfs_bench" --conf "$run/client.conf" --op lag --size 4KiB --count "$((count / 10))" --concurrency 4 \
  --source "127.0.0.2:$sport" --replica "127.0.0.3:$sport" --json "$run/lag.json" >/dev/null
python3 - "$run/lag.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'A -> B':<22} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f} {r['errors']:>7}")
PY

# Module vs `root`: one nginx, one file, two locations.
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk): skipping the module benchmark"; exit 0; }
nport=$(port)
mkdir -p "$run/ngx/conf" "$run/ngx/logs"
printf 'group_name=group1\nurl_have_group_name=true\nstore_path0=%s\n' "$run/storage" > "$run/ngx/conf/mod_fastdfs.conf"
# The module serves storage A's store path; uploads below go there.
user=""; [[ $(id -u) -eq 0 ]] && user="user root;"
cat > "$run/ngx/conf/nginx.conf" <<CONF
load_module $module;
$user
worker_processes 1;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
  types { application/octet-stream bin; }
  access_log off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=60s;
  fastdfs_config $run/ngx/conf/mod_fastdfs.conf;
  server {
    listen 127.0.0.1:$nport;
    location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ { ngx_fastdfs_module; }
    # Same kind of location match as the module's, so the ratio measures the handlers.
    location ~ ^/data/[0-9A-F][0-9A-F]/ { root $run/storage; }
  }
}
CONF
"$nginx" -p "$run/ngx" -c conf/nginx.conf
printf '\n%-10s %12s %12s %8s\n' size module_rps root_rps ratio
for size in 4096 204800; do
  head -c $size /dev/urandom > "$run/f.bin"
  id=$("$bin/fdfs_upload_file" "$run/client.conf" "$run/f.bin" "127.0.0.2:$sport")
  rel=${id#group1/M00/}
  rps() { wrk -t2 -c32 -d"${BENCH_SECONDS:-5}"s "http://127.0.0.1:$nport$1" | awk '/Requests\/sec/ {print $2}'; }
  rps "/$id" >/dev/null  # warm up
  m=$(rps "/$id"); r=$(rps "/data/$rel"); m2=$(rps "/$id"); r2=$(rps "/data/$rel")
  python3 -c "m=($m+$m2)/2; r=($r+$r2)/2; print(f'{$size:<10} {m:>12.0f} {r:>12.0f} {m/r:>8.3f}')"
done
