"""make soak: the refresher under faults, for minutes, checked every second.

Two refresher replicas (their own processes, leader election on one Lease) keep 215 GitRepositories (GitHub
Apps and Google service-account keys in the tenants' namespaces; 10 on a central GitHub App granted to a tenant
namespace; 5 keyless Google, per object through the apiserver's TokenRequest and STS; 60-second tokens) and 8
opted-in Secrets (each with a key of its own that must survive) filled, against a real control plane that they
reach through a TCP proxy. Every 20-40 s a fault drawn at random (seeded):

- ``apiserver-restart``: kube-apiserver stopped and started on the same port;
- ``connections-dropped``: the proxy cuts every connection mid-request and refuses new ones for 3 s;
- ``leader-killed``: the leading replica is SIGKILLed (restarted once the other leads, as a Deployment would);
- ``provider-errors``: GitHub answers 502 five times and then 429 with Retry-After, Google 503 three times;
- ``credential-rotated``: a GitHub App gets a new private key (the old one stops working at once);
- ``watch-expired``: etcd is compacted and the apiserver restarted, so the informers' next watch gets 410 Gone;
- ``repository-removed``: a repository is taken out of its App's installation for 45 s, then granted again.

Every second, every Secret is read through the apiserver directly and its password checked against the stand-in
that issued it. Reported, last line:

  soak: minutes=M faults=N expired_secret_seconds=E max_failover_s=F extra_mints=X lost_foreign_keys=L

- E: the sum over checks of Secrets holding a token the provider no longer accepts (targets: 0), leaving out the
  Secret of a removed repository until the re-check after it is granted again (its object alone goes without);
- F: SIGKILL of the leader -> the other replica holds the Lease;
- X: mints of a token less than 20 s after the previous mint of the same token (a renewal comes ~28 s after
  issue here: anything sooner re-minted a token that was still good: a new leader that did not adopt, a relist
  that lost state), leaving out the first mint after a rotation of that credential;
- L: opted-in Secrets that lost, even once, a key that is not ours (target: 0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.kube import read_json
from tests.fakes.github import FakeGitHub, new_app_key, running_github
from tests.fakes.google import FakeGoogle, key_json, running_google
from tests.support.controlplane import ControlPlane, binaries_dir, free_port
from tests.support.kube import install_crds
from tests.support.tls import TLSFiles

NAMESPACES = [f"soak-{i}" for i in range(4)]
GITHUB_REPOS, GCP_REPOS, OPT_INS = 150, 50, 8
CENTRAL_TENANT, CENTRAL_REPOS = "soak-tenant", 10  # GitRepositories on the central App
KEYLESS_REPOS = 5  # keyless Google GitRepositories in soak-0
OWN_NAMESPACE = "flux-passwordless"
POOL_PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/soak/providers/plane"
KEYLESS_EMAIL = "keyless@demo-project.iam.gserviceaccount.com"
TOKEN_LIFETIME_S = 60
LEASE = "flux-passwordless-refresher"
EXTRA_MINT_WITHIN_S = 20.0
RECHECK_S = 10  # --github-recheck-interval of the replicas
REMOVED_FOR_S = 45.0  # longer than a renewal period: the namespace's token is renewed while the repository is gone


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def b64(value: str | bytes) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


# --- the network between the refreshers and the apiserver ---------------------------------------------------


class Proxy:
    """A TCP relay to the apiserver that can cut every connection and refuse new ones for a while."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._refuse_until = 0.0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)

    def drop(self, refuse_s: float) -> None:
        self._refuse_until = time.monotonic() + refuse_s
        for down, up in list(self._pairs):
            down.transport.abort()
            up.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop(0)


# --- the refresher replicas ---------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log_file:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=log_file)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


# --- the world ----------------------------------------------------------------------------------------------


@dataclass
class World:
    plane: ControlPlane
    api: client.ApiClient
    github: FakeGitHub
    google: FakeGoogle
    tls: TLSFiles
    proxy: Proxy
    replicas: list[Replica]
    rng: random.Random
    apps: dict[str, int] = field(default_factory=dict)  # credentials Secret "ns/name" -> App ID
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)  # credentials Secret -> its grants
    rotations: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # installation -> times
    failovers: list[float] = field(default_factory=list)
    expired_secret_seconds: int = 0
    lost_foreign: set[str] = field(default_factory=set)
    # "ns/secret" -> until when (monotonic) its repository is out of the installation's reach, or just back
    # and not yet re-checked: that object alone may go without a live token meanwhile (#24)
    excused: dict[str, float] = field(default_factory=dict)
    checks: int = 0
    failed_checks: int = 0

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    async def leader(self) -> str | None:
        lease = await client.CoordinationV1Api(self.api).read_namespaced_lease(LEASE, "flux-passwordless")
        return lease.spec.holder_identity


