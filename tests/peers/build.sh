#!/usr/bin/env bash
# Builds tests/peers/harness (the Azure Workload Identity and EKS pod identity webhooks' own mutation code, from
# their published Go modules) into a cache directory outside the repository, keyed by a hash of the harness
# sources, so a second run is a no-op. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${FLUX_PASSWORDLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-passwordless}
hash=$(cd "$here/harness" && cat go.mod go.sum main.go mlog/go.mod mlog/mlog.go "$here/build.sh" | sha256sum | cut -c1-12)
dir="$cache_root/peers/harness-$hash"
if [[ -x "$dir/harness" ]]; then
  echo "peer webhooks harness: cached at $dir" >&2
  echo "$dir/harness"; exit 0
fi
command -v go >/dev/null || { echo "peer webhooks harness: 'go' is not installed" >&2; exit 1; }
export GOTOOLCHAIN=auto
mkdir -p "$cache_root/peers"
tmp=$(mktemp -d "$cache_root/peers/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "peer webhooks harness: building (the first build takes a minute or two on 2 cores)..." >&2
(cd "$here/harness" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/harness" .)
rm -rf "$dir"; mkdir -p "$dir"; mv "$tmp/harness" "$dir/harness"
echo "peer webhooks harness: ready in $(( $(date +%s) - start ))s at $dir" >&2
echo "$dir/harness"
