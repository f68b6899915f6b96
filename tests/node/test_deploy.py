"""Deploy for real: our image, `kubectl apply -k manifests/`, and the product working in-cluster on a real node.

Every check here goes through what the manifests deploy: the apiserver calls the webhook pods through their
Service over TLS with the caBundle the certs Job injected, the refresher pods write Secrets under their shipped
ServiceAccount and RBAC, and the real source-controller reaches Ready with them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from common import names
from tests.node.conftest import (
    MANIFESTS,
    NAMESPACE,
    Deployed,
    Node,
    ca_bundle,
    github_api_env,
    wait_admitting,
    wait_certs_job,
    wait_rollout,
)
from tests.support import node as harness
from tests.support.clouds import GITHUB_ACCOUNT, Clouds
from tests.support.fluxrepos import apply, get, manifest, ready
from tests.support.gitrepos import create_secret, filled
from tests.support.kube import Kube, eventually, kubectl
from tests.support.sourcecontroller import SourceController

WEBHOOK = "flux-passwordless-webhook"
REFRESHER = "flux-passwordless-refresher"


def pods(kube: Kube, selector: str) -> list[dict[str, Any]]:
    out = kubectl(kube.plane, "get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json", check=True)
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(kube: Kube, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(kube, f"app.kubernetes.io/name={name}")
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


async def test_manifests_bring_up_every_pod_as_shipped(node: Node, node_kube: Kube, deployed: Deployed) -> None:
    print(
        f"\nnode Ready {node.ready_seconds:.1f}s; image built in {node.image_build_seconds:.0f}s "
        f"({harness.image_size_mb():.0f} MB), loaded in {node.image_load_seconds:.1f}s; "
        f"kubectl apply -k manifests/ -> every pod Ready and the certs Job complete: {deployed.apply_to_ready_s:.1f}s, "
        f"admitting through the Service: {deployed.apply_to_admitting_s:.1f}s"
    )
    for name in (WEBHOOK, REFRESHER):
        running = ready_pods(node_kube, name)
        assert len(running) == 2, f"{name}: {len(running)} Ready pods"
        for pod in running:
            for container in pod["spec"]["containers"]:
                assert container["image"] == harness.IMAGE
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), pod["status"]
    # What the pod really runs as, and that its root filesystem really is read-only (not only in the spec).
    pod = ready_pods(node_kube, REFRESHER)[0]["metadata"]["name"]
    out = kubectl(node_kube.plane, "exec", "-n", NAMESPACE, pod, "--", "sh", "-c", "id -u; touch /x 2>&1 || true")
    assert out.returncode == 0, out.stderr
    uid, touched = out.stdout.splitlines()[:2]
    assert uid == "65532"
    assert "Read-only file system" in touched


async def test_the_apiserver_calls_the_webhook_through_its_service(node_kube: Kube, tenant: str) -> None:
    typo = manifest("app", tenant, url="https://github.com/o/r", provider="githbu")
    out = await asyncio.to_thread(node_kube.kubectl, "apply", "-f", "-", stdin=typo)
    assert out.returncode != 0
    assert (
        'admission webhook "gitrepositories.flux-passwordless.io" denied the request: spec.provider: '
        'Unsupported value: "githbu": supported values: "generic", "azure", "github", "gcp", "aws"; '
        'did you mean "github"?'
    ) in out.stderr
    for name, provider, url in (
        ("infra", "gcp", "https://source.developers.google.com/p/p/r/infra"),
        ("app", "github", "https://github.com/o/r"),
    ):
        await apply(node_kube, manifest(name, tenant, url=url, provider=provider, secretRef={"name": "creds"}))
        stored = await get(node_kube, tenant, name)
        assert stored["spec"]["provider"] == "generic"
        assert stored["spec"]["secretRef"] == {"name": f"{name}{names.OUTPUT_SECRET_SUFFIX}"}
        assert stored["metadata"]["annotations"][names.ANNOTATION_PROVIDER] == provider
        assert stored["metadata"]["annotations"][names.ANNOTATION_CREDENTIALS_SECRET] == "creds"


async def test_the_refreshers_secret_gets_flux_ready(
    node_kube: Kube, node_clouds: Clouds, node_source_controller: SourceController, tenant: str
) -> None:
    await create_secret(node_kube, tenant, "github-app", node_clouds.github_secret_data())
    url = node_clouds.repo_url(f"{GITHUB_ACCOUNT}/app")
    text = manifest("app", tenant, url=url, provider="github", secretRef={"name": "github-app"})
    await apply(node_kube, text)
    secret = await filled(node_kube, tenant, "app" + names.OUTPUT_SECRET_SUFFIX, timeout=30)
    assert secret.type == names.SECRET_TYPE_BASIC_AUTH
    revision, seconds = await ready(node_kube, tenant, "app", node_source_controller)
    print(
        f"\nin-cluster refresher -> source-controller {node_source_controller.version}: Ready on {revision} "
        f"{seconds:.1f}s after kubectl apply"
    )


async def test_a_pod_in_an_opted_in_namespace_is_injected(node_kube: Kube, tenant: str) -> None:
    core = client.CoreV1Api(node_kube.api)
    await core.patch_namespace(tenant, {"metadata": {"labels": {names.LABEL_INJECT: names.INJECT_ENABLED}}})
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "11111111-2222-3333-4444-555555555555"}
    await core.create_namespaced_service_account(
        tenant, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="git-reader", annotations=annotations))
    )

    async def injected() -> dict[str, Any] | None:
        # The webhook learns ServiceAccounts from its watch (its shipped RBAC): retry until it has this one.
        name = f"debug-{int(time.monotonic() * 1000)}"
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": tenant},
            "spec": {
                "serviceAccountName": "git-reader",
                "containers": [{"name": "sh", "image": harness.IMAGE, "command": ["sleep", "3600"]}],
            },
        }
        created = await core.create_namespaced_pod(tenant, pod)  # type: ignore[arg-type]  # a dict body is sent as is
        meta = created.metadata
        if (meta.annotations or {}).get(names.ANNOTATION_INJECTED) == "azure":
            return {"labels": meta.labels, "annotations": meta.annotations}
        return None

    seen = await eventually(injected, timeout=20, interval=0.5, what="an injected pod")
    assert seen["labels"] == {names.AZURE_LABEL_USE: "true"}


def create_in_a_loop(plane: Any, namespace: str, stop: threading.Event, failures: list[str]) -> int:
    """GitRepositories the webhook must admit, one after another, until ``stop``; failures are collected."""
    created = 0
    while not stop.is_set():
        text = manifest(
            f"loop-{created}",
            namespace,
            url="https://source.developers.google.com/p/p/r/x",
            provider="gcp",
            secretRef={"name": "creds"},
        )
        out = kubectl(plane, "create", "-f", "-", stdin=text)
        if out.returncode != 0:
            failures.append(f"{time.strftime('%H:%M:%S')} {out.stderr.strip()}")
        created += 1
        time.sleep(0.05)  # a steady stream, not a flood: the node's two cores also run everything else
    return created


async def test_a_webhook_rollout_fails_no_admission(node_kube: Kube, tenant: str) -> None:
    await asyncio.to_thread(wait_admitting, node_kube.plane)  # reachable before the rollout begins
    stop, failures = threading.Event(), list[str]()
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(create_in_a_loop(node_kube.plane, tenant, stop, failures)), daemon=True
    )
    worker.start()
    try:
        await asyncio.sleep(2)
        kubectl(node_kube.plane, "rollout", "restart", f"deployment/{WEBHOOK}", "-n", NAMESPACE, check=True)
        await asyncio.to_thread(wait_rollout, node_kube.plane)
        await asyncio.sleep(2)
    finally:
        stop.set()
        await asyncio.to_thread(worker.join, 60)
    print(f"\nwebhook rollout: {result[0]} GitRepositories created during it, {len(failures)} refused")
    assert result[0] > 10
    assert failures == []


def leader(kube: Kube) -> str:
    out = kubectl(kube.plane, "get", "lease", REFRESHER, "-n", NAMESPACE, "-o", "json", check=True)
    return str(json.loads(out.stdout)["spec"].get("holderIdentity") or "")  # empty once released


async def test_deleting_the_leading_refresher_hands_over_without_a_lapse(
    node_kube: Kube, node_clouds: Clouds, tenant: str
) -> None:
    await create_secret(node_kube, tenant, "github-app", node_clouds.github_secret_data())
    url = node_clouds.repo_url(f"{GITHUB_ACCOUNT}/app")
    await apply(node_kube, manifest("app", tenant, url=url, provider="github", secretRef={"name": "github-app"}))
    secret = await filled(node_kube, tenant, "app" + names.OUTPUT_SECRET_SUFFIX, timeout=30)
    password = base64.b64decode(secret.data[names.KEY_PASSWORD]).decode()
    mints = len(node_clouds.github.issued)
    old = leader(node_kube)
    t0 = time.monotonic()
    kubectl(node_kube.plane, "delete", "pod", old, "-n", NAMESPACE, "--wait=false", check=True)

    async def new_leader() -> str | None:
        holder = await asyncio.to_thread(leader, node_kube)
        return holder if holder not in ("", old) else None

    holder = await eventually(new_leader, timeout=60, interval=0.5, what="a new leader")
    handover_s = time.monotonic() - t0
    # The new leader adopted the token: no mint, and the token in the Secret is the one Git accepts.
    await asyncio.sleep(3)
    after = await filled(node_kube, tenant, "app" + names.OUTPUT_SECRET_SUFFIX, timeout=5)
    assert base64.b64decode(after.data[names.KEY_PASSWORD]).decode() == password
    assert node_clouds.github.live(password, f"{GITHUB_ACCOUNT}/app")
    assert len(node_clouds.github.issued) == mints
    print(f"\nrefresher failover: {old} -> {holder} in {handover_s:.1f}s, no token minted, none lapsed")
    await asyncio.to_thread(wait_rollout, node_kube.plane)


async def test_a_new_ca_is_served_without_a_restart(
    node: Node, node_kube: Kube, tenant: str, deployed: Deployed
) -> None:
    plane = node_kube.plane
    before = {p["metadata"]["name"] for p in ready_pods(node_kube, WEBHOOK)}
    old_bundle = ca_bundle(plane)
    # A new CA: without its Secret the certs Job makes a new authority, issues, and injects the caBundle.
    kubectl(plane, "delete", "secret", "flux-passwordless-webhook-tls", "-n", NAMESPACE, check=True)
    kubectl(plane, "delete", "job", "flux-passwordless-certs", "-n", NAMESPACE, check=True)
    t0 = time.monotonic()
    kubectl(plane, "apply", "-k", str(deployed.install), check=True)
    wait_certs_job(plane)
    new_bundle = ca_bundle(plane)
    assert new_bundle
    assert new_bundle != old_bundle

    async def admitted() -> bool:
        text = manifest(
            f"ca-{int(time.monotonic() * 1000)}",
            tenant,
            url="https://source.developers.google.com/p/p/r/x",
            provider="gcp",
            secretRef={"name": "creds"},
        )
        out = await asyncio.to_thread(node_kube.kubectl, "create", "-f", "-", stdin=text)
        return out.returncode == 0

    await eventually(admitted, timeout=120, interval=1, what="the webhook serving the new certificate")
    print(f"\nnew CA: served {time.monotonic() - t0:.1f}s after the certs Job was re-run, no webhook restart")
    after = ready_pods(node_kube, WEBHOOK)
    assert {p["metadata"]["name"] for p in after} == before
    assert all(s["restartCount"] == 0 for p in after for s in p["status"]["containerStatuses"])


def overlay_with_fake_entra(tmp: Path, clouds: Clouds) -> Path:
    """The shipped per-object-identity overlay, with the refresher's Entra ID endpoint and CA pointed at the stand-in
    through its documented settings (environment variables), as an admin's own overlay would set them."""
    (tmp / "entra-ca.crt").write_bytes(clouds.tls.ca_pem)
    env = [
        github_api_env(clouds),
        {"name": "FLUX_PASSWORDLESS_AZURE_AUTHORITY_HOST", "value": clouds.entra.url},
        {"name": "FLUX_PASSWORDLESS_AZURE_CA_FILE", "value": "/entra/entra-ca.crt"},
    ]
    container = "/spec/template/spec/containers/0"
    patch = [
        *({"op": "add", "path": f"{container}/env/-", "value": e} for e in env),
        {
            "op": "add",
            "path": "/spec/template/spec/volumes",
            "value": [{"name": "entra", "configMap": {"name": "entra-ca"}}],
        },
        {"op": "add", "path": f"{container}/volumeMounts", "value": [{"name": "entra", "mountPath": "/entra"}]},
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS / "overlays" / "per-object-identity", tmp)],  # kustomize: no absolute
        "configMapGenerator": [{"name": "entra-ca", "namespace": NAMESPACE, "files": ["entra-ca.crt"]}],
        "generatorOptions": {"disableNameSuffixHash": True},
        "patches": [{"target": {"kind": "Deployment", "name": REFRESHER}, "patch": json.dumps(patch)}],
    }
    (tmp / "kustomization.yaml").write_text(json.dumps(kustomization))
    return tmp


