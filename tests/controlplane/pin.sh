#!/usr/bin/env bash
# Pins another Kubernetes version for the control-plane build: writes versions/VERSION/go.mod and go.sum (commit
# them), from k8s.io/kubernetes@VERSION's own go.mod (its staging modules, each at v0.MINOR.PATCH) and this
# directory's etcd. The commands' sources (*/main.go) are shared by every version.
#   pin.sh v1.37.2
set -euo pipefail
version=${1:?usage: pin.sh VERSION}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
staging="v0.${version#v1.}"
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
export GOTOOLCHAIN=auto GOFLAGS=-mod=mod
gomod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$version" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
goversion=$(awk '$1=="go"{print $2; exit}' "$gomod")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here"/etcd "$here"/kube-* "$here"/kubectl "$here"/kubelet "$work"/
{
  echo "// Test-only module: the control plane at Kubernetes $version (tests/controlplane/pin.sh)."
  echo "module github.com/flux-passwordless/flux-passwordless/tests/controlplane"
  echo
  echo "go $goversion"
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 $etcd"
  echo "	k8s.io/component-base $staging"
  echo "	k8s.io/kubectl v0.0.0"
  echo "	k8s.io/kubernetes $version"
  echo ")"
  echo
  echo "replace ("
  # every staging module k8s.io/kubernetes replaces with ./staging/src/..., at its published version
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > "$work/go.mod"
(cd "$work" && go mod tidy)
mkdir -p "$here/versions/$version"
cp "$work/go.mod" "$work/go.sum" "$here/versions/$version/"
echo "pinned Kubernetes $version in $here/versions/$version" >&2
