#!/usr/bin/env bash
# Benchmarks, each reported with figures from this one run:
#   - fdfs_bench against a local fdfs_trackerd + fdfs_storaged (release build): upload and
#     download of 4 KiB and 1 MiB files.
# Not yet here (see the README): the C storage baseline for the upload ratios, module vs nginx
# `root` serving (issue 5), replication lag (issue 6).
#   BENCH_COUNT (default 3000), BENCH_CONCURRENCY (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-3000}
conc=${BENCH_CONCURRENCY:-16}
cargo build --release --locked --bins -q
bin=$PWD/target/release
run=$(mktemp -d /tmp/fdfs-bench.XXXXXX)
cleanup() {
  "$bin/fdfs_storaged" "$run/storage.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_trackerd" "$run/tracker.conf" stop >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport=$(port); sport=$(port)
mkdir -p "$run/tracker" "$run/storage"
cat > "$run/tracker.conf" <<CONF
bind_addr = 127.0.0.1
port = $tport
base_path = $run/tracker
reserved_storage_space = 1GB
CONF
cat > "$run/storage.conf" <<CONF
group_name = group1
bind_addr = 127.0.0.1
port = $sport
base_path = $run/storage
store_path0 = $run/storage
tracker_server = 127.0.0.1:$tport
heart_beat_interval = 1
stat_report_interval = 1
CONF
"$bin/fdfs_trackerd" "$run/tracker.conf" start
"$bin/fdfs_storaged" "$run/storage.conf" start
for _ in $(seq 50); do
  "$bin/fdfs_monitor" /dev/null -h "127.0.0.1:$tport" 2>/dev/null | grep -q ACTIVE && break
  sleep 0.2
done 2>/dev/null || true
printf 'tracker_server = 127.0.0.1:%s\nbase_path = /tmp\n' "$tport" > "$run/client.conf"

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
