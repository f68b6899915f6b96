"""manifests/ applies cleanly to a real apiserver; certs/ keeps its Secret and the caBundle."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from kubernetes_asyncio import client

from certs.authority import service_dns_names
from certs.cluster import ensure_secret, inject_ca_bundle
from tests.support.kube import Kube
from tests.support.registration import webhook_configuration

MANIFESTS = Path(__file__).parents[2] / "manifests"


async def test_default_install_passes_server_side_dry_run(kube: Kube) -> None:
    # The namespace must exist for a server-side dry run of namespaced objects in it.
    await asyncio.to_thread(kube.kubectl, "create", "namespace", "flux-passwordless")
    try:
        out = await asyncio.to_thread(kube.kubectl, "apply", "-k", str(MANIFESTS), "--dry-run=server")
        assert out.returncode == 0, out.stderr
        for kind in (
            "deployment.apps/flux-passwordless-webhook",
            "poddisruptionbudget.policy/flux-passwordless-webhook",
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/flux-passwordless",
            "job.batch/flux-passwordless-certs",
            "clusterrole.rbac.authorization.k8s.io/flux-passwordless-webhook",
            "networkpolicy.networking.k8s.io/flux-passwordless-webhook",
            "networkpolicy.networking.k8s.io/flux-passwordless-refresher",
        ):
            assert kind in out.stdout
    finally:
        await asyncio.to_thread(kube.kubectl, "delete", "namespace", "flux-passwordless", "--wait=false")


def built(kube: Kube, overlay: Path) -> list[dict[str, Any]]:
    out = kube.kubectl("kustomize", str(overlay))
    assert out.returncode == 0, out.stderr
    return list(yaml.safe_load_all(out.stdout))


def grants(docs: list[dict[str, Any]], role: str, resource: str) -> bool:
    found = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role)
    return any(resource in r.get("resources", []) for r in found["rules"])


async def test_serviceaccount_tokens_only_with_the_azure_per_object_overlay(kube: Kube) -> None:
    default = await asyncio.to_thread(built, kube, MANIFESTS)
    per_object = await asyncio.to_thread(built, kube, MANIFESTS / "overlays" / "per-object-identity")
    assert not grants(default, "flux-passwordless-refresher", "serviceaccounts/token")
    assert grants(per_object, "flux-passwordless-refresher", "serviceaccounts/token")


async def test_the_webhook_reads_no_secret_unless_the_overlay_asks(kube: Kube) -> None:
    """The component exposed to the network holds no Secret permission in the default install."""
    default = await asyncio.to_thread(built, kube, MANIFESTS)
    warnings = await asyncio.to_thread(built, kube, MANIFESTS / "overlays" / "secret-warnings")
    assert not grants(default, "flux-passwordless-webhook", "secrets")
    assert grants(warnings, "flux-passwordless-webhook", "secrets")

    def args(docs: list[dict[str, Any]]) -> list[str]:
        deployment = next(d for d in docs if d["kind"] == "Deployment" and "webhook" in d["metadata"]["name"])
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--secret-warnings" not in args(default)
    assert "--secret-warnings" in args(warnings)


async def test_cert_manager_overlay_builds(kube: Kube) -> None:
    out = await asyncio.to_thread(kube.kubectl, "kustomize", str(MANIFESTS / "overlays" / "cert-manager"))
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    kinds = {d["kind"] for d in docs}
    assert {"Certificate", "Issuer", "MutatingWebhookConfiguration", "Deployment"} <= kinds
    assert "Job" not in kinds, "no in-cluster generator when cert-manager issues the certificate"
    config = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "flux-passwordless/flux-passwordless-webhook"
    )


async def test_the_sharding_overlay_runs_a_refresher_per_shard(kube: Kube) -> None:
    docs = await asyncio.to_thread(built, kube, MANIFESTS / "overlays" / "sharding")
    refreshers = {
        d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment" and "refresher" in d["metadata"]["name"]
    }
    assert sorted(refreshers) == ["flux-passwordless-refresher", "flux-passwordless-refresher-shard1"]

    def selector_arg(name: str) -> list[str]:
        args = refreshers[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        return [a for a in args if a.startswith("--watch-label-selector=")]

    assert selector_arg("flux-passwordless-refresher") == ["--watch-label-selector=!sharding.fluxcd.io/key"]
    assert selector_arg("flux-passwordless-refresher-shard1") == [
        "--watch-label-selector=sharding.fluxcd.io/key=shard1"
    ]
    shard = refreshers["flux-passwordless-refresher-shard1"]["spec"]
    assert shard["selector"]["matchLabels"]["flux-passwordless.io/shard"] == "shard1"
    assert shard["template"]["metadata"]["labels"]["flux-passwordless.io/shard"] == "shard1"
    # Each shard leads on a Lease named after its selector: the Role must not pin one Lease name.
    role = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "flux-passwordless-refresher-leader"
    )
    lease_rules = [r for r in role["rules"] if "leases" in r["resources"]]
    assert all("resourceNames" not in r for r in lease_rules)
    assert {"get", "update", "create"} <= {v for r in lease_rules for v in r["verbs"]}


async def test_tls_secret_is_created_once_and_ca_bundle_injected(kube: Kube, namespace: str) -> None:
    names = service_dns_names("flux-passwordless-webhook", namespace)
    ca = await ensure_secret(kube.api, namespace, "webhook-tls", names)
    again = await ensure_secret(kube.api, namespace, "webhook-tls", names)
    assert again == ca, "a valid certificate is kept, not reissued"
    secret = await client.CoreV1Api(kube.api).read_namespaced_secret("webhook-tls", namespace)
    assert secret.type == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"flux-passwordless-webhook.{namespace}.svc" in sans
    assert f"flux-passwordless-webhook.{namespace}.svc.cluster.local" in sans
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)

    name = f"certs-{namespace}"
    admission = client.AdmissionregistrationV1Api(kube.api)
    body = webhook_configuration(name, "https://127.0.0.1:1", b"placeholder")
    await admission.create_mutating_webhook_configuration(body)  # type: ignore[arg-type]
    try:
        assert await inject_ca_bundle(kube.api, name, ca) == 2
        assert await inject_ca_bundle(kube.api, name, ca) == 0, "nothing to change the second time"
        stored = await admission.read_mutating_webhook_configuration(name)
        assert {base64.b64decode(h.client_config.ca_bundle) for h in stored.webhooks} == {ca}
    finally:
        await admission.delete_mutating_webhook_configuration(name)
