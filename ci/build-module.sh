#!/usr/bin/env bash
# Builds ngx-fastdfs against the vendored nginx 1.28 (nginx-src crate), which also gives the
# tests their nginx binary. Prints the module's and nginx's paths.
#   ci/build-module.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug; flags=()
[[ ${1:-} == --release ]] && { profile=release; flags=(--release); }
cargo build -p ngx-fastdfs --locked "${flags[@]}"
nginx=$(ls -t target/$profile/build/nginx-sys-*/out/objs/nginx | head -1)
echo "module: $PWD/target/$profile/libngx_fastdfs.so"
echo "nginx:  $PWD/$nginx"