async def test_the_azure_per_object_overlay(
    node_kube: Kube,
    node_clouds: Clouds,
    node_source_controller: SourceController,
    tenant: str,
    tmp_path: Path,
    deployed: Deployed,
) -> None:
    plane = node_kube.plane
    kubectl(plane, "apply", "-k", str(overlay_with_fake_entra(tmp_path, node_clouds)), check=True)
    try:
        await asyncio.to_thread(wait_rollout, plane)
        annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-9", names.AZURE_ANNOTATION_TENANT_ID: "tenant-9"}
        await client.CoreV1Api(node_kube.api).create_namespaced_service_account(
            tenant, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="fleet", annotations=annotations))
        )
        node_clouds.entra.federate("tenant-9", "client-9", tenant, "fleet")
        url = node_clouds.repo_url("azure/fleet")
        await apply(node_kube, manifest("fleet", tenant, url=url, provider="azure", serviceAccountName="fleet"))
        revision, seconds = await ready(node_kube, tenant, "fleet", node_source_controller)
        print(f"\nper-object-identity overlay: Ready on {revision} {seconds:.1f}s after kubectl apply")
    finally:  # back to the default install for whatever runs next
        kubectl(plane, "apply", "-k", str(deployed.install), check=True)
        await asyncio.to_thread(wait_rollout, plane)
