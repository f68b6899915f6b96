#!/usr/bin/env bash
# Builds Flux's real source-controller from its published Go module (through the Go module proxy) into a cache
# directory outside the repository, keyed by version and a hash of this script, so a second run is a no-op.
#   build.sh VERSION              build if needed, print the binary's path
#   build.sh VERSION --print-path print the path only (it may not exist yet)
set -euo pipefail
version=${1:?usage: build.sh VERSION [--print-path]}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${FLUX_PASSWORDLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-passwordless}
# keyed by this version's own recipe (its replace line), so editing another version's recipe rebuilds nothing
hash=$(grep -F "  ${version%.*}.*)" "$here/build.sh" | sha256sum | cut -c1-12)
dir="$cache_root/flux/source-controller-$version-$hash"
if [[ "${2:-}" == "--print-path" ]]; then echo "$dir/source-controller"; exit 0; fi
if [[ -x "$dir/source-controller" ]]; then
  echo "source-controller $version: cached at $dir" >&2
  echo "$dir/source-controller"; exit 0
fi
command -v go >/dev/null || { echo "source-controller: 'go' is not installed" >&2; exit 1; }
# A release may declare a newer Go than the one installed (v1.10 wants 1.27): Go fetches that toolchain through
# the same module proxy (golang.org/toolchain).
export GOTOOLCHAIN=auto
module_dir() {  # the module's source tree, downloaded through the proxy (a zip, no build)
  (cd "$(mktemp -d)" && go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
}
mkdir -p "$cache_root/flux"
tmp=$(mktemp -d "$cache_root/flux/.build-XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "source-controller $version: downloading its module and the api module..." >&2
src=$(module_dir "github.com/fluxcd/source-controller@$version")
api=$(module_dir "github.com/fluxcd/source-controller/api@$version")
cp -r "$src" "$tmp/src"; chmod -R u+w "$tmp/src"
cd "$tmp/src"
# Its go.mod points the api module at ./api, which the published zip leaves out (a nested module): use the
# api module of the same version, as published.
go mod edit -replace "github.com/fluxcd/source-controller/api=$api"
# Versions the module proxy here refuses to serve, replaced by a neighbouring patch release of the same module.
# Test harness only. Safe because a patch release of these fluxcd/pkg modules changes no API, and the build and
# the e2e tests below are what vouch for the result.
case "$version" in
  v1.8.*) go mod edit -replace github.com/fluxcd/pkg/artifact@v0.8.1=github.com/fluxcd/pkg/artifact@v0.8.0
          # the checksum database has no entry for v0.8.0: take it from the module proxy unverified (this module only)
          export GONOSUMDB=github.com/fluxcd/pkg/artifact ;;
  v1.9.*) go mod edit -replace github.com/fluxcd/pkg/artifact@v0.18.3=github.com/fluxcd/pkg/artifact@v0.18.1 ;;
esac
echo "source-controller $version: building (the first build takes several minutes on 2 cores)..." >&2
( while sleep 30; do echo "source-controller $version: still building ($(( $(date +%s) - start ))s)" >&2; done ) &
ticker=$!
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/out/source-controller" . || { kill $ticker; exit 1; }
kill $ticker 2>/dev/null || true
rm -rf "$dir"; mkdir -p "$(dirname "$dir")"; mv "$tmp/out" "$dir"
echo "source-controller $version: ready in $(( $(date +%s) - start ))s at $dir" >&2
echo "$dir/source-controller"
