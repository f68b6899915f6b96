"""Register a locally running webhook with a real apiserver, using the shipped MutatingWebhookConfiguration
rules (manifests/base) with clientConfig switched from the in-cluster Service to the local URL."""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from tests.support.kube import Kube, eventually
from tests.support.webhook import RunningWebhook

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "manifests" / "base" / "webhook-configuration.yaml"


def webhook_configuration(name: str, url: str, ca_pem: bytes, pod_namespace_label: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(SHIPPED.read_text()))
    config_name = config["metadata"]["name"]
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}
        if name != config_name:  # several registrations side by side (tests) need distinct webhook names
            hook["name"] = f"{hook['name'].split('.')[0]}.{name}.flux-passwordless.io"
        if pod_namespace_label is not None:
            # confine this registration to namespaces carrying the given label (independent test runs)
            hook["namespaceSelector"].setdefault("matchLabels", {})[pod_namespace_label] = "true"
    return config


async def register(kube: Kube, hook: RunningWebhook, name: str, label: str | None = None) -> None:
    """Create the configuration and wait until the apiserver really calls the webhook."""
    body = webhook_configuration(name, hook.url, hook.ca_pem, label)
    admission = client.AdmissionregistrationV1Api(kube.api)
    await admission.create_mutating_webhook_configuration(body)  # type: ignore[arg-type]
    probe_ns = f"probe-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube.api)
    labels = {label: "true"} if label else {}
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe_ns, labels=labels)))
    manifest = yaml.safe_dump(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "probe", "namespace": probe_ns},
            "spec": {"interval": "1m", "url": "https://github.com/o/r", "provider": "gitub"},
        }
    )

    async def denied_by_webhook() -> bool:
        out = await asyncio.to_thread(kube.kubectl, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
        return "admission webhook" in out.stderr

    await eventually(denied_by_webhook, timeout=15, interval=0.1, what="webhook registration to take effect")
    await core.delete_namespace(probe_ns)
