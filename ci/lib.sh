# Shared by the ci/ scripts.

# Installs the Debian packages that are missing (quietly; fails loudly).
ensure_apt_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "installing ${missing[*]}"
  local sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What building nginx (vendored) and the module needs; tzdata (local-time output is tested),
# iproute2 and nftables (the tests that make hosts with network namespaces, loopback addresses
# and a NAT router), openssl (a test certificate for the module behind TLS).
BUILD_PACKAGES=(pkg-config libclang-dev clang libpcre2-dev zlib1g-dev libssl-dev make curl openssl tzdata iproute2 nftables)
