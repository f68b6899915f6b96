"""The refresher's loop, pass by pass, on a fake clock with a seeded rng: an in-memory cluster stands in for the
apiserver (tests/support/memcluster.py), a scripted provider for GitHub."""

from __future__ import annotations

import copy
import random
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from refresher.config import from_args
from refresher.controller import Controller
from refresher.credentials import GcpIdentity
from refresher.errors import PermanentError, TemporaryError
from refresher.events import Reporter
from refresher.index import Index
from tests.support.memcluster import EventLog, FakeClock, MemoryCluster, ScriptedProvider

NS = "apps"
KEY_PEM = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


def gitrepo(name: str, interval: str = "1m", timeout: str = "1m") -> dict[str, Any]:
    return {
        "apiVersion": names.GITREPOSITORY_API_VERSION,
        "kind": "GitRepository",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "annotations": {names.ANNOTATION_PROVIDER: "github", names.ANNOTATION_CREDENTIALS_SECRET: "app"},
        },
        "spec": {
            "interval": interval,
            "timeout": timeout,
            "url": f"https://github.com/acme/{name}",
            "provider": "generic",
            "secretRef": {"name": f"{name}-git-token"},
        },
    }


class Loop:
    """One controller on the fakes, plus what the tests look at."""

    def __init__(
        self,
        *repos: dict[str, Any],
        lifetime_s: float = 3600.0,
        after: Loop | None = None,
        seed: int = 7,
        args: tuple[str, ...] = (),
    ) -> None:
        """A fresh controller; with ``after``, a new leader taking over that one's cluster, clock and provider."""
        self.clock: FakeClock = after.clock if after else FakeClock()
        config = from_args(["--credentials-resync", "30", "--listen", "127.0.0.1:8080", *args])
        self.index = Index(config.rules)
        self.cluster: MemoryCluster = after.cluster if after else MemoryCluster(self.index)
        self.cluster.index = self.index
        self.provider: ScriptedProvider = after.provider if after else ScriptedProvider(self.clock, lifetime_s)
        self.events = EventLog()
        self.controller = Controller(
            config,
            dict.fromkeys((names.PROVIDER_GITHUB, names.PROVIDER_GCP), self.provider),
            Reporter(self.events),
            self.cluster,
            self.index,
            clock=self.clock,
            rng=random.Random(seed),
        )
        if after is None:
            self.cluster.put_secret(
                NS, "app", {"githubAppID": b"1", "githubAppInstallationID": b"7", "githubAppPrivateKey": KEY_PEM}
            )
        else:
            self.cluster.replay(self.index)
        for repo in repos:
            self.index.on_gitrepo("ADDED", repo)

    async def step(self, seconds: float = 0.0) -> float:
        """Advance the clock, run one pass; returns how long until the next one is due."""
        self.clock.advance(seconds)
        return await self.controller.reconcile() - self.clock.now

    def password(self, name: str) -> str | None:
        return self.cluster.password(NS, f"{name}-git-token")

    def state(self) -> Any:
        (state,) = self.controller.tokens.values()
        return state


async def test_first_pass_mints_once_and_fills_every_secret_then_nothing_changes() -> None:
    loop = Loop(gitrepo("a"), gitrepo("b"), gitrepo("c"))
    await loop.step()
    assert len(loop.provider.mints) == 1  # one credential, one scope: one token
    assert {loop.password(n) for n in "abc"} == {"token-1"}
    assert sorted(kind for kind, _ in loop.cluster.writes) == ["create"] * 3
    assert loop.events.reasons("a") == ["TokenMinted"]

    loop.cluster.writes.clear()
    await loop.step(10)
    await loop.step(10)
    assert len(loop.provider.mints) == 1
    assert loop.cluster.writes == []  # nothing changed: no write
    assert loop.events.reasons("a") == ["TokenMinted"]  # announced once


async def test_renews_at_80_percent_of_the_lifetime_with_jitter() -> None:
    loop = Loop(gitrepo("a"))  # window 2 x (1m + 1m) = 240 s: 80% comes first
    wait = await loop.step()
    # 80% of 3600 = 2880, minus up to 5% (180 s, capped at 120 s) of jitter
    assert 2880 - 120 <= loop.state().renew_at - loop.clock.now <= 2880
    assert wait == pytest.approx(30)  # the credentials re-read comes sooner
    await loop.step(loop.state().renew_at - loop.clock.now - 1)
    assert len(loop.provider.mints) == 1
    await loop.step(1)
    assert len(loop.provider.mints) == 2
    assert loop.password("a") == "token-2"


