#!/usr/bin/env bash
# Benchmarks, each reported with figures from this one run:
#   - fdfs_bench against a local fdfs_trackerd + two fdfs_storaged (release build): uploads of
#     4 KiB (1 and 16 clients) and 1 MiB (4 clients) in both durability modes, each as a ratio
#     to `fdfs_bench --op raw-write` (the same files written the same way, no network) run right
#     after it; downloads of 4 KiB and 1 MiB, with the CPU each side spent per download.
#   - nginx with ngx-fastdfs vs the same nginx's plain `root` location serving the same file
#     (4 KiB and 200 KiB), with wrk; the ratio is module / root requests per second.
#   - thumbnails (#28): cold derivatives per second of a 12 MP JPEG to 300x300 through the module
#     against Debian's `vipsthumbnail` and ImageMagick's `convert -thumbnail` on the same file, and
#     a warm GET of the stored derivative against `root` serving it (wrk); then the
#     instructions nginx runs per request (callgrind) for the 4 KiB file and the derivative,
#     module vs `root`: the one module figure a shared VM does not blur.
#   - uploads over HTTP (#29): POST /upload through nginx, 4 KiB and 1 MiB (wrk), against
#     protocol uploads of the same size and concurrency; storage A's memory while 100 clients
#     upload slowly at once.
#   - the floor at one client: ours and C against a server doing only what an upload must.
#   - replication lag: upload acknowledged on storage A → readable on storage B (p50/p99).
#   - de-duplication: 64 KiB uploads, half of them repeated, with `check_file_duplicate` off and
#     on: the rate (on as a ratio to off), and bytes on disk against bytes uploaded; and the
#     worst case, 4 KiB uploads all different at 16 clients, off and on.
#   - trunk mode (the tracker restarted with `use_trunk_file = true`): 4 KiB uploads at 1 and 16
#     clients beside the same raw limits, and GET of a trunk-resident file through the module
#     vs `root` serving a regular file of the same size; de-duplication there (link slots),
#     off and on, 4 KiB uploads half repeated.
# Two storages of one group run (127.0.0.2 and 127.0.0.3), so the upload figures include
# replication.
# The C baseline: when ../shared/reference/ holds the C FastDFS 6.16.1 daemons, they are unpacked
# into the run's temp dir and a C pair of the same shape (its upstream sample configs, one tracker
# on 127.0.0.10, storages on 127.0.0.11 and .12) runs beside ours; every upload and download row
# then runs the same load against both, alternating, and prints ours/C (`vs_C`). C syncs nothing:
# compare it with `process_crash`; `power_loss` is shown beside it. Absent, the rows say so.
# A quiet file system matters: ext4 without a journal (this kind of VM) skips inodes freed in
# the last 60-300 s when it allocates one (`recently_deleted` in perf), so uploads right after
# a large delete (a test suite's cleanup, the previous bench's) create files several times more
# slowly, for both systems but not equally. Wait a few minutes after one.
#   BENCH_COUNT (default 3000), BENCH_CONCURRENCY (default 16), BENCH_ROUNDS (default 3: runs of
#   each system per row, alternating; a row shows their medians)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-3000}
conc=${BENCH_CONCURRENCY:-16}
rounds=${BENCH_ROUNDS:-3}
cargo build --release --locked -q -p fdfs-core --bins
cargo build --release --locked -q -p ngx-fastdfs
nginx=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -1)
module=$PWD/target/release/libngx_fastdfs.so
bin=$PWD/target/release
run=$(mktemp -d /tmp/fdfs-bench.XXXXXX)
cleanup() {
  [[ -n ${floor_pid:-} ]] && { kill "$floor_pid" 2>/dev/null || true; }
  [[ -f $run/ngx/logs/nginx.pid ]] && "$nginx" -p "$run/ngx" -c conf/nginx.conf -s stop 2>/dev/null || true
  "$bin/fdfs_storaged" "$run/storage.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_storaged" "$run/storage2.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_storaged" "$run/storage3.conf" stop >/dev/null 2>&1 || true
  "$bin/fdfs_trackerd" "$run/tracker.conf" stop >/dev/null 2>&1 || true
  if [[ -x $run/c/bin/fdfs_storaged ]]; then
    for c in storage1 storage2; do "$run/c/bin/fdfs_storaged" "$run/c/$c.conf" stop >/dev/null 2>&1 || true; done
    "$run/c/bin/fdfs_trackerd" "$run/c/tracker.conf" stop >/dev/null 2>&1 || true
  fi
  rm -rf "$run"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pair_port() { # a port free on both $1 and $2: the two storages of a group share one
  python3 - "$1" "$2" <<'PY'
import socket, sys
for _ in range(100):
    a = socket.socket(); a.bind((sys.argv[1], 0)); p = a.getsockname()[1]
    try:
        b = socket.socket(); b.bind((sys.argv[2], p)); print(p); break
    except OSError: pass
PY
}
tport=$(port); sport=$(pair_port 127.0.0.2 127.0.0.3); hlport=$(pair_port 127.0.0.2 127.0.0.3)
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
http_listen = 127.0.0.2:$hlport
http_upload_secret = bench-secret
thumbnail_config = $run/thumbnails.conf
CONF
# The module's thumbnail keys (its mod_fastdfs.conf below has the same), read by the storages.
cat > "$run/thumbnails.conf" <<CONF
thumbnail = true
thumbnail_sizes = 300x300
thumbnail_max_source_pixels = 20000000
thumbnail_maker = 127.0.0.2:$hlport
CONF
sed -e "s#127.0.0.2#127.0.0.3#" -e "s#$run/storage\$#$run/storage2#" "$run/storage.conf" > "$run/storage2.conf"
"$bin/fdfs_trackerd" "$run/tracker.conf" start
printf 'tracker_server = 127.0.0.1:%s\nbase_path = /tmp\n' "$tport" > "$run/client.conf"

# The C pair (see the top): started once, before ours, and left running; `cjson NAME` names the
# C run of a row for `row` (nothing when there is no C pair).
c_tarball=../shared/reference/c-fastdfs-6.16.1-linux-x86_64.tar.gz
have_c=0
if [[ -f $c_tarball ]]; then
  mkdir -p "$run/c"
  tar -xzf "$c_tarball" -C "$run/c" --strip-components=1
  c_tport=$(port); c_sport=$(pair_port 127.0.0.11 127.0.0.12)
  mkdir -p "$run/c/tracker" "$run/c/storage1" "$run/c/storage2"
  # The upstream samples, changed only where a machine needs it (addresses, paths, the reserve
  # a test disk can meet) and where ours is told the same (heartbeats every second).
  sed -e "s#^bind_addr *=.*#bind_addr = 127.0.0.10#" -e "s#^port *=.*#port = $c_tport#" \
    -e "s#^base_path *=.*#base_path = $run/c/tracker#" -e "s#^reserved_storage_space *=.*#reserved_storage_space = 1%#" \
    "$run/c/etc/fdfs/tracker.conf" > "$run/c/tracker.conf"
  for i in 1 2; do
    sed -e "s#^bind_addr *=.*#bind_addr = 127.0.0.1$i#" -e "s#^port *=.*#port = $c_sport#" \
      -e "s#^base_path *=.*#base_path = $run/c/storage$i#" -e "s#^store_path0 *=.*#store_path0 = $run/c/storage$i#" \
      -e "0,/^tracker_server *=/s#^tracker_server *=.*#tracker_server = 127.0.0.10:$c_tport#" \
      -e "/^tracker_server *= *[0-9]*\.[0-9]*\.[0-9]*\.[0-9]*:22122/d" -e "s#^heart_beat_interval *=.*#heart_beat_interval = 1#" \
      -e "s#^stat_report_interval *=.*#stat_report_interval = 1#" "$run/c/etc/fdfs/storage.conf" > "$run/c/storage$i.conf"
  done
  printf 'tracker_server = 127.0.0.10:%s\nbase_path = /tmp\n' "$c_tport" > "$run/c/client.conf"
  "$run/c/bin/fdfs_trackerd" "$run/c/tracker.conf" start
  "$run/c/bin/fdfs_storaged" "$run/c/storage1.conf" start
  sleep 1.5
  "$run/c/bin/fdfs_storaged" "$run/c/storage2.conf" start
  for _ in $(seq 300); do
    [[ $("$run/c/bin/fdfs_monitor" "$run/c/client.conf" 2>/dev/null | grep -c ' ACTIVE') == 2 ]] && { have_c=1; break; }
    sleep 0.2
  done
  [[ $have_c == 1 ]] || { echo "the C pair did not become ACTIVE" >&2; exit 1; }
  echo "C baseline: FastDFS 6.16.1 from $c_tarball (vs_C = ours / C, same load, alternating)"
else
  echo "C baseline: $c_tarball is absent; the rows have no vs_C column"
fi
# A run starts with nothing dirty in the page cache (`sync`), whichever system ran before:
# with `power_loss` our writers sync a store path's file system whole only while little is
# dirty on the machine (durable::RoundSync), and C's runs and the unsynced raw loop leave their
# files dirty for half a minute. C's runs get the same start (c_bench).
bench() { sync; "$bin/fdfs_bench" "$@"; }
# fdfs_bench against the C pair, writing $run/c-$1.json (the rest of the arguments are the load).
c_bench() {
  local name=$1; shift
  [[ $have_c == 1 ]] || return 0
  sync
  "$bin/fdfs_bench" --conf "$run/c/client.conf" "$@" --keep --json "$run/c-$name.json" >/dev/null
}
cjson() { # the C runs named $@, comma-joined, for `row`
  [[ $have_c == 1 ]] || return 0
  local IFS=,; local files=(); for n in "$@"; do files+=("$run/c-$n.json"); done; echo "${files[*]}"
}
runs() { # $run/$1<i>$2.json for every round i, comma-joined, for `row`
  local files=() i; for ((i = 1; i <= rounds; i++)); do files+=("$run/$1$i${2:-}.json"); done
  local IFS=,; echo "${files[*]}"
}
cruns() { # the C runs $1<i> of every round, for `row`
  local names=() i; for ((i = 1; i <= rounds; i++)); do names+=("$1$i"); done; cjson "${names[@]}"
}

# (Re)starts both storages with `durability = $1` and waits until the tracker sees both ACTIVE.
storages() {
  for c in storage storage2; do
    "$bin/fdfs_storaged" "$run/$c.conf" stop >/dev/null 2>&1 || true
    sed -i '/^durability/d' "$run/$c.conf"
    echo "durability = $1" >> "$run/$c.conf"
  done
  "$bin/fdfs_storaged" "$run/storage.conf" start
  sleep 1.5
  "$bin/fdfs_storaged" "$run/storage2.conf" start
  for _ in $(seq 150); do
    [[ $("$bin/fdfs_monitor" "$run/client.conf" 2>/dev/null | grep -c ' ACTIVE') == 2 ]] && return 0
    sleep 0.2
  done
  echo "storages did not become ACTIVE" >&2; return 1
}

dedup() { # check_file_duplicate = $1 in both storages' configs (none without $1)
  for c in storage storage2; do
    sed -i '/^check_file_duplicate/d' "$run/$c.conf"
    if [[ -n ${1:-} ]]; then echo "check_file_duplicate = $1" >> "$run/$c.conf"; fi
  done
}

chead() { # the header of the C columns, when there are C runs
  if [[ $have_c == 1 ]]; then printf ' %9s %7s' C/s vs_C; fi
  echo
}

row() { # label ours.json[,ours2.json...] [raw.json[,...] ...]: medians of the runs, ratios of the medians
  python3 - "$@" <<'PY'
import json, statistics, sys
def load(arg):
    runs = [json.load(open(f)) for f in arg.split(",")]
    median = lambda k: statistics.median(r[k] for r in runs)
    return {k: median(k) for k in ("files_per_s", "mb_per_s", "p50_ms", "p99_ms")} | {"errors": sum(r["errors"] for r in runs)}
r = load(sys.argv[2])
line = f"{sys.argv[1]:<30} {r['files_per_s']:>9.1f} {r['mb_per_s']:>9.2f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6}"
for arg in sys.argv[3:]:
    if not arg:  # a baseline this run (or row) does not have: its columns left blank
        line += f" {'':>9} {'':>7}"
        continue
    raw = load(arg)
    line += f" {raw['files_per_s']:>9.1f} {r['files_per_s'] / raw['files_per_s']:>7.2f}"
print(line)
PY
}

# Uploads per durability mode, each beside the raw limit of the same disk: the same files
# written the same way (temp file, write, rename; synced as the mode syncs) with no network and
# no protocol. raw1 writes each file once; raw2 writes it twice, the pair's disk work (both
# storages share this disk and its two cores): ratio1 carries the replica's cost, ratio2 does
# not. Ours and raw alternate, $rounds times each, and the ratios are of the medians (this disk's
# speed drifts by 2-3x within a minute, and at one client a run moves by 2x with where the
# scheduler puts the client and the daemons' threads). Nothing is deleted until the end: after
# a mass delete ext4 spends the next half minute scanning for inodes it may reuse (`perf`:
# recently_deleted, 70% of a writer's CPU), and every create costs ~0.7 ms.
printf '\n%-30s %9s %9s %8s %8s %6s %9s %7s %9s %7s' "upload (ours vs raw)" files/s MB/s p50_ms p99_ms errors \
  raw1/s ratio1 raw2/s ratio2
chead
for mode in power_loss process_crash; do
  storages $mode
  sync_mode=batch; [[ $mode == process_crash ]] && sync_mode=none
  for spec in "4KiB 1 $count" "4KiB 16 $count" "1MiB 4 $((count / 10))"; do
    read -r size c n <<<"$spec"
    for i in $(seq "$rounds"); do
      bench --conf "$run/client.conf" --op upload --size $size --count "$n" --concurrency "$c" \
        --keep --json "$run/ours$i.json" >/dev/null
      c_bench up$i --op upload --size $size --count "$n" --concurrency "$c"
      for copies in 1 2; do
        bench --op raw-write --dir "$run" --sync $sync_mode --size $size --count "$n" \
          --concurrency "$c" --copies $copies --keep --json "$run/raw$copies-$i.json" >/dev/null
      done
    done
    row "$mode $size x$c" "$(runs ours)" "$(runs raw1-)" "$(runs raw2-)" "$(cruns up)"
  done
done
for c in 1 16; do
  n=$((count / 3)); [[ $c == 16 ]] && n=$count
  "$bin/fdfs_bench" --op raw-write --dir "$run" --sync per-file --size 4KiB --count "$n" --concurrency $c \
    --keep --json "$run/raw.json" >/dev/null
  row "raw fsync-per-file 4KiB x$c" "$run/raw.json"
done

storages power_loss
printf '\n%-30s %9s %9s %8s %8s %6s' "download" files/s MB/s p50_ms p99_ms errors
chead
# Besides the rate, the CPU each side spent per download (the cores are shared, so the ratio is
# (load generator + C) / (load generator + ours) when they are saturated): clock ticks of the
# load generator (a subshell's reaped children) and of the daemons (their pid files).
ticks() { # user + system ticks of the processes whose pid files are given
  local t=0 pid st
  for f in "$@"; do pid=$(cat "$f"); read -r -a st < "/proc/$pid/stat"; t=$((t + st[13] + st[14])); done
  echo $t
}
ours_pids=("$run/tracker/data/fdfs_trackerd.pid" "$run/storage/data/fdfs_storaged.pid" "$run/storage2/data/fdfs_storaged.pid")
c_pids=("$run/c/tracker/data/fdfs_trackerd.pid" "$run/c/storage1/data/fdfs_storaged.pid" "$run/c/storage2/data/fdfs_storaged.pid")
# Long rows: fdfs_bench first uploads (untimed) the 200 files it reads, and that work is in the
# ticks too (a few us per download at these counts).
for spec in "4KiB $((count * 4))" "1MiB $((count * 2 / 3))"; do
  read -r size n <<<"$spec"
  load=0; ours=0; theirs=0
  for i in $(seq "$rounds"); do
    sync # as c_bench does before C's run, outside what is counted
    before=$(ticks "${ours_pids[@]}")
    used=$( ( "$bin/fdfs_bench" --conf "$run/client.conf" --op download --size $size --count "$n" --concurrency "$conc" \
      --keep --json "$run/r$i.json" >/dev/null; read -r -a st < /proc/$BASHPID/stat; echo $((st[15] + st[16])) ) )
    load=$((load + used)); ours=$((ours + $(ticks "${ours_pids[@]}") - before))
    if [[ $have_c == 1 ]]; then
      before=$(ticks "${c_pids[@]}")
      c_bench down$i --op download --size $size --count "$n" --concurrency "$conc"
      theirs=$((theirs + $(ticks "${c_pids[@]}") - before))
    fi
  done
  row "download $size x$conc" "$(runs r)" "$(cruns down)"
  per() { echo $(($1 * 1000000 / $(getconf CLK_TCK) / (rounds * n))); }
  line="  cpu us per download: load generator $(per $load), ours (tracker + storages) $(per $ours)"
  [[ $have_c == 1 ]] && line+=", C $(per $theirs)"
  echo "$line"
done

# The Java client's manners: Nagle on, header and body in two writes (a server that delays its
# ACKs shows ~40 ms per request here).
# Both modes, beside the C pair.
printf '\n%-30s %9s %9s %8s %8s %6s %9s %7s' "java-style 4KiB x1" files/s MB/s p50_ms p99_ms errors raw1/s ratio1
chead
for mode in power_loss process_crash; do
  storages $mode
  sync_mode=batch; [[ $mode == process_crash ]] && sync_mode=none
  for i in $(seq "$rounds"); do
    bench --conf "$run/client.conf" --op upload --client-style java --size 4KiB --count "$((count / 2))" \
      --concurrency 1 --keep --json "$run/java$i.json" >/dev/null
    c_bench java$i --op upload --client-style java --size 4KiB --count "$((count / 2))" --concurrency 1
    bench --op raw-write --dir "$run" --sync $sync_mode --size 4KiB --count "$((count / 2))" \
      --concurrency 1 --keep --json "$run/raw$i.json" >/dev/null
  done
  row "$mode java 4KiB x1" "$(runs java)" "$(runs raw)" "$(cruns java)"
done

# The floor at one client: `fdfs_bench --op floor` is a tracker and a storage in one blocking
# server that does only what an upload must (the file written and renamed, a binlog line;
# nothing checked, nothing synced, no second member). Its rate over C's is the most any tracker
# and storage could gain over C at one client, with this load generator on this machine; ours /
# floor says how close ours is. process_crash (set by the loop above), both client styles; then
# downloads.
floor_port=$(port)
"$bin/fdfs_bench" --op floor --listen "127.0.0.1:$floor_port" --dir "$run" >/dev/null 2>&1 &
floor_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$floor_port") 2>/dev/null && break; sleep 0.1; done
printf 'tracker_server = 127.0.0.1:%s\nbase_path = /tmp\n' "$floor_port" > "$run/floor.conf"
printf '\n%-30s %9s %9s %8s %8s %6s %9s %7s' "one client: ours vs floor" files/s MB/s p50_ms p99_ms errors floor/s ratio
chead
for style in standard java; do
  for i in $(seq "$rounds"); do
    bench --conf "$run/client.conf" --op upload --client-style $style --size 4KiB --count "$count" \
      --concurrency 1 --keep --json "$run/ours-$style$i.json" >/dev/null
    c_bench floor-$style$i --op upload --client-style $style --size 4KiB --count "$count" --concurrency 1
    bench --conf "$run/floor.conf" --op upload --client-style $style --size 4KiB --count "$count" \
      --concurrency 1 --keep --json "$run/floor-$style$i.json" >/dev/null
  done
  row "ours $style 4KiB x1" "$(runs "ours-$style")" "$(runs "floor-$style")" "$(cruns "floor-$style")"
  row "floor $style 4KiB x1" "$(runs "floor-$style")" "" "$(cruns "floor-$style")"
done
# Downloads the same way: the floor opens, measures and reads the file and answers in one write,
# a thread per connection; its rate over C's is the most a storage could gain over C here.
printf '\n%-30s %9s %9s %8s %8s %6s %9s %7s' "downloads: ours vs floor" files/s MB/s p50_ms p99_ms errors floor/s ratio
chead
for i in $(seq "$rounds"); do
  bench --conf "$run/client.conf" --op download --size 4KiB --count "$((count * 4))" --concurrency "$conc" \
    --keep --json "$run/ours-down$i.json" >/dev/null
  c_bench floor-down$i --op download --size 4KiB --count "$((count * 4))" --concurrency "$conc"
  bench --conf "$run/floor.conf" --op download --size 4KiB --count "$((count * 4))" --concurrency "$conc" \
    --keep --json "$run/floor-down$i.json" >/dev/null
done
row "ours download 4KiB x$conc" "$(runs ours-down)" "$(runs floor-down)" "$(cruns floor-down)"
row "floor download 4KiB x$conc" "$(runs floor-down)" "" "$(cruns floor-down)"
kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true; floor_pid=
storages power_loss

printf '\n%-22s %9s %9s %9s %7s\n' "replication lag (4KiB)" p50_ms p99_ms max_ms errors
"$bin/fdfs_bench" --conf "$run/client.conf" --op lag --size 4KiB --count "$((count / 10))" --concurrency 4 --keep \
  --source "127.0.0.2:$sport" --replica "127.0.0.3:$sport" --json "$run/lag.json" >/dev/null
python3 - "$run/lag.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'A -> B':<22} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f} {r['errors']:>7}")
PY

