#!/usr/bin/env bash
# Builds the Debian package (cargo-deb): target/debian/fastdfs-rs_<version>-1_<arch>.deb with
# the daemons and tools, the sample configs in /etc/fdfs, systemd units, and the nginx module
# built for Debian's own nginx (ci/build-module-debian.sh) with its load_module snippet.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version '^3' -q
[[ -f target/debian-nginx/libngx_fastdfs.so ]] || bash ci/build-module-debian.sh
cargo deb -p fdfs-core --locked --strip -q
ls target/debian/*.deb
