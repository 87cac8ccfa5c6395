#!/usr/bin/env bash
# Runs every check and test of fastdfs-rs. This is the README's test command and what CI runs.
# On a fresh Debian bookworm machine it installs what it needs first (idempotent).
#   FDFS_FUZZ_SECONDS  how long the fuzz smoke run lasts (default 30; 0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
# CI builds once from clean: incremental state would only take disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step() { printf '\n=== %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
cargo --version
# The linker dies with SIGBUS, not a message, when the disk fills: say how much there is.
df -h . /tmp | sed 's/^/  /'

# shellcheck source=ci/lib.sh
source ci/lib.sh
step "packages"
# chromium: the browser test (tests/tests/browser.rs) opens pages served by the module.
ensure_apt_packages "${BUILD_PACKAGES[@]}" chromium python3-pil

# The recorded test data (golden captures, C-written storage trees) is in tests/data. shared/
# beside the checkout adds the C FastDFS daemons and the third-party clients' drivers: the tests
# that need them skip, saying so, without it. Where it is there, its copies of the data must be
# ours.
export FDFS_SHARED_DIR=${FDFS_SHARED_DIR:-$here/../shared}
if [[ -d $FDFS_SHARED_DIR ]]; then
  for f in tests/data/captures/* tests/data/fixtures/*; do
    theirs=$FDFS_SHARED_DIR/${f#tests/data/}
    [[ ! -f $theirs ]] || cmp -s "$f" "$theirs" || {
      echo "$f differs from $theirs: copy the new recording into tests/data" >&2; exit 1; }
  done
else
  echo "note: $FDFS_SHARED_DIR is absent: the tests with C daemons and third-party clients will skip" >&2
fi

# Third-party FastDFS clients from PyPI, as shared/interop/run.sh installs them.
interop_cache=${FDFS_INTEROP_CACHE:-$HOME/.cache/fastdfs-interop}
if [[ ! -x $interop_cache/py3fdfs/bin/python ]]; then
  step "pip install py3Fdfs"
  python3 -m venv "$interop_cache/py3fdfs"
  "$interop_cache/py3fdfs/bin/pip" install -q py3Fdfs==2.2.0
fi
export FDFS_PY3FDFS_PYTHON=$interop_cache/py3fdfs/bin/python
# The Django example (examples/django) runs in the same environment.
"$FDFS_PY3FDFS_PYTHON" -c 'import django' 2>/dev/null || "$interop_cache/py3fdfs/bin/pip" install -q 'django>=4.2,<5'
# The tus client from PyPI the resumable-upload tests drive (tuspy).
"$FDFS_PY3FDFS_PYTHON" -c 'import tusclient' 2>/dev/null || "$interop_cache/py3fdfs/bin/pip" install -q 'tuspy>=1.0,<2'
# The tus clients from npm (tus-js-client in Node; Uppy's bundle in Chromium), as pinned.
[[ -d tests/js/tus/node_modules/uppy ]] || (cd tests/js/tus && npm ci --no-audit --no-fund -q >/dev/null)


step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The pure core on its own, as the nginx module links it.
cargo clippy -p fdfs-core --no-default-features --locked -- -D warnings

step "layers: the nginx module links no runtime"
if cargo tree -p ngx-fastdfs -e normal --locked | grep -E '^[^a-z]*(tokio|clap|anyhow) v'; then
  echo "ngx-fastdfs must not depend on tokio, clap or anyhow (fdfs-core without default features)" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
step "quick tests: fdfs-core's unit, golden and in-process tests"
# No daemon, no nginx: a broken codec or parser fails here in a minute or two, before the build
# of nginx and the end-to-end tests.
cargo test -p fdfs-core --locked 2>&1 | tee "$log"

step "cargo test: the rest (end-to-end, the module)"
# The e2e tests run the workspace's binaries, the module and the nginx it was built against.
cargo build --workspace --locked
cargo test --workspace --exclude fdfs-core --locked 2>&1 | tee -a "$log"
read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p+0, f+0}' "$log")

step "quickstart (README command one), twice, then stop"
bash ci/quickstart.sh >/dev/null
bash ci/quickstart.sh | tail -4
curl -sf -o /dev/null "$(cat run/last_url)" || { echo "quickstart URL not served"; exit 1; }
bash ci/quickstart.sh stop

step "module for Debian's nginx 1.22"
bash ci/build-module-debian.sh

step "Debian package: build, install, run a cluster from it"
bash ci/package.sh
bash ci/package-test.sh

step "fuzz smoke"
bash ci/fuzz.sh "${FDFS_FUZZ_SECONDS:-30}"

echo
echo "ci/test.sh: all checks passed"
# The plain closing line CI reads: the sum over every cargo test binary.
echo "cargo-test: $passed passed, $failed failed"