async def test_renews_earlier_when_the_consumer_needs_two_intervals_plus_timeout() -> None:
    loop = Loop(gitrepo("slow", interval="10m", timeout="5m"))  # window 2 x 15m = 1800 s
    await loop.step()
    assert 1800 - 120 <= loop.state().renew_at - loop.clock.now <= 1800


async def test_a_temporary_error_keeps_the_old_token_and_honours_retry_after() -> None:
    loop = Loop(gitrepo("a"))
    await loop.step()
    loop.clock.advance(loop.state().renew_at - loop.clock.now)
    loop.provider.errors.append(TemporaryError("GitHub API: HTTP 429", "RateLimited", retry_after=42))
    loop.cluster.writes.clear()
    wait = await loop.step()
    assert len(loop.provider.mints) == 2
    assert loop.password("a") == "token-1"  # the old token stays
    assert loop.cluster.writes == []
    assert loop.state().retry_at - loop.clock.now == pytest.approx(42)
    assert wait == pytest.approx(30)  # the credentials re-read comes first; it does not mint
    (warning,) = [e for e in loop.events.events if e[1] == "Warning"]
    assert warning[2] == "TokenMintFailed"
    assert "stays in place until it expires" in warning[3]

    await loop.step(41)
    assert len(loop.provider.mints) == 2  # not before Retry-After
    await loop.step(1)
    assert len(loop.provider.mints) == 3
    assert loop.password("a") == "token-2"
    assert loop.events.reasons("a")[-1] == "TokenMinted"  # told again once it works


async def test_temporary_errors_back_off_exponentially_with_a_cap() -> None:
    loop = Loop(gitrepo("a"))
    loop.provider.errors.extend(TemporaryError("GitHub API: HTTP 502") for _ in range(12))
    delays = []
    await loop.step()
    for _ in range(11):
        delays.append(loop.state().retry_at - loop.clock.now)
        await loop.step(delays[-1])
    assert len(loop.provider.mints) == 12  # each retry exactly when due, not before
    assert loop.state().failures == 12
    # equal jitter: attempt n waits between half and all of min(300, 2^(n-1)) seconds
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] >= 150  # capped at 300 s, never beyond
    assert loop.password("a") is None  # never a blank or made-up Secret


async def test_a_permanent_error_waits_for_the_credential_to_change() -> None:
    loop = Loop(gitrepo("a"))
    loop.provider.errors.append(PermanentError("GitHub API: HTTP 401: githubAppPrivateKey is not this App's key"))
    await loop.step()
    for _ in range(5):
        await loop.step(3600)
    assert len(loop.provider.mints) == 1  # no retry, however long
    assert loop.state().retry_at is None
    assert loop.events.reasons("a") == ["TokenMintFailed"]  # said once; repeats are the recorder's to drop

    rotated = KEY_PEM.replace(b"MIIB", b"MIIC")
    loop.cluster.put_secret(
        NS, "app", {"githubAppID": b"1", "githubAppInstallationID": b"7", "githubAppPrivateKey": rotated}
    )
    await loop.step(30)  # the re-read sees the new key: a new fingerprint, minted at once
    assert len(loop.provider.mints) == 2
    assert loop.password("a") == "token-1"
    assert len(loop.controller.tokens) == 1  # the failed key's state is forgotten


async def test_an_expired_token_is_never_written_and_never_blanks_the_secret() -> None:
    loop = Loop(gitrepo("a"), lifetime_s=600)
    await loop.step()
    loop.provider.errors.extend(TemporaryError("GitHub API: HTTP 503") for _ in range(50))
    await loop.step(700)  # past expiry, every retry failing
    loop.cluster.writes.clear()
    loop.cluster.secrets.pop((NS, "a-git-token"))
    loop.index.on_output("DELETED", {"metadata": {"namespace": NS, "name": "a-git-token"}})
    await loop.step(1)
    assert loop.cluster.writes == []  # nothing valid to put there
    assert loop.state().usable(loop.clock.now) is None


async def test_a_deleted_output_secret_is_written_again_without_a_mint() -> None:
    loop = Loop(gitrepo("a"))
    await loop.step()
    loop.cluster.secrets.pop((NS, "a-git-token"))
    loop.index.on_output("DELETED", {"metadata": {"namespace": NS, "name": "a-git-token"}})
    await loop.step(1)
    assert loop.password("a") == "token-1"
    assert len(loop.provider.mints) == 1


