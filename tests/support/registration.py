"""Register a locally running webhook with a real apiserver, using the shipped MutatingWebhookConfiguration
rules (manifests/base) with clientConfig switched from the in-cluster Service to the local URL."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "manifests" / "base" / "webhook-configuration.yaml"


def webhook_configuration(name: str, url: str, ca_pem: bytes, pod_namespace_label: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(SHIPPED.read_text()))
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}
        hook["name"] = f"{hook['name'].split('.')[0]}.{name}.flux-passwordless.io"
        if pod_namespace_label is not None:
            # confine this registration to namespaces carrying the given label (independent test runs)
            hook["namespaceSelector"].setdefault("matchLabels", {})[pod_namespace_label] = "true"
    return config
