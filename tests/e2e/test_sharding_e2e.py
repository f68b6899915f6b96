"""Two refresher shards on a real apiserver, the way Flux shards source-controller: each serves exactly the
GitRepositories its --watch-label-selector matches, writes their Secrets with the shard label, leads on a Lease
of its own; a GitRepository moved between shards has its Secret adopted by the new shard, without a conflict."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes_asyncio import client

from common import names
from tests.e2e.conftest import RefresherFactory
from tests.support.clouds import GITHUB_ACCOUNT, Clouds
from tests.support.gitrepos import create_gitrepository, create_secret, events_for, filled, read_secret
from tests.support.kube import Kube, eventually

SHARD = names.FLUX_SHARD_LABEL


async def label(kube: Kube, namespace: str, name: str, shard: str) -> None:
    """As an admin moves a GitRepository to a shard."""
    out = await asyncio.to_thread(
        kube.kubectl, "label", "gitrepository", name, "-n", namespace, f"{SHARD}={shard}", "--overwrite"
    )
    assert out.returncode == 0, out.stderr


async def labels_of(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    secret = await read_secret(kube, namespace, name)
    return dict((secret.metadata.labels or {}) if secret else {})


async def test_two_shards_split_the_gitrepositories_and_hand_one_over(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    repos: dict[str, Any] = {}
    for name, shard in (("app", "shard1"), ("infra", "shard1"), ("docs", None)):
        url = clouds.repo_url(f"{GITHUB_ACCOUNT}/{name}")
        repos[name] = await create_gitrepository(kube, namespace, name, "github", url, "github-app")
        if shard:
            await label(kube, namespace, name, shard)
    one_args = (f"--watch-label-selector={SHARD}=shard1", "--leader-elect", "--identity=one")
    main_args = (f"--watch-label-selector=!{SHARD}", "--leader-elect", "--identity=main")
    async with refresher(*one_args) as one, refresher(*main_args) as main:
        for name in repos:
            await filled(kube, namespace, f"{name}-git-token", timeout=30)
        assert one.controller is not None
        assert main.controller is not None
        one_index, main_index = one.controller._index, main.controller._index
        assert sorted(key[1] for key in one_index.gitrepos) == ["app", "infra"]
        assert sorted(key[1] for key in main_index.gitrepos) == ["docs"]
        assert (await labels_of(kube, namespace, "app-git-token")).get(SHARD) == "shard1"
        assert SHARD not in await labels_of(kube, namespace, "docs-git-token")
        leases = await client.CoordinationV1Api(kube.api).list_namespaced_lease(namespace)
        holders = {lease.metadata.name: lease.spec.holder_identity for lease in leases.items}
        assert sorted(holders.values()) == ["main", "one"]
        assert all(name.startswith(names.REFRESHER_LEASE + "-") for name in holders)  # one Lease per selector

        # docs moves to shard1: its Secret is adopted there (labelled shard1), the main shard lets go of it.
        await label(kube, namespace, "docs", "shard1")

        async def moved() -> bool:
            labels = await labels_of(kube, namespace, "docs-git-token")
            return labels.get(SHARD) == "shard1" and (namespace, "docs") not in main_index.gitrepos

        await eventually(moved, timeout=20, interval=0.1, what="docs adopted by shard1")
        assert sorted(key[1] for key in one_index.gitrepos) == ["app", "docs", "infra"]
        assert main_index.gitrepos == {}
        secret = await filled(kube, namespace, "docs-git-token", timeout=10)
        password = base64.b64decode(secret.data[names.KEY_PASSWORD]).decode()
        assert clouds.github.live(password, f"{GITHUB_ACCOUNT}/docs")
        await asyncio.sleep(1)
        reasons = [e.reason for e in await events_for(kube, namespace, "docs")]
        assert "SecretConflict" not in reasons, reasons
