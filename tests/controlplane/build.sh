#!/usr/bin/env bash
# Builds the real Kubernetes parts from Kubernetes' published Go modules into a cache directory outside the
# repository, keyed by versions and a hash of this module and the commands' sources, so a second run is a no-op.
#   [K8S_VERSION=v1.37.2] build.sh [node]   build if needed, print the bin directory
#   build.sh --print-dir [node]  print the bin directory only (it may not exist yet)
# Without "node": the control plane the tests start (etcd, kube-apiserver, kubectl). With "node": what a real
# one-node cluster adds (kubelet, kube-proxy, kube-scheduler, kube-controller-manager; tests/node).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${FLUX_PASSWORDLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-passwordless}
print_only=false
if [[ "${1:-}" == "--print-dir" ]]; then print_only=true; shift; fi
# K8S_VERSION: another Kubernetes version pinned by pin.sh (versions/VERSION/go.mod); default: this go.mod's
mod="$here"
default_k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
if [[ -n "${K8S_VERSION:-}" && "${K8S_VERSION}" != "$default_k8s" ]]; then
  mod="$here/versions/$K8S_VERSION"
  [[ -f "$mod/go.mod" ]] || { echo "Kubernetes $K8S_VERSION is not pinned: bash tests/controlplane/pin.sh $K8S_VERSION" >&2; exit 1; }
fi
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$mod/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$mod/go.mod")
if [[ "${1:-}" == "node" ]]; then
  what="node"; cmds=(kubelet kube-proxy kube-scheduler kube-controller-manager); prefix="node-k8s-$k8s"
else
  what="control plane"; cmds=(etcd kube-apiserver kubectl); prefix="k8s-$k8s-etcd-$etcd"
fi
# Versions stamped as in Kubernetes' own release builds: kubelet registers its Node with it, and the
# version skew checks compare it (unstamped, it says v0.0.0-master+$Format:%H$).
stamp="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
hash=$( (cat "$mod/go.mod" "$mod/go.sum"; for c in "${cmds[@]}"; do cat "$here/$c/main.go"; done; echo "$stamp") \
       | sha256sum | cut -c1-12)
dir="$cache_root/controlplane/$prefix-$hash"
if $print_only; then echo "$dir/bin"; exit 0; fi
have=true
for c in "${cmds[@]}"; do [[ -x "$dir/bin/$c" ]] || have=false; done
if $have; then
  echo "$what: cached at $dir/bin (k8s $k8s)" >&2
  echo "$dir/bin"; exit 0
fi
command -v go >/dev/null || { echo "$what: 'go' is not installed (needs Go >= 1.25)" >&2; exit 1; }
mkdir -p "$cache_root/controlplane"
tmp=$(mktemp -d "$cache_root/controlplane/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
if [[ "$mod" == "$here" ]]; then
  cd "$here"
else  # the shared commands' sources with this version's module file
  mkdir -p "$tmp/src"
  for c in "${cmds[@]}"; do cp -r "$here/$c" "$tmp/src/"; done
  cp "$mod/go.mod" "$mod/go.sum" "$tmp/src/"
  cd "$tmp/src"
fi
export GOTOOLCHAIN=auto  # a version may want a newer Go than the one installed: fetched through the proxy
echo "$what: downloading Go modules (k8s $k8s, etcd $etcd)..." >&2
go mod download
for cmd in "${cmds[@]}"; do
  t0=$(date +%s)
  echo "$what: building $cmd (the first build takes several minutes on 2 cores)..." >&2
  # a heartbeat, so a long compile never looks like a hang
  ( while sleep 30; do echo "$what: still building $cmd ($(( $(date +%s) - t0 ))s)" >&2; done ) &
  ticker=$!
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $stamp" -o "$tmp/bin/$cmd" "./$cmd" || { kill $ticker; exit 1; }
  kill $ticker 2>/dev/null || true
  echo "$what: built $cmd in $(( $(date +%s) - t0 ))s" >&2
done
rm -rf "$dir" "$tmp/src"; mv "$tmp" "$dir"; trap - EXIT
echo "$what: ready in $(( $(date +%s) - start ))s at $dir/bin" >&2
echo "$dir/bin"