# De-duplication (`check_file_duplicate = 1`): 64 KiB uploads of which half repeat one content,
# with it off and on; the rate, and what storage A's data/ grew by on disk against the bytes
# uploaded (the replica does the same). The index must not halve the rate.
printf '\n%-30s %9s %8s %8s %6s %12s %10s %7s\n' "dedup, 50% repeated (A)" files/s p50_ms p99_ms errors \
  uploaded_MB disk_MB ratio
dedup_n=$((count / 5))
for dd in 0 1; do
  dedup $dd
  storages power_loss
  before=$(du -sB1 "$run/storage/data" | cut -f1)
  "$bin/fdfs_bench" --conf "$run/client.conf" --op upload --size 64KiB --count "$dedup_n" --concurrency 4 \
    --repeated 50 --keep --json "$run/dedup$dd.json" >/dev/null
  sleep 2 # the replica's writes land on the same disk: let them settle before measuring A
  after=$(du -sB1 "$run/storage/data" | cut -f1)
  python3 - "$run/dedup$dd.json" "$run/dedup0.json" "$dd" "$dedup_n" "$before" "$after" <<'PY'
import json, sys
r, off = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
on, n, before, after = sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
label = "dedup on (rate ratio to off)" if on else "dedup off"
ratio = f"{r['files_per_s'] / off['files_per_s']:>7.2f}" if on else f"{'':>7}"
print(f"{label:<30} {r['files_per_s']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6}"
      f" {n * 65536 / 1e6:>12.1f} {(after - before) / 1e6:>10.1f} {ratio}")
