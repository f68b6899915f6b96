"""Test helpers around a running control plane: kubectl with the right kubeconfig, waiting helpers."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes_asyncio.client import ApiClient

from tests.support import flux
from tests.support.controlplane import K8S_MATRIX, ControlPlane

T = TypeVar("T")


# A module that runs on every Kubernetes version of the matrix (one control plane each, kept for the session):
# ``pytestmark = K8S_VERSIONS``.
K8S_VERSIONS = pytest.mark.parametrize("k8s_version", K8S_MATRIX, indirect=True, ids=[f"k8s-{v}" for v in K8S_MATRIX])


@dataclass
class Kube:
    """A control plane plus an API client on it."""

    plane: ControlPlane
    api: ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        return kubectl(self.plane, *args, stdin=stdin, check=check)


def kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None, check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(plane.kubectl), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=plane.kubectl_env(),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def install_crds(plane: ControlPlane, version: str = flux.NEWEST) -> None:
    """Flux's own GitRepository CRD of source-controller ``version`` (replacing whichever is installed)."""
    crd = flux.gitrepository_crd(version)
    kubectl(plane, "apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
    kubectl(
        plane,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        check=True,
    )
    # Established is not yet "served by discovery"; wait until kubectl can resolve the kind.
    deadline = time.monotonic() + 30
    while kubectl(plane, "get", "gitrepositories", "-A").returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError("GitRepository kind never appeared in discovery")
        time.sleep(0.2)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(interval)
