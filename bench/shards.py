"""make bench-shards: 100,000 GitRepositories over 1,000 GitHub App credentials, split across 4 refresher shards on
one real control plane, the way Flux shards source-controller (sharding.fluxcd.io/key; the main instance serves
what carries no shard label: --watch-label-selector=!sharding.fluxcd.io/key).

Repository j uses App j % 1,000 and is in shard j % 4 (0: the main instance), so each App's 100 repositories
sit in one shard and the theoretical minimum is one mint per App. The four refresher processes start together
once everything exists; per shard: the time until every one of its Secrets holds a live token, and its peak RSS.
Then a steady minute must cost zero Secret writes. The last line is machine-readable:
  bench-shards: n=<repos> shards=<k> converge_s=<slowest> per_shard_s=<a/b/..> mints=<n> min_mints=<n>
  steady_writes=<n> rss_mb=<a/b/..>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes_asyncio import client, config

from bench.refresher import NAMESPACES, SecretCounter, log, metric, peak_rss_mb, populate
from common import names
from tests.fakes.github import FakeGitHub, running_github
from tests.support.controlplane import ControlPlane, binaries_dir, free_port
from tests.support.kube import install_crds
from tests.support.tls import TLSFiles


def shard_name(index: int) -> str | None:
    return None if index == 0 else f"shard{index}"


def selector(index: int) -> str:
    name = shard_name(index)
    return f"!{names.FLUX_SHARD_LABEL}" if name is None else f"{names.FLUX_SHARD_LABEL}={name}"


async def run(n: int, credentials: int, shards: int, steady_s: int, workdir: Path) -> dict[str, object]:
    plane = ControlPlane(workdir / "plane", binaries_dir())
    plane.start()
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        install_crds(plane)
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(plane.kubeconfig), client_configuration=cfg)
        tls = TLSFiles.create(workdir / "tls")
        async with client.ApiClient(cfg) as api, running_github(FakeGitHub(), tls) as fake:
            log(f"creating {credentials} credentials Secrets and {n} GitRepositories in {shards} shards ...")
            t0 = time.monotonic()
            await populate(api, fake, tls, n, credentials, lambda j: shard_name(j % shards), one_key=True)
            log(f"created in {time.monotonic() - t0:.0f}s; starting {shards} refresher shards")
            counter = SecretCounter(api, fake)
            watch = asyncio.create_task(counter.run())
            await counter.ready.wait()
            shard_of_key = {f"team-{(j % credentials) % NAMESPACES}/repo-{j}-git-token": j % shards for j in range(n)}
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
            for index in range(shards):
                port = free_port()
                log_file = (workdir / f"refresher-{index}.log").open("wb")
                argv = [
                    sys.executable,
                    "-m",
                    "refresher",
                    f"--listen=127.0.0.1:{port}",
                    f"--github-api-urls={fake.url}",
                    "--log-level=warning",
                    f"--watch-label-selector={selector(index)}",
                ]
                proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log_file)  # noqa: ASYNC220
                procs.append((proc, port))
            started = time.monotonic()
            last = started
            while len(counter.live) < n:
                for proc, _ in procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a refresher shard exited with {proc.returncode}; see {workdir}")
                if time.monotonic() - started > 1200:
                    raise TimeoutError(f"not converged after 1200s: {len(counter.live)}/{n}")
                if time.monotonic() - last > 15:
                    log(f"{len(counter.live)}/{n} Secrets hold a live token after {time.monotonic() - started:.0f}s")
                    last = time.monotonic()
                await asyncio.sleep(0.1)
            per_shard = [0.0] * shards
            for key, at in counter.live_at.items():
                if key in shard_of_key:
                    index = shard_of_key[key]
                    per_shard[index] = max(per_shard[index], at - started)
            log(f"converged: per shard {' '.join(f'{s:.1f}s' for s in per_shard)}; {fake.mints} mints; steady ...")
            await asyncio.sleep(2)

            def writes() -> float:
                return sum(
                    metric(f"http://127.0.0.1:{port}/metrics", "flux_passwordless_secret_writes_total")
                    for _, port in procs
                )

            before, seen_before, mints = writes(), counter.writes, fake.mints
            await asyncio.sleep(steady_s)
            steady = max(writes() - before, counter.writes - seen_before)
            rss = [peak_rss_mb(proc.pid) for proc, _ in procs]
            watch.cancel()
            return {
                "n": n,
                "shards": shards,
                "converge_s": round(max(per_shard), 1),
                "per_shard_s": "/".join(f"{s:.1f}" for s in per_shard),
                "mints": mints,
                "min_mints": credentials,
                "steady_writes": int(steady),
                "steady_mints": fake.mints - mints,
                "rss_mb": "/".join(f"{r:.0f}" for r in rss),
            }
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--credentials", type=int, default=1_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--steady-seconds", type=int, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fp-bench-shards-") as tmp:
        result = asyncio.run(run(args.repositories, args.credentials, args.shards, args.steady_seconds, Path(tmp)))
    print("bench-shards: " + " ".join(f"{k}={v}" for k, v in result.items() if k != "steady_mints"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