PY
  # The worst case: 4 KiB uploads that are all different (each is a source file and a symlink
  # to it, C's layout: one more inode per file ID), 16 clients.
  "$bin/fdfs_bench" --conf "$run/client.conf" --op upload --size 4KiB --count "$count" --concurrency 16 \
    --repeated 0 --keep --json "$run/unique$dd.json" >/dev/null
done
python3 - "$run/unique1.json" "$run/unique0.json" <<'PY'
import json, sys
on, off = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"{'all unique 4KiB x16, off':<30} {off['files_per_s']:>9.1f} {off['p50_ms']:>8.2f} {off['p99_ms']:>8.2f} {off['errors']:>6}")
print(f"{'all unique 4KiB x16, on':<30} {on['files_per_s']:>9.1f} {on['p50_ms']:>8.2f} {on['p99_ms']:>8.2f} {on['errors']:>6}"
      f" {'':>12} {'':>10} {on['files_per_s'] / off['files_per_s']:>7.2f}")
PY
dedup

# Module vs `root`: one nginx, one file, two locations.
have_wrk=1
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk): skipping the module benchmark"; have_wrk=0; }
rps() { wrk -t2 -c32 -d"${BENCH_SECONDS:-5}"s "http://127.0.0.1:$nport$1" | awk '/Requests\/sec/ {print $2}'; }
# A row: label, the module's URL, root's URL; three rounds alternating the two (wrk moves
# 10-30% run to run on a shared VM), the ratio of the means.
module_vs_root() {
  local ms=() rs=()
  rps "$2" >/dev/null  # warm up
  for _ in 1 2 3; do ms+=("$(rps "$2")"); rs+=("$(rps "$3")"); done
  python3 -c "m=sum([${ms[*]/%/,}])/3; r=sum([${rs[*]/%/,}])/3; print(f'{\"$1\":<10} {m:>12.0f} {r:>12.0f} {m/r:>8.3f}')"
}
nport=$(port)
if [[ $have_wrk == 1 ]]; then
mkdir -p "$run/ngx/conf" "$run/ngx/logs"
printf 'group_name=group1\nurl_have_group_name=true\nstore_path0=%s\n' "$run/storage" > "$run/ngx/conf/mod_fastdfs.conf"
cat "$run/thumbnails.conf" >> "$run/ngx/conf/mod_fastdfs.conf"
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
  types { application/octet-stream bin; image/jpeg jpg; }
  access_log off;
  keepalive_requests 1000000;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=60s;
  upstream storage_a { server 127.0.0.2:$hlport; keepalive 32; }
  fastdfs_config $run/ngx/conf/mod_fastdfs.conf;
  server {
    listen 127.0.0.1:$nport;
    location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ { ngx_fastdfs_module; }
    # Same kind of location match as the module's, so the ratio measures the handlers.
    location ~ ^/data/[0-9A-F][0-9A-F]/ { root $run/storage; }
    location @fastdfs_proxy { proxy_pass \$fastdfs_proxy_url; proxy_read_timeout 60s; }
    location = /upload { proxy_pass http://storage_a; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_request_buffering off; client_max_body_size 0; }
  }
}
CONF
"$nginx" -p "$run/ngx" -c conf/nginx.conf
printf '\n%-10s %12s %12s %8s\n' size module_rps root_rps ratio
for size in 4096 204800; do
  head -c $size /dev/urandom > "$run/f.bin"
  id=$("$bin/fdfs_upload_file" "$run/client.conf" "$run/f.bin" "127.0.0.2:$sport")
  rel=${id#group1/M00/}
  [[ $size == 4096 ]] && root4k=$rel && id4k=$id
  module_vs_root "$size" "/$id" "/data/$rel"
done
fi

# Instructions nginx runs per request for `$1` (callgrind, 2,000 keep-alive requests after
# 200 to warm up): the bench's nginx is stopped meanwhile, and one under valgrind, in one
# process, serves the same configuration.
instructions_per_request() {
  "$nginx" -p "$run/ngx" -c conf/nginx.conf -s stop
  sleep 0.5
  rm -f "$run/cg.out"*
  valgrind --tool=callgrind --callgrind-out-file="$run/cg.out" "$nginx" -p "$run/ngx" -c conf/nginx.conf \
    -g 'master_process off; daemon off;' 2>/dev/null &
  local vg=$!
  python3 - "$nport" "$1" <<'PY'
import socket, sys, subprocess, time
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        time.sleep(0.2)
req = f"GET {sys.argv[2]} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
def more():
    got = s.recv(65536)
    if not got:  # nginx closed the connection: a figure per request would be wrong
        sys.exit("nginx closed the connection")
    return got
def get(n):
    for _ in range(n):
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += more()
        head, body = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(body) < length:
            body += more()
get(200)
subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
get(2000)
subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
PY
  kill -QUIT $vg; wait $vg || true
  awk '/^(summary|totals):/ {print $2 / 2000; exit}' "$(ls "$run/cg.out".* | sort | tail -1)"
  "$nginx" -p "$run/ngx" -c conf/nginx.conf
  sleep 0.5
}

# Thumbnails: a 12 MP JPEG uploaded K times (de-duplication is off: K masters), each asked
# once for its 300x300 (cold: made by the storage), against vipsthumbnail and convert making
# the same thumbnail of the same file K times; then the stored derivative warm, module vs root.
if [[ $have_wrk == 1 ]] && command -v vipsthumbnail >/dev/null && [[ $(convert -version 2>/dev/null) == *ImageMagick* ]]; then
  k=8
  convert -size 4000x3000 plasma:fractal -quality 90 "$run/m.jpg"
  ids=()
  for _ in $(seq $k); do ids+=("$("$bin/fdfs_upload_file" "$run/client.conf" "$run/m.jpg" "127.0.0.2:$sport")"); done
  t0=$(date +%s.%N)
  for id in "${ids[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/${id%.jpg}_300x300.jpg")
    [[ $code == 200 ]] || { echo "thumbnail of $id: $code" >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  for _ in $(seq $k); do vipsthumbnail "$run/m.jpg" -s 300x300 -o "$run/v.jpg[Q=85]"; done
  t2=$(date +%s.%N)
  for _ in $(seq $k); do convert "$run/m.jpg" -thumbnail 300x300 -quality 85 "$run/c.jpg"; done
  t3=$(date +%s.%N)
  printf '\n%-34s %9s %11s %9s %8s %9s\n' "12 MP JPEG -> 300x300, cold" ours/s vipsthumb/s convert/s vs_vips vs_convert
  python3 -c "o=$k/($t1-$t0); v=$k/($t2-$t1); c=$k/($t3-$t2); print(f'{\"derivatives\":<34} {o:>9.2f} {v:>11.2f} {c:>9.2f} {o/v:>8.2f} {o/c:>9.2f}')"
  thumb=${ids[0]%.jpg}_300x300.jpg
  printf '%-10s %12s %12s %8s\n' "warm GET" module_rps root_rps ratio
  module_vs_root 300x300 "/$thumb" "/data/${thumb#group1/M00/}"
  # Requests per second through wrk swing by 10-30% run to run on a shared VM; the
  # instructions nginx runs per request (callgrind, user space: the kernel's share is the
  # same for both) do not, and are what the module adds to `root`.
  if command -v valgrind >/dev/null; then
    printf '\n%-24s %12s %12s %8s\n' "instructions / request" module root ratio
    for pair in "4 KiB file:/$id4k:/data/${id4k#group1/M00/}" "300x300 derivative:/$thumb:/data/${thumb#group1/M00/}"; do
      IFS=: read -r what module_url root_url <<<"$pair"
      m=$(instructions_per_request "$module_url"); r=$(instructions_per_request "$root_url")
      python3 -c "print(f'{\"$what\":<24} {$m:>12.0f} {$r:>12.0f} {$m/$r:>8.3f}')"
    done
  fi
else
  echo "wrk, vipsthumbnail (libvips-tools) or ImageMagick's convert missing: skipping the thumbnail rows"
fi

# Uploads over HTTP through nginx (POST /upload, the body as it is, wrk) against protocol uploads
# (fdfs_bench) of the same size and concurrency, alternating; then storage A's resident memory
# while 100 clients each send 512 KiB at 64 KiB/s.
if [[ $have_wrk == 1 ]]; then
  grant=$("$bin/fdfs_http_token" "$run/storage.conf" --expires 3600)
  printf '\n%-22s %10s %10s %7s\n' "HTTP upload" http/s proto/s ratio
  for spec in "4KiB 4096 16" "1MiB 1048576 4"; do
    read -r label bytes c <<<"$spec"
    printf 'wrk.method = "POST"\nwrk.body = string.rep("x", %s)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' \
      "$bytes" > "$run/post.lua"
    h=(); p=()
    for _ in 1 2; do
      h+=("$(wrk -t2 -c"$c" -d"${BENCH_SECONDS:-5}"s -s "$run/post.lua" "http://127.0.0.1:$nport/upload$grant&filename=b.bin" \
        | awk '/Requests\/sec/ {print $2}')")
      "$bin/fdfs_bench" --conf "$run/client.conf" --op upload --size "$label" --count $((c * 400)) --concurrency "$c" \
        --keep --json "$run/proto.json" >/dev/null
      p+=("$(python3 -c "import json; print(json.load(open('$run/proto.json'))['files_per_s'])")")
    done
    python3 -c "h=(${h[0]}+${h[1]})/2; p=(${p[0]}+${p[1]})/2; print(f'{\"$label x$c\":<22} {h:>10.0f} {p:>10.0f} {h/p:>7.2f}')"
  done
  spid=$(cat "$run/storage/data/fdfs_storaged.pid")
  rss() { awk '/VmRSS/ {print $2}' "/proc/$spid/status"; }
  head -c 524288 /dev/urandom > "$run/slow.bin"
  before=$(rss); peak=$before
  for _ in $(seq 100); do
    curl -s -o /dev/null --limit-rate 64k --data-binary @"$run/slow.bin" "http://127.0.0.1:$nport/upload$grant&filename=s.bin" &
  done
  while [[ -n $(jobs -r) ]]; do now=$(rss); (( now > peak )) && peak=$now; sleep 0.5; done
  printf '%-40s %s MiB before, %s MiB at most\n' "storage RSS, 100 slow HTTP uploads" $((before / 1024)) $((peak / 1024))
fi

# Trunk mode (C's small-file packing): the tracker restarted with `use_trunk_file = true`, so
# 4 KiB uploads go into trunk slots (a slot write, one trunk binlog line synced with the batch,
# no new inode), beside the same raw limits as above; then GET of a trunk-resident 4 KiB file
# through the module vs `root` serving a regular 4 KiB file.
"$bin/fdfs_trackerd" "$run/tracker.conf" stop >/dev/null
printf 'use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 64MB\n' >> "$run/tracker.conf"
printf 'trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n' >> "$run/tracker.conf"
"$bin/fdfs_trackerd" "$run/tracker.conf" start
storages power_loss
head -c 4096 /dev/urandom > "$run/t.bin"
for _ in $(seq 100); do
  tid=$("$bin/fdfs_upload_file" "$run/client.conf" "$run/t.bin" "127.0.0.2:$sport")
  [[ ${#tid} == 67 ]] && break
  sleep 0.2
done
[[ ${#tid} == 67 ]] || { echo "no trunk slot after the switch to trunk mode: $tid" >&2; exit 1; }
printf '\n%-30s %9s %9s %8s %8s %6s %9s %7s %9s %7s\n' "trunk upload (ours vs raw)" files/s MB/s p50_ms p99_ms \
  errors raw1/s ratio1 raw2/s ratio2
for spec in "4KiB 1 $count" "4KiB 16 $count"; do
  read -r size c n <<<"$spec"
  for i in $(seq "$rounds"); do
    bench --conf "$run/client.conf" --op upload --size $size --count "$n" --concurrency "$c" \
      --keep --json "$run/ours$i.json" >/dev/null
    for copies in 1 2; do
      bench --op raw-write --dir "$run" --sync batch --size $size --count "$n" \
        --concurrency "$c" --copies $copies --keep --json "$run/raw$copies-$i.json" >/dev/null
    done
  done
  row "trunk power_loss $size x$c" "$(runs ours)" "$(runs raw1-)" "$(runs raw2-)"
done
if [[ $have_wrk == 1 && -n ${root4k:-} ]]; then
  printf '\n%-10s %12s %12s %8s\n' "trunk GET" module_rps root_rps ratio
  module_vs_root 4096 "/$tid" "/data/$root4k"
fi

# De-duplication in trunk mode: 4 KiB uploads of which half repeat one content, 4 clients, off
# then on. On, every file ID is a link slot and every new content a slot of its own (two slots
# and two records per new content, one link slot per repeat).
wait_trunk_slot() {
  for _ in $(seq 100); do
    [[ $("$bin/fdfs_upload_file" "$run/client.conf" "$run/t.bin" "127.0.0.2:$sport") =~ ^.{67}$ ]] && return 0
    sleep 0.2
  done
  echo "no trunk slot after the restart" >&2; return 1
}
printf '\n%-30s %9s %8s %8s %6s %7s\n' "trunk dedup, 50% repeated" files/s p50_ms p99_ms errors ratio
for dd in 0 1; do
  dedup $dd
  storages power_loss
  wait_trunk_slot
  "$bin/fdfs_bench" --conf "$run/client.conf" --op upload --size 4KiB --count "$((count / 3))" --concurrency 4 \
    --repeated 50 --keep --json "$run/tdedup$dd.json" >/dev/null
done
python3 - "$run/tdedup1.json" "$run/tdedup0.json" <<'PY'
import json, sys
on, off = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for label, r in (("trunk dedup off", off), ("trunk dedup on (ratio to off)", on)):
    ratio = f"{on['files_per_s'] / off['files_per_s']:>7.2f}" if r is on else ""
    print(f"{label:<30} {r['files_per_s']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} {ratio}")
PY

# Listing (`fdfs_list_files`): a storage of a group of its own (127.0.0.4) whose binlog holds
# 1,000,000 create records of names it does not hold (each one parsed and looked up on disk, as
# a deleted file's would be); the walk's rate, and what the storage's and the tool's peak RSS
# grew to: both must stay flat whatever the binlog's length.
mkdir -p "$run/storage3/data/sync"
python3 - "$run/storage3/data/sync/binlog.000" <<'PY'
import random, string, sys
alpha, r = string.ascii_letters + string.digits + "-_", random.Random(1)
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        f.write(f"{1700000000 + i // 100} C M00/00/00/{''.join(r.choice(alpha) for _ in range(27))}{r.randrange(1000):03d}.jpg\n")
PY
lport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.4",0)); print(s.getsockname()[1])')
printf 'group_name = list1\nbind_addr = 127.0.0.4\nport = %s\nbase_path = %s\nstore_path0 = %s\nsubdir_count_per_path = 4\ntracker_server = 127.0.0.1:%s\n' \
  "$lport" "$run/storage3" "$run/storage3" "$tport" > "$run/storage3.conf"
"$bin/fdfs_storaged" "$run/storage3.conf" start
python3 - "$bin" "$run" "$lport" <<'PY'
import resource, socket, subprocess, sys, time
bin, run, port = sys.argv[1:]
pid = None
for _ in range(100):
    try:
        pid = int(open(f"{run}/storage3/data/fdfs_storaged.pid").read()); break
    except (OSError, ValueError):
        time.sleep(0.1)
hwm = lambda: int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")))
cmd = [f"{bin}/fdfs_list_files", f"{run}/client.conf", "list1", "--storage", f"127.0.0.4:{port}"]
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.4", int(port)), timeout=1).close(); break
    except OSError:
        time.sleep(0.1)
before = hwm()
t = time.time()
r = subprocess.run(cmd, capture_output=True, text=True)
took = time.time() - t
assert r.returncode == 0 and r.stdout == "", r.stderr
print(f"\n{'list, 1,000,000-line binlog':<30} {1e6 / took:>9.0f} lines/s  storage peak RSS {before / 1024:.1f} -> {hwm() / 1024:.1f} MiB"
      f"  tool {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f} MiB")
PY
"$bin/fdfs_storaged" "$run/storage3.conf" stop >/dev/null 2>&1 || true
