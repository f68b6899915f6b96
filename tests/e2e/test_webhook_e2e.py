"""The webhook behind a real kube-apiserver that calls it over TLS, driven with kubectl as users drive it, against
Flux's own GitRepository CRD of every supported source-controller version (their enums and CEL rules differ)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from tests.support import flux
from tests.support.kube import K8S_VERSIONS, Kube, install_crds
from tests.support.registration import register
from tests.support.webhook import RunningWebhook, running_webhook

# Every Kubernetes version of the matrix: the oldest and newest the module proxy serves, and the default (#19)
pytestmark = K8S_VERSIONS

GROUP, VERSION, PLURAL = "source.toolkit.fluxcd.io", "v1", "gitrepositories"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def gitrepository(name: str, namespace: str, **spec: Any) -> str:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", **spec},
    }
    return yaml.safe_dump(body)


@pytest.fixture(scope="module", autouse=True, params=flux.VERSIONS, ids=[f"crd-{v}" for v in flux.VERSIONS])
async def flux_crd(request: pytest.FixtureRequest, kube: Kube) -> AsyncIterator[str]:
    await asyncio.to_thread(install_crds, kube.plane, request.param)
    yield request.param
    await asyncio.to_thread(install_crds, kube.plane)  # the newest again, for whatever runs next


@pytest.fixture(scope="module")
async def webhook(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningWebhook]:
    tmp = tmp_path_factory.mktemp("webhook")
    # As manifests/overlays/secret-warnings runs it: admission also warns about the credentials Secret.
    async with running_webhook(tmp, "--azure-injection=full", "--secret-warnings", kubeconfig=kube.kubeconfig) as hook:
        await register(kube, hook, "e2e")
        yield hook
        await client.AdmissionregistrationV1Api(kube.api).delete_mutating_webhook_configuration("e2e")


async def get_gitrepository(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = await client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


async def kubectl(kube: Kube, *args: str, stdin: str | None = None) -> Any:
    return await asyncio.to_thread(kube.kubectl, *args, stdin=stdin)


async def test_typo_provider_is_denied_with_did_you_mean(webhook: RunningWebhook, kube: Kube, namespace: str) -> None:
    out = await kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=gitrepository("app", namespace, url="https://github.com/o/r", provider="gitub"),
    )
    assert out.returncode != 0
    assert (
        'admission webhook "gitrepositories.e2e.flux-passwordless.io" denied the request: spec.provider: '
        'Unsupported value: "gitub": supported values: "generic", "azure", "github", "gcp", "aws"; '
        'did you mean "github"?'
    ) in out.stderr


async def test_github_without_secretref_is_denied(webhook: RunningWebhook, kube: Kube, namespace: str) -> None:
    out = await kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=gitrepository("app", namespace, url="https://github.com/o/r", provider="github"),
    )
    assert out.returncode != 0
    assert 'spec.secretRef: Required value: provider "github" needs a secretRef' in out.stderr


def infra_manifest(tmp_path: Path, namespace: str) -> Path:
    """The user's gcp GitRepository, as a file (re-applied unchanged by the idempotency tests)."""
    manifest = tmp_path / "infra.yaml"
    manifest.write_text(
        gitrepository(
            "infra",
            namespace,
            url="https://source.developers.google.com/p/p/r/infra",
            provider="gcp",
            secretRef={"name": "gcp-sa"},
        )
    )
    return manifest