async def populate(world: World) -> None:
    core, custom = world.core, client.CustomObjectsApi(world.api)
    for ns in [*NAMESPACES, CENTRAL_TENANT, OWN_NAMESPACE]:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    # the central App: its key in the refresher's namespace only, granted to one tenant namespace (#17)
    private, public = new_app_key()
    world.github.add_app(200, public)
    world.github.add_installation(600, 200, "org-c", {f"central-{j}" for j in range(CENTRAL_REPOS)})
    central = f"{OWN_NAMESPACE}/central-app"
    world.apps[central] = 200
    world.annotations[central] = {
        names.ANNOTATION_GRANT_NAMESPACES: CENTRAL_TENANT,
        names.ANNOTATION_GRANT_REPOSITORIES: "org-c/central-*",
    }
    await put_secret(world, OWN_NAMESPACE, "central-app", github_data(world, 200, 600, private))
    # keyless Google: a ServiceAccount of soak-0, trusted by a pool provider for this control plane's issuer
    await core.create_namespaced_service_account(
        NAMESPACES[0],
        client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(
                name="keyless",
                annotations={
                    names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: POOL_PROVIDER,
                    names.GCP_ANNOTATION_SERVICE_ACCOUNT: KEYLESS_EMAIL,
                },
            )
        ),
    )
    world.google.trust(
        POOL_PROVIDER,
        f"https://127.0.0.1:{world.plane.api_port}",
        (world.plane.state_dir / "pki" / "sa.pub").read_bytes(),
    )
    world.google.allow(KEYLESS_EMAIL, POOL_PROVIDER, NAMESPACES[0], "keyless")
    for i, ns in enumerate(NAMESPACES):
        private, public = new_app_key()
        app_id, installation = 100 + i, 500 + i
        world.github.add_app(app_id, public)
        repos = {f"app-{j}" for j in range(GITHUB_REPOS) if j % len(NAMESPACES) == i}
        world.github.add_installation(installation, app_id, f"org-{i}", repos | {"shared"})
        await put_secret(world, ns, "github-app", github_data(world, app_id, installation, private))
        world.apps[f"{ns}/github-app"] = app_id
    for i, ns in enumerate(NAMESPACES[:2]):
        key = world.google.service_account_key(f"soak-{i}@demo-project.iam.gserviceaccount.com")
        await put_secret(world, ns, "gcp-sa", {"gcpServiceAccount": key_json(key)})

    def gitrepo(ns: str, name: str, provider: str, url: str, credentials: str) -> dict[str, Any]:
        """``credentials``: a Secret, ``namespace/name`` of a central one, or ``sa:NAME`` for keyless."""
        identity = (
            {names.ANNOTATION_SERVICE_ACCOUNT: credentials.removeprefix("sa:")}
            if credentials.startswith("sa:")
            else {names.ANNOTATION_CREDENTIALS_SECRET: credentials}
        )
        return {
            "apiVersion": names.GITREPOSITORY_API_VERSION,
            "kind": "GitRepository",
            "metadata": {"name": name, "annotations": {names.ANNOTATION_PROVIDER: provider, **identity}},
            # 10 s interval + 5 s timeout: renewals at ~30 s into a 60 s token (2 x 15 s left for the consumer)
            "spec": {
                "interval": "10s",
                "timeout": "5s",
                "url": url,
                "provider": "generic",
                "secretRef": {"name": f"{name}-git-token"},
            },
        }

    bodies = []
    for j in range(GITHUB_REPOS):
        i = j % len(NAMESPACES)
        url = f"https://github.example.com/org-{i}/app-{j}"
        bodies.append((NAMESPACES[i], gitrepo(NAMESPACES[i], f"app-{j}", "github", url, "github-app")))
    for j in range(GCP_REPOS):
        ns = NAMESPACES[j % 2]
        url = f"https://source.developers.google.com/p/demo/r/infra-{j}"
        bodies.append((ns, gitrepo(ns, f"infra-{j}", "gcp", url, "gcp-sa")))
    for j in range(CENTRAL_REPOS):
        url = f"https://github.example.com/org-c/central-{j}"
        bodies.append((CENTRAL_TENANT, gitrepo(CENTRAL_TENANT, f"central-{j}", "github", url, central)))
    for j in range(KEYLESS_REPOS):
        url = f"https://source.developers.google.com/p/demo/r/keyless-{j}"
        bodies.append((NAMESPACES[0], gitrepo(NAMESPACES[0], f"keyless-{j}", "gcp", url, "sa:keyless")))
    for ns, body in bodies:
        await custom.create_namespaced_custom_object(
            names.FLUX_SOURCE_GROUP, "v1", ns, names.GITREPOSITORY_PLURAL, body
        )
    for k in range(OPT_INS):
        ns = NAMESPACES[k % len(NAMESPACES)]
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=f"argocd-repo-{k}",
                labels={names.LABEL_PROVIDER: "github"},
                annotations={
                    names.ANNOTATION_CREDENTIALS_SECRET: "github-app",
                    names.ANNOTATION_REPOSITORIES: f"org-{k % len(NAMESPACES)}/shared",
                },
            ),
            type="kubernetes.io/basic-auth",
            data={"username": b64("pat-user"), "password": b64("ghp_long_lived_pat"), "foreign": b64(f"keep-{k}")},
        )
        await core.create_namespaced_secret(ns, secret)


