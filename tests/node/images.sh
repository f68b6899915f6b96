#!/usr/bin/env bash
# The images the tests' node needs and no registry can give it, made from Debian's packages and cached in
# podman's store (a second run is a no-op):
#   images.sh base    localhost/flux-passwordless/base:bookworm  Debian bookworm + python3 + pip, by mmdebstrap:
#                     what our Dockerfile builds FROM here (users keep python:3.11-slim)
#   images.sh pause   localhost/pause:3.10                       the pod sandbox image, from pause.c
# Prints the image reference. podman runs with runc and cgroupfs (crun fails on hybrid cgroup hosts).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
podman=(podman --runtime runc --cgroup-manager cgroupfs --events-backend file)
what=${1:?usage: images.sh base|pause}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $what in
  base)
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    ref=localhost/flux-passwordless/base:bookworm-$(echo "$mirror" | sha256sum | cut -c1-8)
    if ! "${podman[@]}" image exists "$ref"; then
      t0=$(date +%s)
      echo "images: bootstrapping $ref from $mirror (about a minute)..." >&2
      # Debian marks its python as externally managed; the image is ours to install into, as in python:3.11-slim.
      mmdebstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        bookworm "$tmp/base.tar" "$mirror" >&2
      "${podman[@]}" import --change 'CMD ["python3"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tmp/base.tar" "$ref" >/dev/null
      echo "images: $ref in $(( $(date +%s) - t0 ))s" >&2
    fi
    echo "$ref" ;;
  pause)
    ref=localhost/pause:3.10-$(sha256sum "$here/pause.c" | cut -c1-8)
    if ! "${podman[@]}" image exists "$ref"; then
      gcc -static -Os -s -o "$tmp/pause" "$here/pause.c"
      printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$tmp/Containerfile"
      "${podman[@]}" build --network none -t "$ref" "$tmp" >&2
    fi
    echo "$ref" ;;
  *) echo "images.sh: unknown image $what" >&2; exit 2 ;;
esac