async def test_our_own_writes_echo_is_skipped_and_a_hand_edit_is_repaired() -> None:
    """The watch's echo of our write (same resourceVersion as the write's answer) is not digested again and does
    not wake a pass; an edit by anyone else (a new resourceVersion) is seen and undone, without a mint."""
    loop = Loop(gitrepo("a"))
    await loop.step()
    key = (NS, "a-git-token")
    written = loop.index.outputs[key]
    assert written.resource_version == loop.cluster.secrets[key]["metadata"]["resourceVersion"]
    loop.index.wake.clear()
    echo = copy.deepcopy(loop.cluster.secrets[key])
    echo["data"]["password"] = "bm90LXdoYXQtd2Ugd3JvdGU="  # a lie under our version: proves it is not read
    loop.index.on_output("MODIFIED", echo)
    assert loop.index.outputs[key] is written
    assert not loop.index.wake.is_set()
    loop.cluster.put_secret(  # a hand edit: stored under a new version, as the apiserver would
        NS,
        "a-git-token",
        {"password": b"hand-edited"},
        labels={names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE},
        ownerReferences=loop.cluster.secrets[key]["metadata"]["ownerReferences"],
    )
    assert loop.index.wake.is_set()
    assert loop.index.outputs[key].digest != written.digest
    await loop.step(1)
    assert loop.password("a") == "token-1"
    assert len(loop.provider.mints) == 1


async def test_a_foreign_secret_in_the_way_is_reported_not_overwritten() -> None:
    loop = Loop(gitrepo("a"))
    loop.cluster.put_secret(NS, "a-git-token", {"password": b"someone-elses"})
    await loop.step()
    assert loop.password("a") == "someone-elses"
    assert loop.events.reasons("a") == ["SecretConflict"]


async def test_our_secret_for_this_gitrepository_written_elsewhere_is_adopted() -> None:
    """A GitRepository moved to this shard (or a Secret written before sharding): its output Secret is ours but not
    in this shard's watch, so the create meets a 409; it is read, found to be ours for this very object, and
    updated with the shard's labels: no conflict, no fight."""
    loop = Loop(gitrepo("a"))
    owner = [{"kind": "GitRepository", "name": "a", "uid": "uid-a", "controller": True}]
    loop.cluster.secrets[(NS, "a-git-token")] = {
        "metadata": {
            "namespace": NS,
            "name": "a-git-token",
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.FLUX_SHARD_LABEL: "old"},
            "ownerReferences": owner,
        },
        "data": {"password": "b2xk"},
    }  # not notified: another shard's output is outside this shard's watch
    await loop.step()
    assert loop.password("a") == "token-1"
    assert loop.events.reasons("a") == ["TokenMinted"]
    assert loop.cluster.writes == [("apply", (NS, "a-git-token"))]


async def test_our_label_on_another_objects_secret_is_still_a_conflict() -> None:
    loop = Loop(gitrepo("a"))
    other = [{"kind": "GitRepository", "name": "b", "uid": "uid-b", "controller": True}]
    loop.cluster.secrets[(NS, "a-git-token")] = {
        "metadata": {
            "namespace": NS,
            "name": "a-git-token",
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE},
            "ownerReferences": other,
        },
        "data": {"password": "b3RoZXI="},
    }
    await loop.step()
    assert loop.password("a") == "other"
    assert loop.events.reasons("a") == ["SecretConflict"]


@pytest.mark.parametrize(
    "error",
    [ApiException(status=500, reason="Internal Server Error"), aiohttp.ServerDisconnectedError()],
    ids=["http-500", "dropped-connection"],
)
async def test_a_failed_write_is_retried_on_the_next_pass(error: BaseException) -> None:
    loop = Loop(gitrepo("a"))
    original = loop.cluster.create_secret

    async def fail_once(namespace: str, body: dict[str, Any]) -> str:
        loop.cluster.create_secret = original  # type: ignore[method-assign]
        raise error

    loop.cluster.create_secret = fail_once  # type: ignore[method-assign]
    await loop.step()
    assert loop.password("a") is None
    await loop.step(1)
    assert loop.password("a") == "token-1"
    assert len(loop.provider.mints) == 1  # the token was kept, only the write repeated