def github_data(world: World, app_id: int, installation: int, private: bytes) -> dict[str, bytes]:
    return {
        "githubAppID": str(app_id).encode(),
        "githubAppInstallationID": str(installation).encode(),
        "githubAppPrivateKey": private,
        "githubAppBaseURL": world.github.url.encode(),
        "ca.crt": world.tls.ca_pem,
    }


async def put_secret(world: World, ns: str, name: str, data: dict[str, bytes]) -> None:
    annotations = world.annotations.get(f"{ns}/{name}")
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations), data={k: b64(v) for k, v in data.items()}
    )
    try:
        await world.core.create_namespaced_secret(ns, body)
    except ApiException as err:
        if err.status != 409:
            raise
        await world.core.replace_namespaced_secret(name, ns, body)


# --- the check, every second --------------------------------------------------------------------------------


def live(world: World, secret: dict[str, Any]) -> bool:
    data = secret.get("data") or {}
    password = base64.b64decode(data.get("password", "")).decode()
    return world.github.live(password) or world.google.live(password)


def excused(world: World, secret: dict[str, Any], now: float) -> bool:
    meta = secret["metadata"]
    return world.excused.get(f"{meta['namespace']}/{meta['name']}", 0.0) > now


async def check(world: World, converged: asyncio.Event) -> None:
    """Read every Secret we fill (through the apiserver directly) and count those holding a dead token."""
    expected = GITHUB_REPOS + GCP_REPOS + OPT_INS + CENTRAL_REPOS + KEYLESS_REPOS
    while True:
        started = time.monotonic()
        try:
            async with asyncio.timeout(3):
                ours = await read_json(
                    world.core.list_secret_for_all_namespaces(
                        label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}", _preload_content=False
                    )
                )
                opted = await read_json(
                    world.core.list_secret_for_all_namespaces(
                        label_selector=names.LABEL_PROVIDER, _preload_content=False
                    )
                )
                items = ours["items"] + opted["items"]
        except Exception:  # the apiserver is being restarted: this second cannot be checked
            world.failed_checks += 1
        else:
            world.checks += 1
            now = time.monotonic()
            dead = sum(1 for s in items if not live(world, s) and not excused(world, s, now))
            dead += max(expected - len(items), 0)
            if converged.is_set():
                world.expired_secret_seconds += dead
            elif dead == 0:
                converged.set()
            for s in items:
                meta = s["metadata"]
                if names.LABEL_PROVIDER in (meta.get("labels") or {}):
                    k = meta["name"].rsplit("-", 1)[1]
                    if (s.get("data") or {}).get("foreign") != b64(f"keep-{k}"):
                        world.lost_foreign.add(f"{meta['namespace']}/{meta['name']}")
        await asyncio.sleep(max(1.0 - (time.monotonic() - started), 0.05))


# --- the faults ---------------------------------------------------------------------------------------------


async def apiserver_restart(world: World) -> str:
    await asyncio.to_thread(world.plane.restart_apiserver)
    return "apiserver back"


async def connections_dropped(world: World) -> str:
    world.proxy.drop(3.0)
    return "every connection cut, new ones refused for 3 s"


async def leader_killed(world: World) -> str:
    leader = await world.leader()
    victim = next((r for r in world.replicas if r.name == leader), None)
    if victim is None:
        return f"no replica holds the Lease ({leader}); nothing killed"
    other = next(r for r in world.replicas if r is not victim)
    killed = time.monotonic()
    victim.kill()
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(Exception):
                if await world.leader() == other.name:
                    break
            await asyncio.sleep(0.2)
    failover = time.monotonic() - killed
    world.failovers.append(failover)
    victim.start()
    return f"{victim.name} SIGKILLed; {other.name} leads after {failover:.1f}s; {victim.name} restarted"


