"""What a test does with a GitRepository under the real source-controller: the user's manifest, kubectl apply,
and waiting for Ready on an artifact (which only a working token gives)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import yaml
from kubernetes_asyncio import client

from tests.support.gitrepos import GROUP, PLURAL, VERSION
from tests.support.kube import Kube, eventually
from tests.support.sourcecontroller import SourceController

READY_S = 30.0


def manifest(name: str, namespace: str, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"interval": "1m", "timeout": "20s", "ref": {"branch": "main"}, **spec},
        }
    )


async def apply(kube: Kube, text: str, *flags: str) -> None:
    out = await asyncio.to_thread(kube.kubectl, "apply", *flags, "-f", "-", stdin=text)
    assert out.returncode == 0, out.stderr


async def get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = await client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


async def ready(
    kube: Kube, namespace: str, name: str, controller: SourceController, revision_not: str | None = None
) -> tuple[str, float]:
    """Wait for Ready=True with an artifact (on a revision other than ``revision_not``): (revision, seconds)."""
    started = time.monotonic()

    async def probe() -> str | None:
        obj = await get(kube, namespace, name)
        status = obj.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        revision = (status.get("artifact") or {}).get("revision")
        if conditions.get("Ready", {}).get("status") == "True" and revision and revision != revision_not:
            return str(revision)
        return None

    try:
        revision = await eventually(probe, timeout=READY_S, interval=0.1, what=f"GitRepository {name} Ready")
    except TimeoutError:
        status = (await get(kube, namespace, name)).get("status")
        raise AssertionError(f"not Ready: {json.dumps(status)}\n{controller.logs()[-2000:]}") from None
    return revision, time.monotonic() - started
