"""Flux's own GitRepository CRDs, taken from the ``github.com/fluxcd/source-controller`` Go module (fetched through
the Go module proxy, cached under ~/.cache/flux-passwordless/flux), never a copy we wrote: the enum and the CEL
rules differ between versions, and a hand-written CRD once hid a broken feature.

``VERSIONS`` is the supported matrix, oldest first: the oldest the proxy serves (our honest floor), one in the
middle, and the newest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MODULE = "github.com/fluxcd/source-controller"
VERSIONS = ("v1.8.5", "v1.9.6", "v1.10.1")  # source-controller releases (Flux 2.8, 2.9, 2.10)
NEWEST = VERSIONS[-1]
CRD_DIR = "config/crd/bases"
CRD_PATH = f"{CRD_DIR}/source.toolkit.fluxcd.io_gitrepositories.yaml"
BUILD = Path(__file__).resolve().parents[1] / "flux" / "build.sh"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flux-passwordless" / "flux"


def module_dir(version: str) -> Path:
    """The module's source tree at ``version`` (``go mod download``: a zip from the proxy, no build)."""
    with tempfile.TemporaryDirectory() as empty:  # outside any go.mod
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
            cwd=empty,
            # a release may declare a newer Go than the one installed: Go fetches that toolchain through the
            # same module proxy (golang.org/toolchain)
            env={**os.environ, "GOTOOLCHAIN": "auto"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {out.stdout}{out.stderr}")
    return Path(json.loads(out.stdout)["Dir"])


def gitrepository_crd(version: str = NEWEST) -> Path:
    """The GitRepository CRD shipped with source-controller ``version``."""
    target = CACHE / version / "gitrepositories.yaml"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(module_dir(version) / CRD_PATH, partial)
        partial.replace(target)  # atomic: a reader never sees half a file
    return target


def all_crds(version: str = NEWEST) -> list[Path]:
    """Every CRD source-controller ``version`` serves (its manager waits for all of its kinds)."""
    target = CACHE / version / "all"
    if not target.exists():
        partial = target.with_name("all.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(module_dir(version) / CRD_DIR, partial)
        partial.chmod(0o755)
        partial.replace(target)
    return sorted(target.glob("*.yaml"))


def source_controller(version: str) -> Path:
    """The real source-controller binary of ``version``, built from its Go module (cached; minutes cold)."""
    out = subprocess.run(["bash", str(BUILD), version], capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"building source-controller {version} failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])