async def provider_errors(world: World) -> str:
    world.github.fail_next(502, count=5)
    world.github.fail_next(429, headers={"Retry-After": "2"})
    world.google.fail_statuses.extend([503, 503, 503])
    return "GitHub 502 x5 then 429 (Retry-After: 2); Google 503 x3"


async def credential_rotated(world: World) -> str:
    secret = world.rng.choice(sorted(world.apps))
    ns, name = secret.split("/")
    app_id = world.apps[secret]
    installation = next(i for i, inst in world.github.installations.items() if inst.app_id == app_id)
    private, public = new_app_key()
    world.github.add_app(app_id, public)  # the old key stops working at once
    world.rotations[installation].append(time.time())
    await put_secret(world, ns, name, github_data(world, app_id, installation, private))
    return f"App {app_id} ({secret}) has a new private key"


async def watch_expired(world: World) -> str:
    etcd = f"http://127.0.0.1:{world.plane.etcd_port}"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - loopback etcd
            etcd + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())  # type: ignore[no-any-return]

    revision = int((await asyncio.to_thread(post, "/v3/kv/range", {"key": b64("\0")}))["header"]["revision"])
    await asyncio.to_thread(post, "/v3/kv/compaction", {"revision": revision, "physical": True})
    await asyncio.to_thread(world.plane.restart_apiserver)
    return f"etcd compacted at revision {revision}, apiserver restarted: watches resume too old"


async def repository_removed(world: World) -> str:
    """A repository taken out of its installation (deleted, or no longer granted to the App) and granted again
    REMOVED_FOR_S later: its object alone goes without (the rest of its namespace's token is minted without it),
    and it is served again within the re-check after it is back."""
    i = world.rng.randrange(len(NAMESPACES))
    installation = 500 + i
    repo = world.rng.choice(sorted(world.github.installations[installation].repositories - {"shared"}))
    world.github.remove_repositories(installation, {repo})
    secret = f"{NAMESPACES[i]}/{repo}-git-token"
    world.excused[secret] = float("inf")

    def granted_again() -> None:
        world.github.add_repositories(installation, {repo})
        world.excused[secret] = time.monotonic() + RECHECK_S + TOKEN_LIFETIME_S / 2

    asyncio.get_running_loop().call_later(REMOVED_FOR_S, granted_again)
    return f"org-{i}/{repo} out of installation {installation} for {REMOVED_FOR_S:g} s"


FAULTS: dict[str, Callable[[World], Awaitable[str]]] = {
    "apiserver-restart": apiserver_restart,
    "connections-dropped": connections_dropped,
    "leader-killed": leader_killed,
    "provider-errors": provider_errors,
    "credential-rotated": credential_rotated,
    "watch-expired": watch_expired,
    "repository-removed": repository_removed,
}


def extra_mints(world: World) -> int:
    return len(extra_mint_keys(world))


def extra_mint_keys(world: World) -> list[str]:
    """Mints of one token (same installation, repositories, permissions; or same Google account) less than
    EXTRA_MINT_WITHIN_S after the previous one, the first after a rotation of its credential left out."""
    times: dict[tuple[Any, ...], list[tuple[float, int]]] = defaultdict(list)
    for token in world.github.issued.values():
        if token.permissions == {"metadata": "read"}:
            continue  # a listing token (what an installation reaches, #24), not a token any Secret holds
        repos = tuple(sorted(token.repositories)) if token.repositories is not None else None
        key = ("github", token.installation, repos, tuple(sorted(token.permissions.items())))
        times[key].append((token.expires_at - TOKEN_LIFETIME_S, token.installation))
    for email, expires in world.google.issued.values():
        times[("gcp", email)].append((expires - TOKEN_LIFETIME_S, -1))
    extra: list[str] = []
    for key, minted in times.items():
        minted.sort()
        for (before, _), (at, installation) in itertools.pairwise(minted):
            rotated = any(before <= r <= at for r in world.rotations.get(installation, []))
            if at - before < EXTRA_MINT_WITHIN_S and not rotated:
                extra.append(f"{key[0]}:{key[1]}:{key[2] if len(key) > 2 else ''} after {at - before:.1f}s")
    return extra


# --- the run ------------------------------------------------------------------------------------------------