async def test_a_new_leader_adopts_live_tokens_and_mints_nothing_not_due() -> None:
    """Regression: every leadership change used to re-mint every token (and forget rate-limit backoff)."""
    repos = [gitrepo("a"), gitrepo("b"), gitrepo("slow", interval="10m", timeout="5m")]
    first = Loop(*repos)
    await first.step()
    assert len(first.provider.mints) == 1  # one credential and scope; the window is the slowest consumer's
    first.cluster.writes.clear()

    second = Loop(*repos, after=first, seed=8)
    await second.step(60)
    assert len(second.provider.mints) == 1  # nothing minted by the new leader
    assert second.cluster.writes == []  # and nothing rewritten
    renew_in = second.state().renew_at - second.clock.now
    assert 1800 - 120 - 60 <= renew_in <= 1800 - 60  # the adopted token keeps its own schedule (from issue)
    await second.step(renew_in)
    assert len(second.provider.mints) == 2


async def test_an_expired_held_token_is_not_adopted() -> None:
    first = Loop(gitrepo("a"), lifetime_s=600)
    await first.step()
    first.clock.advance(601)  # the held token has expired
    second = Loop(gitrepo("a"), after=first)
    await second.step()
    assert len(second.provider.mints) == 2


async def test_seed_rfc_key_spellings_are_a_warning_event_told_once() -> None:
    """The webhook holds no Secret permission by default: the refresher, which reads the Secret anyway, says it."""
    loop = Loop(gitrepo("a"))
    loop.cluster.put_secret(NS, "app", {"githubAppID": b"1", "githubInstallationID": b"7", "githubPrivateKey": KEY_PEM})
    for _ in range(3):
        await loop.step(120)
    assert loop.password("a") == "token-1"  # accepted, and used
    warnings = [e for e in loop.events.events if e[2] == "CredentialsWarning"]
    assert [w[3] for w in warnings] == [
        'Secret "app" key githubInstallationID is the seed-RFC spelling; prefer githubAppInstallationID',
        'Secret "app" key githubPrivateKey is the seed-RFC spelling; prefer githubAppPrivateKey',
    ]


# --- one object's unreachable repository (#24) ---------------------------------------------------------------


def opted_in(name: str, repositories: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {names.LABEL_PROVIDER: "github"},
            "annotations": {names.ANNOTATION_CREDENTIALS_SECRET: "app", names.ANNOTATION_REPOSITORIES: repositories},
        },
        "data": {},
    }


async def test_an_unreachable_repository_fails_only_the_object_that_names_it() -> None:
    """Regression: the namespace's one token is scoped to every repository; GitHub refused the whole request for
    one it cannot reach (422), and every object sharing the token was told TokenMintFailed and went without."""
    loop = Loop(gitrepo("app"), gitrepo("infra"), gitrepo("typo"))
    loop.provider.reach = {"app", "infra"}
    await loop.step()  # the shared mint is refused, the installation's list says which one: planned again
    assert loop.provider.listings == 1
    assert loop.index.wake.is_set()
    await loop.step()
    assert [m.repositories for m in loop.provider.mints] == [("app", "infra", "typo"), ("app", "infra")]
    assert loop.password("app") == loop.password("infra") == "token-1"
    assert loop.password("typo") is None
    assert loop.events.reasons("app") == ["TokenMinted"]
    assert loop.events.reasons("infra") == ["TokenMinted"]
    assert set(loop.events.reasons("typo")) == {"RepositoryUnreachable"}
    (message,) = {m for obj, _, reason, m in loop.events.events if obj == "typo"}
    assert "cannot reach acme/typo" in message
    assert "acme/app" not in message  # names its own repository only
    await loop.step(60)
    assert len(loop.provider.mints) == 2  # not asked again until the re-check
    assert loop.provider.listings == 1


async def test_a_repository_granted_again_widens_the_token_at_the_recheck() -> None:
    loop = Loop(gitrepo("app"), gitrepo("typo"))
    loop.provider.reach = {"app"}
    await loop.step()
    await loop.step()
    assert loop.password("typo") is None
    recheck = loop.controller._config.github_recheck_s
    await loop.step(recheck)  # still gone: listed again, and nothing else happens
    assert (len(loop.provider.mints), loop.provider.listings) == (2, 2)
    assert loop.password("app") == "token-1"
    loop.provider.reach = {"app", "typo"}  # installed again
    await loop.step(recheck)
    assert loop.provider.mints[-1].repositories == ("app", "typo")
    assert loop.password("typo") == loop.password("app") == "token-2"


