"""make bench-hostile: the webhook's memory under hostile clients, beside the Go yardstick in ../shared/bench.

Each pattern of ``tests.support.hostile`` runs against a fresh process of each server (ours as users run it:
``python -m webhook``, uvloop, default flags; the yardstick: Go's net/http with ``http.MaxBytesReader`` at
3 MiB), one after the other in one run. Per row: the answers the client got, the server's resident memory
before, its peak (VmHWM) and after, and how long a valid review then takes. One line per row:

    bench-hostile: server=ours pattern=gzip-bomb peak_mb=51 after_mb=50 base_mb=47 answers=415:40 review_ms=3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.webhook import SHARED_BENCH, build_yardstick, wait_listening
from certs.files import CA_CERT, TLS_CERT, TLS_KEY, ensure_files
from tests.support import hostile
from tests.support.controlplane import free_port

SERVICEACCOUNTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reviews" / "serviceaccounts.json"


@contextlib.contextmanager
def started(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        time.sleep(0.5)  # settled
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def argv_for(server: str, port: int, tls: Path, yardstick: Path | None) -> list[str]:
    if server == "yardstick":
        assert yardstick is not None
        return [
            str(yardstick),
            f"-addr=127.0.0.1:{port}",
            f"-cert={tls / TLS_CERT}",
            f"-key={tls / TLS_KEY}",
            f"-serviceaccounts={SERVICEACCOUNTS}",
        ]
    return [
        sys.executable,
        "-m",
        "webhook",
        f"--listen=127.0.0.1:{port}",
        f"--tls-cert-file={tls / TLS_CERT}",
        f"--tls-key-file={tls / TLS_KEY}",
        f"--serviceaccounts-file={SERVICEACCOUNTS}",
        "--metrics-listen=",
        "--log-level=error",
        "--shutdown-delay=0",
    ]


async def review_ms(target: hostile.Target) -> float:
    """Milliseconds for one valid review on a new connection (the answer must be a 200)."""
    started_at = time.monotonic()
    answer = await hostile.exchange_body(target, hostile.pod_review())
    if answer != "200":
        raise AssertionError(f"a valid review after the pattern got {answer}")
    return (time.monotonic() - started_at) * 1000


def row(server: str, name: str, tls: Path, yardstick: Path | None) -> str:
    port = free_port()
    with started(argv_for(server, port, tls, yardstick), port) as proc:
        target = hostile.Target("127.0.0.1", port, hostile.client_context(tls / CA_CERT))
        base = hostile.rss_mb(proc.pid)
        answers = asyncio.run(hostile.PATTERNS[name](target))
        peak = hostile.peak_rss_mb(proc.pid)
        after = hostile.rss_mb(proc.pid)
        took = asyncio.run(review_ms(target))
    shown = ",".join(f"{k}:{v}" for k, v in sorted(answers.items()))
    return (
        f"bench-hostile: server={server} pattern={name} peak_mb={peak:.0f} after_mb={after:.0f} base_mb={base:.0f} "
        f"answers={shown} review_ms={took:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patterns", default=",".join(hostile.PATTERNS), help="comma-separated pattern names")
    p.add_argument("--servers", default="ours,yardstick")
    a = p.parse_args(argv)
    servers = a.servers.split(",")
    yardstick = build_yardstick() if "yardstick" in servers else None
    if yardstick is not None and not (SHARED_BENCH / "reference-webhook").exists():
        raise SystemExit(f"no yardstick at {SHARED_BENCH}")
    with tempfile.TemporaryDirectory() as tmp:
        tls = Path(tmp) / "tls"
        ensure_files(tls, ["localhost"], ["127.0.0.1"])
        for name in a.patterns.split(","):
            for server in servers:
                print(row(server, name, tls, yardstick), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
