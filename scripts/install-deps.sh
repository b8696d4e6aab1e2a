#!/usr/bin/env bash
# Brings a fresh Debian 12 machine to a state where lockd builds and tests: Debian packages only.
# Idempotent, and quiet when everything is already there. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev prometheus-cpp-dev
  python3-prometheus-client python3-yaml
  clang-format iproute2 nftables procps curl
  postgresql-15 libpq-dev redis-server libhiredis-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
installing() { [[ " ${missing[*]} " == *" $1 "* ]]; }
echo "install-deps: installing ${missing[*]}"
# The adapter tests start their own PostgreSQL and redis-server. Keep the packages from leaving
# system ones running: no "15/main" cluster (the setting is in place only during this install),
# and redis-server's service stopped and disabled — only for packages installed here.
no_main=/etc/postgresql-common/createcluster.d/50-lockd-install-deps.conf
if installing postgresql-15; then
  $SUDO mkdir -p "$(dirname "$no_main")"
  echo "create_main_cluster = false" | $SUDO tee "$no_main" >/dev/null
  trap '$SUDO rm -f "$no_main"' EXIT
fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
  --no-install-recommends "${missing[@]}" >/dev/null
if installing redis-server && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  echo "install-deps: redis-server's system service stopped and disabled (the tests start their own)"
fi
