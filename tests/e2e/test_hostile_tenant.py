"""What a hostile tenant (who may create Secrets and GitRepositories in its own namespace) can make the refresher
hold, on the real apiserver: ``python -m refresher`` as a process, its peak resident memory (VmHWM) asserted
with the shipped 256 Mi limit in mind, while a healthy GitRepository beside the attack still gets its token.

The attack: 120 opted-in Secrets of 1 MiB each (the refresher lists and watches every opted-in Secret), 60
GitRepositories each naming its own 1 MiB credentials Secret (each is read), 20 GitRepositories carrying 1 MB in
spec.ignore (a list page of GitRepositories holds them), one with a 100 KB URL and one whose App key is 200 KB.
Before the limits a single list page held the 120 MB of opted-in Secrets at once, decoded, and every credentials
Secret was kept whole; with pages sized by bytes but a first page of 50 objects, the peak was 205 MB (108 MB with
the first page at 5).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
from kubernetes_asyncio import client

from common import names
from tests.e2e.conftest import ProcessFactory
from tests.support import hostile
from tests.support.clouds import Clouds
from tests.support.gitrepos import GROUP, PLURAL, VERSION, create_gitrepository, create_secret, events_for, filled
from tests.support.kube import Kube, eventually

CONTAINER_LIMIT_MB = 256  # manifests/base/refresher/deployment.yaml
BOUND_MB = 150
MIB = 1024 * 1024


async def _gather_bounded(coros: list[Any], at_once: int = 8) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(coro: Any) -> None:
        async with gate:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


async def _warning(kube: Kube, namespace: str, name: str, reason: str) -> client.CoreV1Event | None:
    for event in await events_for(kube, namespace, name):
        if event.reason == reason and event.type == "Warning":
            return event
    return None


# aiohttp warns that a 1 MiB body sent as bytes may hold the loop: here that is the test client's own business.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_a_hostile_tenant_cannot_push_the_refresher_past_its_limit(
    kube: Kube, clouds: Clouds, namespace: str, refresher_process: ProcessFactory
) -> None:
    core = client.CoreV1Api(kube.api)
    junk = os.urandom(MIB - 4096)
    github = clouds.github_secret_data()
    # The attack, in the tenant's namespace.
    opted_in = [
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=f"opted-{i}",
                    labels={names.LABEL_PROVIDER: "github"},
                    annotations={names.ANNOTATION_CREDENTIALS_SECRET: f"creds-{i % 60}"},
                ),
                data={"username": "", "password": "", "junk": base64.b64encode(junk).decode()},
            ),
        )
        for i in range(120)
    ]
    await _gather_bounded(opted_in)
    credentials = [create_secret(kube, namespace, f"creds-{i}", {**github, "junk": junk}) for i in range(60)]
    await _gather_bounded(credentials)
    repos = [
        create_gitrepository(kube, namespace, f"named-{i}", "github", clouds.repo_url("acme/app"), f"creds-{i}")
        for i in range(60)
    ]
    repos += [
        create_gitrepository(
            kube, namespace, f"ignore-{i}", "github", clouds.repo_url("acme/app"), "creds-0", ignore="x" * 1_000_000
        )
        for i in range(20)
    ]
    await _gather_bounded(repos)
    long_url = clouds.repo_url("acme/app") + "?" + "a" * 100_000
    await create_gitrepository(kube, namespace, "long-url", "github", long_url, "creds-0")
    big_key = {**github, "githubAppPrivateKey": github["githubAppPrivateKey"] + b"\n" + b"A" * 200_000}
    await create_secret(kube, namespace, "big-key", big_key)
    await create_gitrepository(kube, namespace, "big-key", "github", clouds.repo_url("acme/app"), "big-key")
    # The healthy neighbour.
    await create_secret(kube, namespace, "github-app", github)
    await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")

    with refresher_process("--log-level=warning") as proc:
        await filled(kube, namespace, "app-git-token", timeout=90)
        await filled(kube, namespace, "named-0-git-token", timeout=30)  # a 1 MiB credentials Secret still serves
        too_large = await eventually(
            lambda: _warning(kube, namespace, "long-url", "TooLarge"), timeout=30, what="TooLarge Event"
        )
        assert "spec.url: Too long: must have at most 2048 bytes" in too_large.message
        assert "aaaa" not in too_large.message
        refused = await eventually(
            lambda: _warning(kube, namespace, "big-key", "TokenMintFailed"), timeout=30, what="CredentialsTooLarge"
        )
        assert "githubAppPrivateKey holds more than 65536 bytes" in refused.message
        await asyncio.sleep(3)  # the passes after the first settle
        peak = hostile.peak_rss_mb(proc.pid)
        print(f"\nrefresher under a hostile tenant (~250 MB of objects): peak RSS {peak:.0f} MB")
        assert proc.poll() is None
        assert peak < BOUND_MB < CONTAINER_LIMIT_MB * 0.6, f"peak {peak:.0f} MB"
    custom = client.CustomObjectsApi(kube.api)  # 250 MB in etcd: not left for the tests after this one
    await custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    await core.delete_collection_namespaced_secret(namespace)
