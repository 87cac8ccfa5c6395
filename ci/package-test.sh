#!/usr/bin/env bash
# Installs the Debian package built by ci/package.sh and runs a cluster from it as an operator
# would: the units' commands (through systemd when it runs this machine, else the units'
# ExecStart lines), the shipped configs in /etc/fdfs unchanged, an upload with the installed
# tool, and the file fetched through Debian's nginx with the packaged module and snippet.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
deb=$(ls -t target/debian/fastdfs-rs_*.deb | head -1)
"${sudo_cmd[@]}" dpkg -i "$deb" >/dev/null
for f in tracker.conf storage.conf client.conf mod_fastdfs.conf; do
  [[ -f /etc/fdfs/$f ]] || { echo "package: /etc/fdfs/$f missing"; exit 1; }
done
grep -q '^/etc/fdfs/storage.conf$' /var/lib/dpkg/info/fastdfs-rs.conffiles \
  || { echo "package: the configs are not conffiles"; exit 1; }

t=$(mktemp -d)
pids=()
via=units
# The one change to the shipped configs: test machines' disks are often fuller than the
# sample's 20% reserve. Put back at the end.
cp /etc/fdfs/tracker.conf "$t/tracker.conf.orig"
"${sudo_cmd[@]}" sed -i 's/^reserved_storage_space = .*/reserved_storage_space = 1%/' /etc/fdfs/tracker.conf
stop_all() {
  if [[ $via == systemd ]]; then
    "${sudo_cmd[@]}" systemctl stop fdfs_storaged fdfs_trackerd || true
  else
    for p in "${pids[@]}"; do "${sudo_cmd[@]}" kill "$p" 2>/dev/null || true; done
  fi
  [[ -f $t/nginx.pid ]] && "${sudo_cmd[@]}" /usr/sbin/nginx -c "$t/nginx.conf" -s stop 2>/dev/null || true
  "${sudo_cmd[@]}" cp "$t/tracker.conf.orig" /etc/fdfs/tracker.conf
  rm -rf "$t"
}
trap stop_all EXIT
if [[ -d /run/systemd/system ]]; then
  via=systemd
  "${sudo_cmd[@]}" systemctl daemon-reload
  "${sudo_cmd[@]}" systemctl start fdfs_trackerd
  "${sudo_cmd[@]}" systemctl start fdfs_storaged
else
  for unit in fdfs_trackerd fdfs_storaged; do
    cmd=$(sed -n 's/^ExecStart=//p' "/lib/systemd/system/$unit.service")
    # shellcheck disable=SC2086
    "${sudo_cmd[@]}" $cmd >"$t/$unit.out" 2>&1 &
    pids+=($!)
    sleep 1
  done
fi
# The monitor's output is read whole first: `grep -q` would close the pipe early, the tool would
# then exit 141 (a closed stdout, as C's tools die of SIGPIPE) and pipefail would fail the check.
active=no
for _ in $(seq 100); do
  out=$(/usr/bin/fdfs_monitor /etc/fdfs/client.conf 2>/dev/null || true)
  grep -q ' ACTIVE' <<<"$out" && { active=yes; break; }
  sleep 0.3
done
[[ $active == yes ]] || { echo "package: the storage did not become ACTIVE"; cat "$t"/*.out 2>/dev/null; exit 1; }

echo "fastdfs-rs from the Debian package" > "$t/hello.txt"
id=$(/usr/bin/fdfs_upload_file /etc/fdfs/client.conf "$t/hello.txt")
[[ $id == group1/M00/* ]] || { echo "package: upload gave $id"; exit 1; }

# Debian's nginx, default prefix (so the snippet's modules/ path resolves), our own conf.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$t/nginx.conf" <<CONF
include /etc/nginx/modules-available/mod-fastdfs.conf;
worker_processes 1;
pid $t/nginx.pid;
error_log $t/error.log;
events { worker_connections 64; }
http {
  types { text/plain txt; }
  access_log off;
  fastdfs_config /etc/fdfs/mod_fastdfs.conf;
  server {
    listen 127.0.0.1:$port;
    location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ { ngx_fastdfs_module; }
  }
}
CONF
"${sudo_cmd[@]}" /usr/sbin/nginx -c "$t/nginx.conf"
got=$(curl -sf "http://127.0.0.1:$port/$id")
[[ $got == "fastdfs-rs from the Debian package" ]] \
  || { echo "package: nginx answered '$got'"; cat "$t/error.log"; exit 1; }
echo "package: installed, started through $via, uploaded $id and served it through Debian's nginx: OK"
