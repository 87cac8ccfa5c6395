#!/usr/bin/env bash
# Builds ngx-fastdfs for Debian bookworm's own nginx (1.22, package nginx + nginx-dev) and checks
# that /usr/sbin/nginx loads it and serves a file ID. The distribution's nginx service is never
# started. Output: target/debian-nginx/libngx_fastdfs.so
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
if ! dpkg-query -W -f='${Status}' nginx-dev 2>/dev/null | grep -q "install ok installed"; then
  # Keep the package from starting nginx on port 80.
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq nginx nginx-dev >/dev/null
  "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
fi
work=$root/target/debian-nginx
src=$work/src
if [[ ! -f $src/objs/ngx_auto_config.h ]]; then
  rm -rf "$src" && mkdir -p "$work" && cp -r /usr/share/nginx/src "$src"
  # shellcheck disable=SC1091
  (cd "$src" && source ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" >/dev/null)
fi
NGINX_SOURCE_DIR=$src NGINX_BUILD_DIR=$src/objs \
  cargo build -p ngx-fastdfs --locked --release --no-default-features --features export-modules \
  --target-dir "$work/target"
cp "$work/target/release/libngx_fastdfs.so" "$work/libngx_fastdfs.so"

# Debian's nginx loads it and serves a file from a store path laid out as FastDFS does.
t=$(mktemp -d)
trap 'nginx -p "$t" -c conf/nginx.conf -s stop 2>/dev/null || true; rm -rf "$t"' EXIT
mkdir -p "$t/conf" "$t/logs" "$t/store/data/00/00"
name=wKgBCmVT8QCAEjRWAAAwOd6tvu8483.txt
echo "served by debian nginx" > "$t/store/data/00/00/$name"
chmod -R a+rX "$t"
printf 'group_name=group1\nurl_have_group_name=true\nstore_path0=%s\n' "$t/store" > "$t/conf/mod_fastdfs.conf"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$t/conf/nginx.conf" <<CONF
load_module $work/libngx_fastdfs.so;
worker_processes 1;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
  types { text/plain txt; }
  access_log off;
  fastdfs_config $t/conf/mod_fastdfs.conf;
  server {
    listen 127.0.0.1:$port;
    location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ { ngx_fastdfs_module; }
  }
}
CONF
/usr/sbin/nginx -p "$t" -c conf/nginx.conf -t 2>&1 | tail -1
/usr/sbin/nginx -p "$t" -c conf/nginx.conf
got=$(curl -sf "http://127.0.0.1:$port/group1/M00/00/00/$name")
[[ $got == "served by debian nginx" ]] || { echo "Debian nginx did not serve the file: $got"; cat "$t/logs/error.log"; exit 1; }
echo "debian nginx $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2) loaded and served: OK"