async def test_gcp_is_translated_and_reapply_is_a_no_op(
    webhook: RunningWebhook, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    manifest = infra_manifest(tmp_path, namespace)
    out = await kubectl(kube, "apply", "-f", str(manifest))
    assert out.returncode == 0, out.stderr
    assert 'Warning: Secret "gcp-sa" does not exist yet' in out.stderr
    stored = await get_gitrepository(kube, namespace, "infra")
    assert stored["spec"]["provider"] == "generic"
    assert stored["spec"]["secretRef"] == {"name": "infra-git-token"}
    assert stored["metadata"]["annotations"]["flux-passwordless.io/provider"] == "gcp"
    assert stored["metadata"]["annotations"]["flux-passwordless.io/credentials-secret"] == "gcp-sa"
    again = await kubectl(kube, "apply", "-f", str(manifest))
    assert again.returncode == 0, again.stderr
    # Nothing the user or Flux sees changes. (Under Flux's own CRD the apiserver still records a write with the
    # same content, where our old hand-written CRD recorded none: resourceVersion moves, generation does not.)
    current = await get_gitrepository(kube, namespace, "infra")
    assert current["metadata"]["generation"] == stored["metadata"]["generation"]
    assert (current["spec"], current["metadata"]["annotations"]) == (stored["spec"], stored["metadata"]["annotations"])
    diff = await kubectl(kube, "diff", "-f", str(manifest))
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr  # the user's manifest: no drift

    # An UPDATE that only adds a finalizer (what source-controller does) passes untouched.
    patch = json.dumps({"metadata": {"finalizers": ["finalizers.fluxcd.io"]}})
    out = await kubectl(kube, "patch", "gitrepository", "infra", "-n", namespace, "--type=merge", "-p", patch)
    assert out.returncode == 0, out.stderr
    after = await get_gitrepository(kube, namespace, "infra")
    assert after["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
    assert after["spec"] == stored["spec"]
    assert after["metadata"]["annotations"] == stored["metadata"]["annotations"]


async def test_server_side_apply_is_translated_and_reapply_is_a_no_op(
    webhook: RunningWebhook, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    manifest = infra_manifest(tmp_path, namespace)
    out = await kubectl(kube, "apply", "--server-side", "-f", str(manifest))
    assert out.returncode == 0, out.stderr
    stored = await get_gitrepository(kube, namespace, "infra")
    assert stored["spec"]["provider"] == "generic"
    assert stored["spec"]["secretRef"] == {"name": "infra-git-token"}
    # as kubectl, then as kustomize-controller does (server-side, taking ownership of what it applies)
    for manager in ("kubectl", "kustomize-controller", "kustomize-controller"):
        again = await kubectl(
            kube, "apply", "--server-side", "--force-conflicts", f"--field-manager={manager}", "-f", str(manifest)
        )
        assert again.returncode == 0, again.stderr
        current = await get_gitrepository(kube, namespace, "infra")
        assert current["metadata"]["generation"] == stored["metadata"]["generation"]
        assert current["spec"] == stored["spec"]


async def test_azure_without_secretref_gets_its_output_secret(
    webhook: RunningWebhook, kube: Kube, namespace: str
) -> None:
    out = await kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=gitrepository("fleet", namespace, url="https://dev.azure.com/contoso/fleet/_git/fleet", provider="azure"),
    )
    assert out.returncode == 0, out.stderr
    stored = await get_gitrepository(kube, namespace, "fleet")
    assert stored["spec"]["secretRef"] == {"name": "fleet-git-token"}
    assert stored["spec"]["provider"] == "generic"
    annotations = stored["metadata"]["annotations"]
    ours = {k: v for k, v in annotations.items() if k.startswith("flux-passwordless.io/")}
    assert ours == {"flux-passwordless.io/provider": "azure"}


async def test_azure_per_object_identity_is_stored_valid_under_flux_s_crd(
    webhook: RunningWebhook, kube: Kube, namespace: str, flux_crd: str, tmp_path: Path
) -> None:
    """Regression: spec.serviceAccountName next to provider: generic broke Flux's CEL rule ("serviceAccountName can
    only be set when provider is 'azure'"), so per-object Azure identity failed on every real Flux."""
    manifest = tmp_path / "fleet-sa.yaml"
    manifest.write_text(
        gitrepository(
            "fleet-sa",
            namespace,
            url="https://dev.azure.com/contoso/fleet/_git/fleet",
            provider="azure",
            serviceAccountName="fleet",
        )
    )
    out = await kubectl(kube, "apply", "-f", str(manifest))
    assert out.returncode == 0, f"{flux_crd}: {out.stderr}"
    stored = await get_gitrepository(kube, namespace, "fleet-sa")
    assert "serviceAccountName" not in stored["spec"]
    assert stored["spec"]["provider"] == "generic"
    assert stored["metadata"]["annotations"]["flux-passwordless.io/service-account"] == "fleet"
    diff = await kubectl(kube, "diff", "-f", str(manifest))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    again = await kubectl(
        kube, "apply", "--server-side", "--force-conflicts", "--field-manager=kustomize-controller", "-f", str(manifest)
    )
    assert again.returncode == 0, again.stderr
    assert (await get_gitrepository(kube, namespace, "fleet-sa"))["metadata"]["generation"] == 1


async def _pod_namespace(kube: Kube, namespace: str, opted_in: bool, sa_annotations: dict[str, str]) -> None:
    core = client.CoreV1Api(kube.api)
    if opted_in:
        await core.patch_namespace(namespace, {"metadata": {"labels": {"flux-passwordless.io/inject": "enabled"}}})
    await core.create_namespaced_service_account(
        namespace,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="source-controller", annotations=sa_annotations)),
    )


