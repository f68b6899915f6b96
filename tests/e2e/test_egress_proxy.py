"""Behind an enterprise's egress proxy (#26): a real forward proxy (tinyproxy), the cloud stand-ins reachable
only through it (an iptables rule resets any other connection to them), the refresher as a process on the real
apiserver. Set the standard way (HTTPS_PROXY / HTTP_PROXY / NO_PROXY on the Deployment), GitHub, Google and Entra
mints all go through the proxy and the apiserver traffic does not; a GitRepository's ``spec.proxySecretRef`` (Flux's
format) sends its own mints through its proxy; a proxy that is down, or a proxy Secret that is wrong, is a Warning
naming the cause; the proxy's credentials are never in a log line or an Event."""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_asyncio import client

from common import names
from tests.e2e.conftest import ProcessFactory
from tests.support.clouds import Clouds
from tests.support.egress import PASSWORD, EgressProxy, egress_proxy, only_through_proxy
from tests.support.gitrepos import create_gitrepository, create_secret, events_for, filled, ls_remote
from tests.support.kube import Kube, eventually


@pytest.fixture
def proxy(tmp_path: Path, clouds: Clouds) -> Iterator[EgressProxy]:
    with (
        egress_proxy(tmp_path / "proxy") as running,
        only_through_proxy(clouds.github.url, clouds.google.url, clouds.entra.url),
    ):
        yield running


def by_name(kube: Kube, tmp: Path) -> Path:
    """The kubeconfig with the apiserver named ``localhost``, which NO_PROXY can then name apart from the
    stand-ins (all on 127.0.0.1 here; in a cluster the apiserver is the kubernetes Service's IP or .svc name)."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    config["clusters"][0]["cluster"]["server"] = f"https://localhost:{server.port}"
    path = tmp / "kubeconfig-localhost"
    path.write_text(yaml.safe_dump(config))
    return path


def refused_directly(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=2).close()
    except ConnectionError:
        return True
    return False


async def warning(kube: Kube, namespace: str, name: str, reason: str = "TokenMintFailed") -> client.CoreV1Event | None:
    for event in await events_for(kube, namespace, name):
        if event.type == "Warning" and event.reason == reason:
            return event
    return None


async def azure_identity(kube: Kube, clouds: Clouds, namespace: str) -> None:
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-p", names.AZURE_ANNOTATION_TENANT_ID: "tenant-p"}
    await client.CoreV1Api(kube.api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="fleet", annotations=annotations))
    )
    clouds.entra.federate("tenant-p", "client-p", namespace, "fleet")


async def test_every_mint_goes_through_the_environments_proxy_and_the_apiserver_does_not(
    kube: Kube,
    clouds: Clouds,
    namespace: str,
    proxy: EgressProxy,
    refresher_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    assert refused_directly(clouds.github.url)  # the egress is closed but through the proxy
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    key = clouds.google.service_account_key("proxied@demo-project.iam.gserviceaccount.com")
    await create_secret(kube, namespace, "gcp-sa", {"gcpServiceAccount": json.dumps(key).encode()})
    await azure_identity(kube, clouds, namespace)
    env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "NO_PROXY": "localhost"}
    with refresher_process(env=env, kubeconfig=by_name(kube, tmp_path)):
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")
        await create_gitrepository(kube, namespace, "infra", "gcp", clouds.repo_url("gcp/infra"), "gcp-sa")
        await create_gitrepository(
            kube, namespace, "fleet", "azure", clouds.repo_url("azure/fleet"), serviceAccountName="fleet"
        )
        for name, repo in (("app", "acme/app"), ("infra", "gcp/infra"), ("fleet", "azure/fleet")):
            secret = await filled(kube, namespace, f"{name}-git-token", timeout=30)
            assert (await ls_remote(clouds, repo, secret)).returncode == 0, name
        relayed = set(proxy.relayed())
        for stand_in in (clouds.github.url, clouds.google.url, clouds.entra.url):
            assert urlsplit(stand_in).netloc in relayed, (stand_in, relayed)
        api_port = urlsplit(yaml.safe_load(kube.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]).port
        assert not any(target.endswith(f":{api_port}") for target in relayed)  # NO_PROXY: the apiserver direct

        proxy.stop()  # the proxy goes down
        await create_gitrepository(kube, namespace, "docs", "github", clouds.repo_url("acme/docs"), "github-app")
        key = clouds.google.service_account_key("other@demo-project.iam.gserviceaccount.com")
        await create_secret(kube, namespace, "gcp-other", {"gcpServiceAccount": json.dumps(key).encode()})
        await create_gitrepository(kube, namespace, "infra2", "gcp", clouds.repo_url("gcp/infra"), "gcp-other")
        for name, says in (("docs", "GitHub API unreachable: no connection to the proxy"), ("infra2", "proxy")):
            down = await eventually(functools.partial(warning, kube, namespace, name), timeout=30, what=name)
            assert says in down.message, down.message
        proxy.start()
    log = (tmp_path / "refresher.log").read_text()
    assert "token minted" in log
    events = await client.CoreV1Api(kube.api).list_namespaced_event(namespace)
    assert PASSWORD not in log + "".join(e.message for e in events.items)


async def test_a_gitrepositorys_proxy_secret_carries_its_own_mints(
    kube: Kube,
    clouds: Clouds,
    namespace: str,
    proxy: EgressProxy,
    refresher_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    """No proxy in the environment: the object naming a proxy (``spec.proxySecretRef``, as Flux reads it) gets its
    token through it; the one beside it on the same App, naming none, is refused by the egress: they never share a
    token request. A proxy Secret without ``address`` is a Warning naming the key."""
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    await create_secret(
        kube,
        namespace,
        "egress",
        {"address": proxy.address.encode(), "username": b"egress", "password": PASSWORD.encode()},
    )
    await create_secret(kube, namespace, "broken-proxy", {"username": b"egress"})
    with refresher_process():
        url = clouds.repo_url("acme/app")
        await create_gitrepository(
            kube, namespace, "app", "github", url, "github-app", proxySecretRef={"name": "egress"}
        )
        await create_gitrepository(kube, namespace, "direct", "github", clouds.repo_url("acme/infra"), "github-app")
        await create_gitrepository(
            kube, namespace, "broken", "github", url, "github-app", proxySecretRef={"name": "broken-proxy"}
        )
        secret = await filled(kube, namespace, "app-git-token", timeout=30)
        assert (await ls_remote(clouds, "acme/app", secret)).returncode == 0
        assert urlsplit(clouds.github.url).netloc in proxy.relayed()
        direct = await eventually(lambda: warning(kube, namespace, "direct"), timeout=30, what="Warning on direct")
        assert "GitHub API unreachable" in direct.message
        broken = await eventually(lambda: warning(kube, namespace, "broken"), timeout=30, what="Warning on broken")
        assert 'proxy Secret "broken-proxy" lacks address' in broken.message
        assert {r["repositories"][0] for r in clouds.github.token_requests if r.get("repositories")} >= {"app"}
    events = await client.CoreV1Api(kube.api).list_namespaced_event(namespace)
    assert PASSWORD not in (tmp_path / "refresher.log").read_text() + "".join(e.message for e in events.items)