async def test_a_refused_permission_is_shared_by_the_objects_that_asked_for_it() -> None:
    """A 422 with every repository reachable is about what the token asks for, which every member of one
    token asked for alike (objects asking other permissions have tokens of their own): all are told."""
    loop = Loop(gitrepo("app"), gitrepo("infra"))
    loop.provider.reach = {"app", "infra"}
    loop.provider.errors.append(PermanentError("GitHub refused the token's scope (422 ...)", "ScopeRefused"))
    await loop.step()
    assert loop.provider.listings == 1
    assert loop.events.reasons("app") == ["TokenMintFailed"]
    assert loop.events.reasons("infra") == ["TokenMintFailed"]


async def test_an_opted_in_secret_keeps_a_token_for_its_reachable_repositories() -> None:
    loop = Loop()
    loop.provider.reach = {"app"}
    loop.index.on_opt_in("ADDED", opted_in("argo", "acme/app,acme/gone"))
    await loop.step()
    await loop.step()
    assert loop.provider.mints[-1].repositories == ("app",)
    assert loop.cluster.password(NS, "argo") == "token-1"
    (message,) = {m for obj, _, reason, m in loop.events.events if obj == "argo" and reason != "TokenMinted"}
    assert "cannot reach acme/gone" in message
    assert "covers its other repositories" in message


# --- central credentials, granted by policy (#17) ------------------------------------------------------------

CENTRAL = "platform"
APP = {"githubAppID": b"1", "githubAppInstallationID": b"7", "githubAppPrivateKey": KEY_PEM}


def central_loop(*repos: dict[str, Any], **grants: str) -> Loop:
    """A controller whose credentials namespace holds the company's App, granted as ``grants`` says."""
    loop = Loop(*repos, args=(f"--namespace={CENTRAL}",))
    annotations = {f"flux-passwordless.io/grant-{k}": v for k, v in grants.items()}
    loop.cluster.put_secret(
        CENTRAL, "company-app", {**APP, "ca.crt": b"CA", "tls.key": b"CLIENT-KEY"}, annotations=annotations
    )
    return loop


def central(repo: dict[str, Any], reference: str = f"{CENTRAL}/company-app", **annotations: str) -> dict[str, Any]:
    repo["metadata"]["annotations"][names.ANNOTATION_CREDENTIALS_SECRET] = reference
    repo["metadata"]["annotations"].update(annotations)
    return repo


def told(loop: Loop, name: str) -> list[tuple[str, str]]:
    return [(reason, message) for obj, _, reason, message in loop.events.events if obj == name]


async def test_a_central_app_granted_to_the_namespace_fills_its_secrets_with_its_own_token() -> None:
    loop = central_loop(central(gitrepo("app")), namespaces="team-*,apps", repositories="acme/*")
    await loop.step()
    assert loop.password("app") == "token-1"
    assert loop.provider.mints[0].repositories == ("app",)
    output = loop.cluster.secrets[(NS, "app-git-token")]["data"]
    assert "ca.crt" in output
    assert "tls.key" not in output  # the platform's client key never lands in a tenant's namespace


async def test_a_namespace_not_granted_is_told_the_same_as_for_a_secret_that_does_not_exist() -> None:
    loop = central_loop(central(gitrepo("app")), central(gitrepo("probe"), f"{CENTRAL}/no-such"), namespaces="team-*")
    await loop.step()
    assert loop.provider.mints == []
    assert loop.password("app") is None
    (app,) = told(loop, "app")
    (probe,) = told(loop, "probe")
    assert app[0] == probe[0] == "NamespaceNotGranted"
    assert "team-*" not in app[1]  # the grant's contents (other tenants) are never told
    assert probe[1].replace("no-such", "company-app").replace("probe-", "app-") == app[1]


async def test_another_tenants_own_secret_cannot_be_named_and_is_never_read() -> None:
    loop = Loop(central(gitrepo("app"), "other-tenant/github-app"))
    loop.cluster.put_secret("other-tenant", "github-app", APP)
    reads = loop.cluster.reads
    await loop.step()
    assert loop.cluster.reads == reads
    assert loop.provider.mints == []
    ((reason, message),) = told(loop, "app")
    assert reason == "CredentialsNamespaceRefused"
    assert 'namespace "other-tenant" holds no central credentials' in message


