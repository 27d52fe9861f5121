#!/usr/bin/env bash
# Builds Kubernetes binaries from Go modules into $1 (default bin/k8s), each once (skipped when
# present). With no further arguments it builds kube-apiserver and etcd, for envtest; 'make
# e2e-cluster' also asks for kubelet, kube-controller-manager, kube-scheduler, kube-proxy and
# kubectl. setup-envtest cannot download binaries on these machines, so the project builds its
# own. The version is stamped so that 'kubectl version' and discovery report v1.36.3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../bin/k8s}
shift || true
components=("$@")
if [ ${#components[@]} -eq 0 ]; then
  components=(etcd kube-apiserver)
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
ver=v1.36.3
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=36 -X $pkg.gitTreeState=clean"
for c in "${components[@]}"; do
  if [ -x "$out/$c" ]; then
    continue
  fi
  case $c in
  etcd)
    echo "building etcd into $out (about a minute the first time)" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" ./etcd
    ;;
  kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubectl)
    case $c in
    kube-apiserver) took="about six minutes the first time" ;;
    kubelet) took="about two minutes after kube-apiserver" ;;
    *) took="under a minute after kube-apiserver" ;;
    esac
    echo "building $c $ver into $out ($took)" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$c.tmp" "./$c"
    ;;
  *)
    echo "build.sh: unknown component $c" >&2
    exit 2
    ;;
  esac
  mv "$out/$c.tmp" "$out/$c"
done