async def soak(
    minutes: float,
    seed: int,
    workdir: Path,
    pause_s: tuple[float, float] = (20, 40),
    every_kind: bool = False,
) -> dict[str, Any]:
    """``every_kind``: the faults in turn (each kind once per round) instead of drawn at random."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's draw
    plane = ControlPlane(workdir / "plane", binaries_dir()).start()
    try:
        install_crds(plane)
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(plane.kubeconfig), client_configuration=cfg)
        tls = TLSFiles.create(workdir / "tls")
        github, google = FakeGitHub(token_lifetime_s=TOKEN_LIFETIME_S), FakeGoogle(token_lifetime_s=TOKEN_LIFETIME_S)
        async with client.ApiClient(cfg) as api, running_github(github, tls), running_google(google):
            proxy = Proxy(plane.api_port)
            await proxy.start()
            kubeconfig = yaml.safe_load(plane.kubeconfig.read_text())
            kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
            proxied = workdir / "kubeconfig-proxied"
            proxied.write_text(yaml.safe_dump(kubeconfig))
            env = {**os.environ, "KUBECONFIG": str(proxied), "POD_NAMESPACE": "flux-passwordless"}
            replicas = [
                Replica(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "refresher",
                        "--leader-elect",
                        f"--lease-name={LEASE}",
                        f"--identity={name}",
                        f"--listen=127.0.0.1:{free_port()}",
                        "--credentials-resync=5",
                        f"--github-recheck-interval={RECHECK_S}",
                        f"--gcp-token-urls={google.url}/token",
                        f"--gcp-sts-url={google.url}/v1/token",
                        f"--gcp-iam-credentials-url={google.url}",
                        f"--github-api-urls={github.url}",
                        "--log-level=info",
                    ],
                    env,
                    workdir / f"{name}.log",
                )
                for name in ("replica-a", "replica-b")
            ]
            world = World(plane, api, github, google, tls, proxy, replicas, rng)
            await populate(world)
            log(f"{GITHUB_REPOS + GCP_REPOS} GitRepositories, {OPT_INS} opted-in Secrets; starting 2 replicas")
            for replica in replicas:
                replica.start()
            converged = asyncio.Event()
            checker = asyncio.create_task(check(world, converged))
            started = time.monotonic()
            async with asyncio.timeout(120):
                await converged.wait()
            log(f"converged in {time.monotonic() - started:.1f}s; faults for {minutes:g} minutes")
            faults: list[str] = []
            deadline = time.monotonic() + minutes * 60
            try:
                while True:
                    pause = rng.uniform(*pause_s)
                    if time.monotonic() + pause > deadline:
                        await asyncio.sleep(max(deadline - time.monotonic(), 0))
                        break
                    await asyncio.sleep(pause)
                    kinds = sorted(FAULTS)
                    kind = kinds[len(faults) % len(kinds)] if every_kind else rng.choice(kinds)
                    outcome = await FAULTS[kind](world)
                    faults.append(kind)
                    log(
                        f"fault {len(faults)}: {kind}: {outcome} (dead-token seconds so far: "
                        f"{world.expired_secret_seconds})"
                    )
                await asyncio.sleep(5)  # the last fault's consequences land
            finally:
                checker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checker
                for replica in replicas:
                    replica.stop()
                await proxy.close()
            relists = sum(r.log_file.read_text().count("watch history expired") for r in replicas)
            return {
                "minutes": minutes,
                "faults": len(faults),
                "by_kind": {k: faults.count(k) for k in sorted(set(faults))},
                "expired_secret_seconds": world.expired_secret_seconds,
                "max_failover_s": round(max(world.failovers, default=0.0), 1),
                "extra_mints": extra_mints(world),
                "extra_mint_keys": extra_mint_keys(world)[:10],
                "lost_foreign_keys": len(world.lost_foreign),
                "mints": github.mints + len(google.issued),
                "checks": world.checks,
                "unchecked_seconds": world.failed_checks,
                "relists_after_410": relists,
            }
    finally:
        plane.stop()


def report(result: dict[str, Any]) -> str:
    return (
        f"soak: minutes={result['minutes']:g} faults={result['faults']} "
        f"expired_secret_seconds={result['expired_secret_seconds']} max_failover_s={result['max_failover_s']} "
        f"extra_mints={result['extra_mints']} lost_foreign_keys={result['lost_foreign_keys']}"
    )


async def amain(minutes: float, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fp-soak-") as tmp:
        return await soak(minutes, seed, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    args = parser.parse_args(argv)
    result = asyncio.run(amain(args.minutes, args.seed))
    log(f"details: {result}")
    print(report(result))
    return 0 if result["expired_secret_seconds"] == 0 and result["lost_foreign_keys"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