async def test_a_repository_outside_the_grant_is_refused_naming_only_itself() -> None:
    repo = gitrepo("app")
    repo["spec"]["url"] = "https://github.com/rival/secret-plans"
    loop = central_loop(central(repo), central(gitrepo("ok")), namespaces="apps", repositories="acme/*")
    await loop.step()
    assert [m.repositories for m in loop.provider.mints] == [("ok",)]
    ((reason, message),) = told(loop, "app")
    assert reason == "RepositoryNotGranted"
    assert "repository rival/secret-plans is outside" in message
    assert "acme" not in message


async def test_permissions_beyond_the_grant_are_refused() -> None:
    repo = central(gitrepo("app"), **{names.ANNOTATION_GITHUB_PERMISSIONS: "contents:write"})
    loop = central_loop(repo, namespaces="apps")  # grant-permissions absent: contents:read
    await loop.step()
    assert loop.provider.mints == []
    ((reason, message),) = told(loop, "app")
    assert reason == "PermissionsNotGranted"
    assert "contents:write" in message


async def test_a_grant_removed_while_a_token_is_live_is_not_renewed_and_not_blanked() -> None:
    """The admin's choice: the next re-read refuses, no token is minted or renewed from then on, and the token
    already written is left to expire (it lives an hour at most; a Secret is never blanked)."""
    loop = central_loop(central(gitrepo("app")), namespaces="apps")
    await loop.step()
    assert loop.password("app") == "token-1"
    loop.cluster.put_secret(CENTRAL, "company-app", APP, annotations={})  # the grant is gone
    await loop.step(30)  # the credentials re-read
    await loop.step(3000)  # past the renewal
    assert len(loop.provider.mints) == 1
    assert loop.password("app") == "token-1"
    assert [reason for reason, _ in told(loop, "app")][-1] == "NamespaceNotGranted"


async def test_an_opted_in_secret_may_name_a_granted_central_credential() -> None:
    loop = central_loop(namespaces="apps")
    secret = opted_in("argo", "acme/app")
    secret["metadata"]["annotations"][names.ANNOTATION_CREDENTIALS_SECRET] = f"{CENTRAL}/company-app"
    loop.index.on_opt_in("ADDED", secret)
    await loop.step()
    assert loop.cluster.password(NS, "argo") == "token-1"


async def test_forty_tenants_on_one_central_credential_cost_one_secret_read_and_forty_tokens() -> None:
    """A central credential is read once per --credentials-resync, whatever the number of tenants naming it, and
    each tenant gets its own token (one per namespace, credential and scope)."""
    repos = []
    for i in range(40):
        repo = central(gitrepo("app"))
        repo["metadata"]["namespace"] = f"team-{i}"
        repo["metadata"]["uid"] = f"uid-team-{i}"
        repos.append(repo)
    loop = central_loop(*repos, namespaces="team-*")
    reads = loop.cluster.reads
    await loop.step()
    assert loop.cluster.reads - reads == 1
    assert len(loop.provider.mints) == 40
    assert len({m.key.namespace for m in loop.provider.mints}) == 40
    reads = loop.cluster.reads
    await loop.step(1)
    await loop.step(1)
    assert loop.cluster.reads == reads  # passes between re-reads read nothing


async def test_a_serviceaccount_unreadable_for_a_while_neither_stops_nor_restarts_a_keyless_token() -> None:
    """An apiserver restart fails the ServiceAccount's re-read: the identity read before is kept (no Warning, no
    early mint); the token is renewed when due."""
    repo = gitrepo("infra")
    repo["metadata"]["annotations"] = {names.ANNOTATION_PROVIDER: "gcp", names.ANNOTATION_SERVICE_ACCOUNT: "infra"}
    repo["spec"]["url"] = "https://source.developers.google.com/p/demo/r/infra"
    loop = Loop(repo)
    loop.cluster.service_accounts[(NS, "infra")] = {
        "metadata": {
            "name": "infra",
            "namespace": NS,
            "annotations": {
                names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: "projects/1/locations/global/workloadIdentityPools/p/"
                "providers/k8s"
            },
        }
    }
    await loop.step()
    assert loop.password("infra") == "token-1"
    assert isinstance(loop.provider.mints[0].credential, GcpIdentity)
    loop.cluster.fail_next = [aiohttp.ClientConnectionError()] * 3
    await loop.step(40)  # the ServiceAccount is due a re-read; it fails
    await loop.step(1)
    assert len(loop.provider.mints) == 1
    assert loop.events.reasons("infra") == ["TokenMinted"]
    await loop.step(3000)  # due a renewal: minted from the identity read again
    assert loop.password("infra") == "token-2"