def _pod(name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "source-controller"}),
        spec=client.V1PodSpec(
            service_account_name="source-controller",
            containers=[client.V1Container(name="manager", image="ghcr.io/fluxcd/source-controller:v1.9.1")],
        ),
    )


async def test_pod_in_opted_in_namespace_gets_full_azure_injection(
    webhook: RunningWebhook, kube: Kube, namespace: str
) -> None:
    await _pod_namespace(kube, namespace, True, {"azure.workload.identity/client-id": CLIENT_ID})
    core = client.CoreV1Api(kube.api)
    await core.create_namespaced_pod(namespace, _pod("sc"))
    pod = await core.read_namespaced_pod("sc", namespace)
    assert pod.metadata.labels["azure.workload.identity/use"] == "true"
    assert pod.metadata.annotations["flux-passwordless.io/injected"] == "azure"
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["AZURE_CLIENT_ID"] == CLIENT_ID
    # the Azure Workload Identity webhook v1.6.0's layout: the volume named from sha256(pod name), cut to keep
    # the name within 63, mounted at /var/run/secrets/azure/wi
    suffix = hashlib.sha256(b"sc").hexdigest()[:30]
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == "/var/run/secrets/azure/wi/token/azure-identity-token"
    volume = next(v for v in pod.spec.volumes if v.name == f"azure-workload-identity-reserved-{suffix}")
    token = volume.projected.sources[0].service_account_token
    assert (token.audience, token.expiration_seconds, token.path) == (
        "api://AzureADTokenExchange",
        3600,
        "token/azure-identity-token",
    )
    mounts = {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts}
    assert mounts[f"azure-workload-identity-reserved-{suffix}"] == "/var/run/secrets/azure/wi"


async def test_pod_outside_opted_in_namespaces_is_untouched(
    webhook: RunningWebhook, kube: Kube, namespace: str
) -> None:
    await _pod_namespace(kube, namespace, False, {"azure.workload.identity/client-id": CLIENT_ID})
    core = client.CoreV1Api(kube.api)
    await core.create_namespaced_pod(namespace, _pod("sc"))
    pod = await core.read_namespaced_pod("sc", namespace)
    assert "azure.workload.identity/use" not in (pod.metadata.labels or {})
    assert "flux-passwordless.io/injected" not in (pod.metadata.annotations or {})


async def test_serviceaccount_annotated_later_is_seen_by_the_next_pod(
    webhook: RunningWebhook, kube: Kube, namespace: str
) -> None:
    await _pod_namespace(kube, namespace, True, {})
    core = client.CoreV1Api(kube.api)
    await core.create_namespaced_pod(namespace, _pod("before"))
    before = await core.read_namespaced_pod("before", namespace)
    assert "flux-passwordless.io/injected" not in (before.metadata.annotations or {})
    await core.patch_namespaced_service_account(
        "source-controller",
        namespace,
        {"metadata": {"annotations": {"iam.gke.io/gcp-service-account": "f@p.iam"}}},
    )
    await asyncio.sleep(0.5)  # the watch event
    await core.create_namespaced_pod(namespace, _pod("after"))
    after = await core.read_namespaced_pod("after", namespace)
    assert after.metadata.annotations["flux-passwordless.io/injected"] == "gcp"
