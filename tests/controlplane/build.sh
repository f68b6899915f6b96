#!/usr/bin/env bash
# Builds the real kube-apiserver, etcd and kubectl from Kubernetes' published Go modules into a cache
# directory outside the repository, keyed by versions and a hash of this module, so a second run is a no-op.
#   build.sh              build if needed, print the bin directory
#   build.sh --print-dir  print the bin directory only (it may not exist yet)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${FLUX_PASSWORDLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-passwordless}
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
hash=$(cat "$here/go.mod" "$here/go.sum" "$here"/*/main.go | sha256sum | cut -c1-12)
dir="$cache_root/controlplane/k8s-$k8s-etcd-$etcd-$hash"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$dir/bin"; exit 0; fi
if [[ -x "$dir/bin/kube-apiserver" && -x "$dir/bin/etcd" && -x "$dir/bin/kubectl" ]]; then
  echo "control plane: cached at $dir/bin (k8s $k8s, etcd $etcd)" >&2
  echo "$dir/bin"; exit 0
fi
command -v go >/dev/null || { echo "control plane: 'go' is not installed (needs Go >= 1.25)" >&2; exit 1; }
mkdir -p "$cache_root/controlplane"
tmp=$(mktemp -d "$cache_root/controlplane/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd "$here"
echo "control plane: downloading Go modules (k8s $k8s, etcd $etcd)..." >&2
go mod download
for cmd in etcd kube-apiserver kubectl; do
  t0=$(date +%s)
  echo "control plane: building $cmd (the first build takes several minutes on 2 cores)..." >&2
  # a heartbeat, so a long compile never looks like a hang
  ( while sleep 30; do echo "control plane: still building $cmd ($(( $(date +%s) - t0 ))s)" >&2; done ) &
  ticker=$!
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/bin/$cmd" "./$cmd" || { kill $ticker; exit 1; }
  kill $ticker 2>/dev/null || true
  echo "control plane: built $cmd in $(( $(date +%s) - t0 ))s" >&2
done
rm -rf "$dir"; mv "$tmp" "$dir"; trap - EXIT
echo "control plane: ready in $(( $(date +%s) - start ))s at $dir/bin" >&2
echo "$dir/bin"
