"""Fixtures the e2e modules share: the cloud stand-ins and a refresher factory (in-process, one namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from refresher import config as refresher_config
from refresher.app import Refresher
from tests.support.clouds import Clouds, running_clouds
from tests.support.controlplane import free_port
from tests.support.kube import Kube


@pytest.fixture(scope="module")
async def clouds(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Clouds]:
    sa_public = (kube.plane.state_dir / "pki" / "sa.pub").read_bytes()
    async with running_clouds(tmp_path_factory.mktemp("clouds"), sa_public) as running:
        yield running


RefresherFactory = Callable[..., "contextlib.AbstractAsyncContextManager[Refresher]"]
ProcessFactory = Callable[..., "contextlib.AbstractContextManager[subprocess.Popen[bytes]]"]


@pytest.fixture
def refresher_process(kube: Kube, clouds: Clouds, namespace: str, tmp_path: Path) -> ProcessFactory:
    """``python -m refresher`` as users run it, on this test's namespace (its stderr in tmp_path/refresher.log):
    for what only a process shows (its memory, its environment)."""

    @contextlib.contextmanager
    def start(
        *extra: str, env: dict[str, str] | None = None, kubeconfig: Path | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        argv = [
            sys.executable,
            "-m",
            "refresher",
            f"--namespaces={namespace}",
            f"--namespace={namespace}",
            f"--listen=127.0.0.1:{free_port()}",
            "--log-level=info",
            *clouds.refresher_args(),
            *extra,
        ]
        environment = {**os.environ, "KUBECONFIG": str(kubeconfig or kube.kubeconfig), **(env or {})}
        with (tmp_path / "refresher.log").open("ab") as log:
            proc = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(15)

    return start


@pytest.fixture
def refresher(kube: Kube, clouds: Clouds, namespace: str) -> RefresherFactory:
    @contextlib.asynccontextmanager
    async def start(*extra: str) -> AsyncIterator[Refresher]:
        args = [
            f"--kubeconfig={kube.kubeconfig}",
            f"--namespaces={namespace}",
            f"--namespace={namespace}",
            f"--listen=127.0.0.1:{free_port()}",
            "--credentials-resync=1",
            *clouds.refresher_args(),
            *extra,
        ]
        cfg = refresher_config.from_args(args)
        async with aiohttp.ClientSession() as session:
            instance = Refresher(cfg, kube.api, session)
            task = asyncio.create_task(instance.run())
            try:
                yield instance
            finally:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=15)
                assert done, "the refresher did not stop within 15s of being cancelled"
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()
                await instance.aclose()

    return start
