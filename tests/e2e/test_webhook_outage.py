"""A webhook outage, with the shipped registration (its matchConditions) pointing at a webhook that is gone:
managed GitRepositories fail closed, and nothing else is held up: Flux can still remove its finalizer from a
managed GitRepository being deleted, unrelated GitRepositories are created and updated, pods start."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from common import names
from tests.support.kube import Kube
from tests.support.registration import register
from tests.support.webhook import running_webhook

GROUP, VERSION, PLURAL = names.FLUX_SOURCE_GROUP, "v1", names.GITREPOSITORY_PLURAL


def gitrepository(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": {"interval": "1m", **spec},
    }


def managed(name: str) -> dict[str, Any]:
    """A GitRepository as the webhook stores it, with source-controller's finalizer."""
    body = gitrepository(
        name, url="https://github.com/o/r", provider="generic", secretRef={"name": f"{name}-git-token"}
    )
    body["metadata"]["annotations"] = {
        names.ANNOTATION_PROVIDER: "github",
        names.ANNOTATION_CREDENTIALS_SECRET: "github-app",
    }
    body["metadata"]["finalizers"] = ["finalizers.fluxcd.io"]
    return body


async def kubectl(kube: Kube, *args: str, stdin: str | None = None) -> Any:
    return await asyncio.to_thread(kube.kubectl, *args, stdin=stdin)


async def stopped_webhook(kube: Kube, namespace: str, tmp_path: Path) -> None:
    """Register a webhook for ``namespace`` only, then stop it: the registration points at nothing."""
    label = f"fp-down-{uuid.uuid4().hex[:6]}"
    labels = {label: "true", "flux-passwordless.io/inject": "enabled"}
    await client.CoreV1Api(kube.api).patch_namespace(namespace, {"metadata": {"labels": labels}})
    async with running_webhook(tmp_path, kubeconfig=kube.kubeconfig) as hook:
        await register(kube, hook, "down", label)


async def test_an_outage_fails_managed_gitrepositories_closed_and_pods_open(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    await stopped_webhook(kube, namespace, tmp_path)
    try:
        spec = {"url": "https://github.com/o/r", "provider": "github", "secretRef": {"name": "x"}}
        out = await kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(gitrepository("app", **spec)))
        assert out.returncode != 0
        assert 'failed calling webhook "gitrepositories.down.flux-passwordless.io"' in out.stderr
        assert "connection refused" in out.stderr
        print(f"\ncreate, webhook down: {out.stderr.strip()}")
        core = client.CoreV1Api(kube.api)
        started = time.monotonic()
        await core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="p"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
            ),
        )
        assert time.monotonic() - started < 5
    finally:
        await client.AdmissionregistrationV1Api(kube.api).delete_mutating_webhook_configuration("down")


async def test_an_outage_never_wedges_flux(kube: Kube, namespace: str, tmp_path: Path) -> None:
    """Regression: with the webhook down every GitRepository in the cluster was frozen, and deleting one hung for
    ever because source-controller could not remove its finalizer."""
    custom = client.CustomObjectsApi(kube.api)
    for name in ("leaving", "staying"):  # stored before the outage, as the webhook stores them
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, managed(name))
    await stopped_webhook(kube, namespace, tmp_path)
    try:
        # deleting a managed GitRepository completes: Flux removes its finalizer from an object being deleted
        out = await kubectl(kube, "delete", "gitrepository", "leaving", "-n", namespace, "--wait=false")
        assert out.returncode == 0, out.stderr
        unfinalize = json.dumps({"metadata": {"finalizers": None}})
        out = await kubectl(
            kube, "patch", "gitrepository", "leaving", "-n", namespace, "--type=merge", "-p", unfinalize
        )
        assert out.returncode == 0, out.stderr
        out = await kubectl(kube, "wait", "--for=delete", "gitrepository/leaving", "-n", namespace, "--timeout=10s")
        assert out.returncode == 0, out.stderr

        # an unrelated (generic) GitRepository is created and updated as if we did not exist
        plain = json.dumps(gitrepository("plain", url="https://example.com/o/r.git"))
        out = await kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=plain)
        assert out.returncode == 0, out.stderr
        interval = json.dumps({"spec": {"interval": "5m"}})
        out = await kubectl(kube, "patch", "gitrepository", "plain", "-n", namespace, "--type=merge", "-p", interval)
        assert out.returncode == 0, out.stderr

        # a managed one's spec change is refused, with the apiserver's own words
        out = await kubectl(kube, "patch", "gitrepository", "staying", "-n", namespace, "--type=merge", "-p", interval)
        assert out.returncode != 0
        assert 'failed calling webhook "gitrepositories.down.flux-passwordless.io"' in out.stderr
        print(f"\nmanaged spec change, webhook down: {out.stderr.strip()}")
        # a typo still reaches us (and so fails closed rather than slipping past)
        typo = json.dumps(gitrepository("typo", url="https://github.com/o/r", provider="gitub"))
        out = await kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=typo)
        assert out.returncode != 0
        assert "failed calling webhook" in out.stderr
    finally:
        await client.AdmissionregistrationV1Api(kube.api).delete_mutating_webhook_configuration("down")
        await kubectl(
            kube,
            "patch",
            "gitrepository",
            "staying",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": None}}),
        )
