"""Flux's real source-controller as a plain process against the local apiserver, for the e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import flux
from tests.support.controlplane import ControlPlane, free_port
from tests.support.kube import kubectl

READY_S = 90.0


@dataclass
class SourceController:
    version: str
    proc: subprocess.Popen[bytes]
    log: Path
    storage: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def install_all_crds(plane: ControlPlane, version: str) -> None:
    for crd in flux.all_crds(version):
        kubectl(plane, "apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
    kubectl(plane, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", check=True)


@contextlib.contextmanager
def running_source_controller(
    plane: ControlPlane, version: str, workdir: Path, ca_file: Path | None = None
) -> Iterator[SourceController]:
    """Start it (all its CRDs installed first) and wait until its GitRepository workers run: its /readyz
    answers before they start. ``ca_file``: a CA it trusts for HTTPS Git servers (SSL_CERT_FILE)."""
    binary = flux.source_controller(version)
    install_all_crds(plane, version)
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / f"source-controller-{version}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--storage-path={storage}",
                f"--storage-addr=127.0.0.1:{port}",
                f"--storage-adv-addr=127.0.0.1:{port}",
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{free_port()}",
                "--enable-leader-election=false",
                "--watch-all-namespaces",
                "--log-level=debug",
            ],
            env={
                **os.environ,
                "KUBECONFIG": str(plane.kubeconfig),
                **({"SSL_CERT_FILE": str(ca_file)} if ca_file else {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    controller = SourceController(version, proc, log, storage)
    try:
        deadline = time.monotonic() + READY_S
        while not ('"Starting workers"' in controller.logs() and '"GitRepository"' in controller.logs()):
            if proc.poll() is not None:
                raise RuntimeError(f"source-controller {version} exited: {controller.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"source-controller {version} workers not started: {controller.logs()[-3000:]}")
            time.sleep(0.2)
        yield controller
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
