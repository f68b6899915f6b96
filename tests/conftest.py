"""Shared fixtures: a real control plane for the session, a fresh namespace per test."""

# ruff: noqa: E402 - kubeimports.install() must run before the first import of kubernetes-asyncio

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common import kubeimports

kubeimports.install()  # the suite imports kubernetes-asyncio as the shipped processes do: lazily

from kubernetes_asyncio import client, config

from common import logs
from tests.support.controlplane import DEFAULT_K8S, ControlPlane, binaries_dir
from tests.support.kube import Kube, install_crds

E2E_DIR = Path(__file__).parent / "e2e"


def pytest_configure(config: pytest.Config) -> None:
    logs.quiet_libraries()  # tests log at DEBUG; library loggers are capped exactly as in production


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


HANG_REPORT_AFTER_S = float(os.environ.get("FLUX_PASSWORDLESS_HANG_REPORT_S", "120"))


@pytest.fixture(autouse=True)
async def report_hangs(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """If a test runs long, print every asyncio task's stack (pytest-timeout shows only threads, which are idle
    when an await never returns)."""

    async def watchdog() -> None:
        await asyncio.sleep(HANG_REPORT_AFTER_S)
        print(
            f"\n=== {request.node.nodeid} still running after {HANG_REPORT_AFTER_S:.0f}s; asyncio tasks:",
            file=sys.stderr,
        )
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.print_stack(file=sys.stderr)

    task = asyncio.create_task(watchdog())
    yield
    task.cancel()


@pytest.fixture(scope="session")
def k8s_version(request: pytest.FixtureRequest) -> str:
    """The Kubernetes version of the control plane: the default, or a version of ``K8S_MATRIX`` where a module
    parametrizes it (``pytestmark = K8S_VERSIONS``, tests.support.kube)."""
    return str(getattr(request, "param", DEFAULT_K8S))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory, k8s_version: str) -> Iterator[ControlPlane]:
    bin_dir = binaries_dir(version=k8s_version)
    if not (bin_dir / "kube-apiserver").exists():
        pytest.fail(f"no control plane at {bin_dir}: run `make control-plane` (or the README's test command)")
    plane = ControlPlane(tmp_path_factory.mktemp(f"controlplane-{k8s_version}"), bin_dir)
    plane.start()
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(control_plane.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(cfg) as api:
        yield Kube(control_plane, api)


@pytest.fixture
async def namespace(kube: Kube) -> AsyncIterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount, as a controller-manager would add)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube.api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    await core.create_namespaced_service_account(
        name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    yield name
    await core.delete_namespace(name)
