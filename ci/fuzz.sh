#!/usr/bin/env bash
# Fuzzes every fdfs-core decoder and parser (fdfs-core/fuzz) for N seconds (default 60).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable toolchain provide them,
# since no other toolchain can be installed on these machines.
set -euo pipefail
cd "$(dirname "$0")/../fdfs-core/fuzz"
seconds=${1:-60}
((seconds > 0)) || { echo "fuzz: skipped"; exit 0; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
RUSTC_BOOTSTRAP=1 cargo fuzz run decoders -- -max_total_time="$seconds" -rss_limit_mb=1024 2>&1 | tail -n 3
