"""make bench-refresher: the refresher process against a real control plane and the GitHub fake.

For each size (1,000 and 10,000 GitRepositories over 100 GitHub App credentials, spread over 10 namespaces):
a fresh control plane; the credentials Secrets and GitRepositories are created first; then the refresher
starts (its own process) and the clock runs until every output Secret holds a live token. Then a steady
minute in which nothing changes must cost zero Secret writes. Reported: time to converge, mints against the
theoretical minimum (one per credential: every credential's repositories fit in one 500-repository token),
Secret writes, and the refresher's peak RSS. The last line is machine-readable:
  bench-refresher: n=<repos> converge_s=<s> mints=<n> min_mints=<n> steady_writes=<n> rss_mb=<mb>
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kubernetes_asyncio import client, config

from common import names
from tests.fakes.github import FakeGitHub, new_app_key, running_github
from tests.support.controlplane import ControlPlane, binaries_dir, free_port
from tests.support.kube import install_crds
from tests.support.tls import TLSFiles

CREDENTIALS = 100
NAMESPACES = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def gather_limited(coros: list, limit: int = 48) -> None:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(limit)

    async def run(coro) -> None:  # type: ignore[no-untyped-def]
        async with gate:
            await coro

    await asyncio.gather(*(run(c) for c in coros))


async def populate(api: client.ApiClient, fake: FakeGitHub, tls: TLSFiles, n: int) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for i in range(NAMESPACES):
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"team-{i}")))
    secrets = []
    for c in range(CREDENTIALS):
        private, public = new_app_key()
        app_id, installation = 1000 + c, 5000 + c
        fake.add_app(app_id, public)
        repos = {f"repo-{j}" for j in range(c, n, CREDENTIALS)}
        fake.add_installation(installation, app_id, f"org-{c}", repos)
        data = {
            "githubAppID": str(app_id).encode(),
            "githubAppInstallationID": str(installation).encode(),
            "githubAppPrivateKey": private,
            "githubAppBaseURL": fake.url.encode(),
            "ca.crt": tls.ca_pem,
        }
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"github-app-{c}"),
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        )
        secrets.append(core.create_namespaced_secret(f"team-{c % NAMESPACES}", secret))
    await gather_limited(secrets)
    repos_bodies = []
    for j in range(n):
        c = j % CREDENTIALS
        body = {
            "apiVersion": f"{names.FLUX_SOURCE_GROUP}/v1",
            "kind": "GitRepository",
            "metadata": {
                "name": f"repo-{j}",
                "annotations": {
                    names.ANNOTATION_PROVIDER: "github",
                    names.ANNOTATION_CREDENTIALS_SECRET: f"github-app-{c}",
                },
            },
            "spec": {
                "interval": "5m",
                "url": f"https://github.example.com/org-{c}/repo-{j}",
                "provider": "generic",
                "secretRef": {"name": f"repo-{j}-git-token"},
            },
        }
        repos_bodies.append(
            custom.create_namespaced_custom_object(
                names.FLUX_SOURCE_GROUP, "v1", f"team-{c % NAMESPACES}", names.GITREPOSITORY_PLURAL, body
            )
        )
    await gather_limited(repos_bodies)


class SecretCounter:
    """Watches our output Secrets (as a consumer would see them): live ones, and every write."""

    def __init__(self, api: client.ApiClient, fake: FakeGitHub) -> None:
        self._core = client.CoreV1Api(api)
        self._fake = fake
        self.live: set[str] = set()
        self.writes = 0
        self.ready = asyncio.Event()

    async def run(self) -> None:
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        version = "0"
        while True:
            response = await self._core.list_secret_for_all_namespaces(
                label_selector=selector,
                watch=True,
                resource_version=version,
                timeout_seconds=600,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(10, 700),
            )
            self.ready.set()
            async for line in response.content:  # type: ignore[attr-defined]  # raw response (no preload)
                event = json.loads(line)
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    self.writes += 1
                    password = base64.b64decode((obj.get("data") or {}).get("password", "")).decode()
                    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                    if self._fake.live(password):
                        self.live.add(key)


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback http
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_size(n: int, steady_s: int, workdir: Path, log_level: str = "warning") -> dict[str, float]:
    log_file = (workdir / f"refresher-{n}.log").open("wb")
    plane = ControlPlane(workdir / f"plane-{n}", binaries_dir())
    plane.start()
    try:
        install_crds(plane)
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(plane.kubeconfig), client_configuration=cfg)
        tls = TLSFiles.create(workdir / f"tls-{n}")
        async with client.ApiClient(cfg) as api, running_github(FakeGitHub(), tls) as fake:
            log(f"n={n}: creating {CREDENTIALS} credentials Secrets and {n} GitRepositories ...")
            t0 = time.monotonic()
            await populate(api, fake, tls, n)
            log(f"n={n}: created in {time.monotonic() - t0:.1f}s; starting the refresher")
            counter = SecretCounter(api, fake)
            watch = asyncio.create_task(counter.run())
            await counter.ready.wait()
            port = free_port()
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                [sys.executable, "-m", "refresher", f"--listen=127.0.0.1:{port}", f"--log-level={log_level}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            started = time.monotonic()
            rss_timeline: list[tuple[float, float]] = []
            try:
                last_report = started
                while len(counter.live) < n:
                    if proc.poll() is not None:
                        raise RuntimeError(f"refresher exited with {proc.returncode}: see {log_file.name}")
                    if time.monotonic() - started > 600:
                        raise TimeoutError(f"not converged after 600s: {len(counter.live)}/{n}")
                    if time.monotonic() - last_report > 10:
                        took = time.monotonic() - started
                        log(f"n={n}: {len(counter.live)}/{n} Secrets hold a live token after {took:.0f}s")
                        last_report = time.monotonic()
                    await asyncio.sleep(0.05)
                    if not rss_timeline or time.monotonic() - started - rss_timeline[-1][0] >= 0.5:
                        rss_timeline.append((round(time.monotonic() - started, 1), current_rss_mb(proc.pid)))
                converge = time.monotonic() - started
                if os.environ.get("BENCH_RSS_TIMELINE"):
                    log(f"n={n}: refresher RSS over time (s, MB): {rss_timeline}")
                log(f"n={n}: converged in {converge:.1f}s; {fake.mints} mints; now a steady {steady_s}s ...")
                await asyncio.sleep(2)  # let the last watch events land
                metrics_url = f"http://127.0.0.1:{port}/metrics"
                writes_before = metric(metrics_url, "flux_passwordless_secret_writes_total")
                seen_before = counter.writes
                mints_before = fake.mints
                await asyncio.sleep(steady_s)
                steady_writes = metric(metrics_url, "flux_passwordless_secret_writes_total") - writes_before
                steady_seen = counter.writes - seen_before
                result = {
                    "n": n,
                    "converge_s": round(converge, 1),
                    "mints": fake.mints,
                    "min_mints": CREDENTIALS,
                    "writes": int(metric(metrics_url, "flux_passwordless_secret_writes_total")),
                    "steady_writes": int(max(steady_writes, steady_seen)),
                    "steady_mints": fake.mints - mints_before,
                    "rss_mb": round(peak_rss_mb(proc.pid), 1),
                }
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                watch.cancel()
    finally:
        plane.stop()
    log(f"n={n}: {result}")
    return result


async def amain(sizes: list[int], steady_s: int) -> int:
    with tempfile.TemporaryDirectory(prefix="fp-bench-refresher-") as tmp:
        results = [await run_size(n, steady_s, Path(tmp)) for n in sizes]
    print()
    print(f"{'repos':>7} {'converge':>9} {'mints':>6} {'min':>5} {'writes':>7} {'steady writes':>14} {'peak RSS':>9}")
    for r in results:
        print(
            f"{r['n']:>7} {r['converge_s']:>8.1f}s {r['mints']:>6} {r['min_mints']:>5} {r['writes']:>7} "
            f"{r['steady_writes']:>14} {r['rss_mb']:>7.1f}MB"
        )
    last = results[-1]
    print(
        f"bench-refresher: n={last['n']} converge_s={last['converge_s']} mints={last['mints']} "
        f"min_mints={last['min_mints']} steady_writes={last['steady_writes']} rss_mb={last['rss_mb']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--steady-seconds", type=int, default=60)
    args = parser.parse_args(argv)
    return asyncio.run(amain([int(s) for s in args.sizes.split(",")], args.steady_seconds))


if __name__ == "__main__":
    sys.exit(main())
