"""The foundation works: a real apiserver stores our objects, and its CRD schema shows the gap we close."""

from __future__ import annotations

import base64

from kubernetes_asyncio import client

from tests.support.kube import Kube

GITREPO = """
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: {name}
  namespace: {namespace}
spec:
  interval: 1m
  url: https://github.com/example/app
  provider: {provider}
  secretRef:
    name: creds
"""


async def test_namespace_secret_and_gitrepository_round_trip(kube: Kube, namespace: str) -> None:
    core = client.CoreV1Api(kube.api)
    await core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"),
            type="kubernetes.io/basic-auth",
            string_data={"username": "git", "password": "not-a-real-token"},
        ),
    )
    stored = await core.read_namespaced_secret("creds", namespace)
    assert base64.b64decode(stored.data["username"]) == b"git"

    applied = kube.kubectl("apply", "-f", "-", stdin=GITREPO.format(name="app", namespace=namespace, provider="github"))
    assert applied.returncode == 0, applied.stderr
    obj = await client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        "source.toolkit.fluxcd.io", "v1", namespace, "gitrepositories", "app"
    )
    assert obj["spec"]["provider"] == "github"
    assert obj["spec"]["timeout"] == "60s", "the CRD default is applied"
    # Flux's own CRD (the newest): it serves v1 alone (v1beta2 is gone since source-controller v1.10)
    crd = await client.ApiextensionsV1Api(kube.api).read_custom_resource_definition(
        "gitrepositories.source.toolkit.fluxcd.io"
    )
    assert [v.name for v in crd.spec.versions if v.served] == ["v1"]


async def test_crd_rejects_gcp_provider_which_the_webhook_will_translate(kube: Kube, namespace: str) -> None:
    rejected = kube.kubectl(
        "apply", "-f", "-", stdin=GITREPO.format(name="gcp-repo", namespace=namespace, provider="gcp")
    )
    assert rejected.returncode != 0
    assert 'spec.provider: Unsupported value: "gcp"' in rejected.stderr
    assert '"generic", "aws", "azure", "github"' in rejected.stderr


async def test_rbac_is_enforced(kube: Kube, namespace: str) -> None:
    """The apiserver runs with RBAC: a ServiceAccount with no binding is refused."""
    denied = kube.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:default",
    )
    assert denied.stdout.strip() == "no"
    allowed = kube.kubectl("auth", "can-i", "list", "secrets", "-n", namespace)
    assert allowed.stdout.strip() == "yes"
