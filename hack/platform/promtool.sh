#!/usr/bin/env bash
# Puts promtool at $1 (default bin/promtool), once, taken from Debian's prometheus package without
# installing the package (no service, no user, nothing outside bin/). The alternative, building
# github.com/prometheus/prometheus/cmd/promtool from its Go module, downloads 1.8 GB of modules
# (every service-discovery SDK) and compiles for twelve minutes on two cores; this takes seconds.
# Fetching needs apt's package lists, so on a fresh machine it runs apt-get update (as root, as CI).
set -euo pipefail
out=${1:-bin/promtool}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
if [ -x "$out" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq
  apt-get download prometheus >/dev/null 2>&1
fi
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool >promtool
chmod +x promtool
mv promtool "$out"
"$out" --version | head -1 >&2
