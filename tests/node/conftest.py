"""The deploy tests' world: a real one-node cluster (tests/support/node.py), our image built from the Dockerfile
and loaded into it, `kubectl apply -k manifests/` as a user runs it, the cloud stand-ins on the host's end of the
node's veth (pods reach them there), and the real source-controller.

Nothing the manifests deploy is stood in for by a process of the test's: the webhook and the refresher under
test are the pods. source-controller runs as a local process (its image cannot be built here: no registry for
its distroless base), reading the cluster through the admin kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from tests.support import node as harness
from tests.support.clouds import Clouds, running_clouds
from tests.support.controlplane import ControlPlane, binaries_dir
from tests.support.kube import Kube, kubectl
from tests.support.sourcecontroller import SourceController, install_all_crds, running_source_controller

SLOT = 2  # make node-up uses 1: both can run at once
FLUX_VERSION = harness.FLUX_VERSION
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
NAMESPACE = "flux-passwordless"


@dataclass
class Node:
    layout: harness.Layout
    plane: ControlPlane  # a handle on the node's apiserver (kubeconfig, kubectl), not a process of ours
    ready_seconds: float
    image_build_seconds: float
    image_load_seconds: float


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    if missing := harness.missing_packages():
        pytest.fail(f"the node tests need Debian packages: apt-get install {' '.join(missing)} (make node-deps)")
    layout = harness.Layout(SLOT, Path(f"/tmp/fp-node-{SLOT}"))
    image_s = harness.build_image()
    with harness.running(layout) as status:
        t0 = time.monotonic()
        harness.load_image(layout, harness.IMAGE)
        load_s = time.monotonic() - t0
        plane = ControlPlane(layout.state, binaries_dir(), api_port=6443, host=layout.node_ip)
        yield Node(layout, plane, float(str(status["ready_seconds"])), image_s, load_s)


@pytest.fixture(scope="session")
async def node_kube(node: Node) -> AsyncIterator[Kube]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(node.plane.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(cfg) as api:
        yield Kube(node.plane, api)


@pytest.fixture(scope="session")
async def node_clouds(node: Node, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Clouds]:
    sa_public = (node.layout.pki / "sa.pub").read_bytes()
    async with running_clouds(tmp_path_factory.mktemp("node-clouds"), sa_public, node.layout.host_ip) as clouds:
        yield clouds


@dataclass
class Deployed:
    apply_to_ready_s: float  # every pod Ready, the certs Job complete
    apply_to_admitting_s: float  # and the apiserver reaching the webhook through its Service
    install: Path  # the kustomization applied


def wait_rollout(plane: ControlPlane, timeout_s: int = 120) -> None:
    for deployment in ("flux-passwordless-webhook", "flux-passwordless-refresher"):
        kubectl(
            plane,
            "rollout",
            "status",
            f"deployment/{deployment}",
            "-n",
            NAMESPACE,
            f"--timeout={timeout_s}s",
            check=True,
            timeout=timeout_s + 30,
        )
    wait_certs_job(plane, timeout_s)


def wait_certs_job(plane: ControlPlane, timeout_s: int = 120) -> None:
    kubectl(
        plane,
        "wait",
        "--for=condition=complete",
        "job/flux-passwordless-certs",
        "-n",
        NAMESPACE,
        f"--timeout={timeout_s}s",
        check=True,
        timeout=timeout_s + 30,
    )


def ca_bundle(plane: ControlPlane) -> str:
    """The caBundle the certs Job injected into our MutatingWebhookConfiguration."""
    return kubectl(
        plane,
        "get",
        "mutatingwebhookconfiguration",
        "flux-passwordless",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
        check=True,
    ).stdout


def wait_admitting(plane: ControlPlane, timeout_s: float = 60) -> None:
    """Until the apiserver reaches the webhook through its Service. Pods Ready is not yet that: for a moment the
    Service has no programmed endpoint and kube-proxy rejects the connection (as on any cluster right after an
    install: admissions fail in that window, failurePolicy Fail)."""
    probe = yaml.safe_dump(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "probe", "namespace": "default"},
            "spec": {
                "interval": "1m",
                "url": "https://source.developers.google.com/p/p/r/x",
                "provider": "gcp",
                "secretRef": {"name": "creds"},
            },
        }
    )
    deadline = time.monotonic() + timeout_s
    while True:
        out = kubectl(plane, "create", "--dry-run=server", "-f", "-", stdin=probe)
        if out.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webhook is not reachable through its Service: {out.stderr}")
        time.sleep(0.2)


REFRESHER = "flux-passwordless-refresher"


def github_api_env(clouds: Clouds) -> dict[str, str]:
    """The GitHub stand-in is a GitHub Enterprise Server to the refresher: an admin allows its API base."""
    return {"name": "FLUX_PASSWORDLESS_GITHUB_API_URLS", "value": clouds.github.url}


def default_install(tmp: Path, clouds: Clouds) -> Path:
    """The shipped manifests as the README installs them, with the one setting an admin of a GitHub Enterprise
    Server adds (the refresher's --github-api-urls, through its environment variable)."""
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": github_api_env(clouds)}]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS, tmp)],  # kustomize takes no absolute paths
        "patches": [
            {"target": {"kind": "Deployment", "name": "flux-passwordless-refresher"}, "patch": json.dumps(patch)}
        ],
    }
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kustomization.yaml").write_text(json.dumps(kustomization))
    return tmp


@pytest.fixture(scope="session")
def deployed(node: Node, node_clouds: Clouds, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """Flux's CRDs, then the shipped manifests as the README says: `kubectl apply -k manifests/` (through an overlay
    that only allows the GitHub stand-in's API, see ``default_install``)."""
    install_all_crds(node.plane, FLUX_VERSION)
    install = default_install(tmp_path_factory.mktemp("install"), node_clouds)
    t0 = time.monotonic()
    kubectl(node.plane, "apply", "-k", str(install), check=True)
    wait_rollout(node.plane)
    ready_s = time.monotonic() - t0
    wait_admitting(node.plane)
    return Deployed(ready_s, time.monotonic() - t0, install)


@pytest.fixture(scope="session")
def node_source_controller(
    node: Node, node_clouds: Clouds, deployed: Deployed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourceController]:
    workdir = tmp_path_factory.mktemp("node-source-controller")
    with running_source_controller(node.plane, FLUX_VERSION, workdir, ca_file=node_clouds.tls.ca_file) as controller:
        yield controller


@pytest.fixture
async def tenant(node_kube: Kube, deployed: Deployed) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.CoreV1Api(node_kube.api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await asyncio.to_thread(kubectl, node_kube.plane, "delete", "namespace", name, "--wait=false")
