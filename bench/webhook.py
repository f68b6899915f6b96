"""make bench-webhook: our webhook against the Go yardstick in ../shared/bench, under the same load.

Both servers are pinned to core 0 and loaded one at a time; wrk (keep-alive TLS, one thread) is pinned to
core 1 and POSTs ``pod_review.json`` at concurrency 8 and 64, in interleaved rounds. Each round runs the
yardstick and ours back to back; the reported ratios are the medians of those per-round ratios.
Figures are reported as our/yardstick ratios so the machine's noise cancels out. GitRepository validation
is measured on our webhook too (the yardstick has no such route).
The last line is machine-readable:  bench-webhook: pod c=8 rps_ratio=<x> p99_ratio=<y>
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from certs.files import CA_CERT, TLS_CERT, TLS_KEY, ensure_files
from tests.support.controlplane import free_port
from tests.support.reviews import gitrepository_review

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("FLUX_PASSWORDLESS_SHARED", str(REPO.parent / "shared"))) / "bench"
CACHE = Path(os.environ.get("FLUX_PASSWORDLESS_CACHE", str(Path.home() / ".cache" / "flux-passwordless")))

WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, "errors": '
      .. '{"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    kinds: dict[str, int]  # wrk's split: connect (TCP or TLS handshake), read, write, timeout (> 2 s), status

    def __str__(self) -> str:
        rate = f"{self.rps:9.0f} req/s"
        split = "".join(f" {kind}={n}" for kind, n in self.kinds.items() if n)
        return f"{rate}   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms   errors {self.errors}{split}"


def median(runs: list[Result]) -> Result:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    return Result(
        mid([r.rps for r in runs]),
        mid([r.p50_ms for r in runs]),
        mid([r.p99_ms for r in runs]),
        sum(r.errors for r in runs),
        {kind: sum(r.kinds.get(kind, 0) for r in runs) for kind in runs[0].kinds},
    )


def paired_ratios(samples: dict[tuple[str, str, int], list[Result]], conns: int) -> tuple[list[float], list[float]]:
    """ours/yardstick per round: each pair ran back to back, so the machine's drift between rounds cancels
    (the ratios' median is what is reported)."""
    pairs = list(zip(samples[("yardstick", "pod", conns)], samples[("ours", "pod", conns)], strict=True))
    return [o.rps / y.rps for y, o in pairs], [o.p99_ms / y.p99_ms for y, o in pairs]


def build_yardstick() -> Path:
    source = SHARED_BENCH / "reference-webhook"
    digest = hashlib.sha256((source / "main.go").read_bytes() + (source / "go.mod").read_bytes()).hexdigest()[:12]
    binary = CACHE / "bench" / f"reference-webhook-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        print(f"building the Go yardstick into {binary} ...", flush=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source, check=True)
    return binary


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@contextlib.contextmanager
def server(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def check_answer(url: str, body: Path, ca: Path) -> None:
    """One request before the load: the server must answer with a JSON Patch, or the figures mean nothing."""
    ctx = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(  # noqa: S310 - an https URL we built
        url, data=body.read_bytes(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:  # noqa: S310 - loopback https
        answer = json.loads(resp.read())
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    if not patch:
        raise RuntimeError(f"{url} answered without a patch")


def load(url: str, body: Path, connections: int, seconds: int, script: Path) -> Result:
    env = {**os.environ, "BENCH_BODY": str(body)}
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    kinds = {kind: int(n) for kind, n in data["errors"].items()}
    return Result(
        data["requests"] / data["seconds"], data["p50_us"] / 1000, data["p99_us"] / 1000, sum(kinds.values()), kinds
    )


def gitrepository_body(tmp: Path) -> Path:
    """A realistic GitRepository CREATE (github, translated by the webhook) as a file for wrk."""
    spec = {
        "interval": "5m",
        "url": "https://github.com/stefanprodan/podinfo",
        "ref": {"branch": "main"},
        "provider": "github",
        "secretRef": {"name": "github-app"},
    }
    metadata = {"name": "podinfo", "namespace": "apps", "labels": {"team": "a"}}
    path = tmp / "gitrepository_review.json"
    path.write_text(
        json.dumps(gitrepository_review(spec, uid="b5d7e1c2-0000-4000-8000-000000000001", metadata=metadata))
    )
    return path


def interpreter(python: str) -> str:
    """The interpreter and its version: CPython builds differ (a PGO/LTO build, like the python:3.11 images', is
    faster than a plain one), so the figures say which ran."""
    probe = "import platform; print(platform.python_implementation(), platform.python_version())"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    return f"{python} ({out})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs our webhook (default: this one; it must have the package installed)",
    )
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset", "go"):
        if shutil.which(tool) is None:
            print(f"bench-webhook needs {tool} (apt-get install wrk; Go for the yardstick)", file=sys.stderr)
            return 1
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("bench-webhook needs 2 cores (server on one, load on the other)", file=sys.stderr)
        return 1
    yardstick = build_yardstick()
    pod_body = SHARED_BENCH / "pod_review.json"
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ensure_files(tmp / "tls", ["localhost"], ["127.0.0.1"])
        cert, key = tmp / "tls" / TLS_CERT, tmp / "tls" / TLS_KEY
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        git_body = gitrepository_body(tmp)
        samples: dict[tuple[str, str, int], list[Result]] = {}
        y_port, o_port = free_port(), free_port()
        yard_argv = [
            str(yardstick),
            "-addr",
            f"127.0.0.1:{y_port}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-serviceaccounts",
            str(SHARED_BENCH / "serviceaccounts.json"),
        ]
        ours_argv = [
            args.python,
            "-m",
            "webhook",
            f"--listen=127.0.0.1:{o_port}",
            f"--tls-cert-file={cert}",
            f"--tls-key-file={key}",
            f"--serviceaccounts-file={SHARED_BENCH / 'serviceaccounts.json'}",
            "--log-level=warning",
            "--metrics-listen=",
            "--shutdown-delay=0",
        ]
        plan = [
            ("yardstick", y_port, "pod", pod_body, 8),
            ("ours", o_port, "pod", pod_body, 8),
            ("yardstick", y_port, "pod", pod_body, 64),
            ("ours", o_port, "pod", pod_body, 64),
            ("ours", o_port, "gitrepository", git_body, 8),
        ]
        # Both servers stay up (the idle one costs nothing); rounds interleave them so drift cancels out.
        with server(yard_argv, y_port), server(ours_argv, o_port):
            for _name, port, route, body, _conns in plan:
                check_answer(f"https://127.0.0.1:{port}/mutate/{route}", body, tmp / "tls" / CA_CERT)
            for round_no in range(1, args.rounds + 1):
                for name, port, route, body, conns in plan:
                    url = f"https://127.0.0.1:{port}/mutate/{route}"
                    load(url, body, conns, args.warmup, script)
                    result = load(url, body, conns, args.seconds, script)
                    samples.setdefault((name, route, conns), []).append(result)
                    print(f"round {round_no}  {name:10s} {route:13s} c={conns:<3d} {result}", flush=True)
        results = {key: median(runs) for key, runs in samples.items()}

    print("\nmedians over", args.rounds, "interleaved rounds; ours on", interpreter(args.python))
    for (who, route, conns), result in results.items():
        print(f"  {who:10s} {route:13s} c={conns:<3d} {result}")
    ratios = {conns: paired_ratios(samples, conns) for conns in (8, 64)}
    for conns, (rps, p99) in ratios.items():
        y, o = results[("yardstick", "pod", conns)], results[("ours", "pod", conns)]
        print(
            f"pod c={conns}: throughput ratio {statistics.median(rps):.2f}, p99 ratio {statistics.median(p99):.2f}"
            f"   (per round: {' '.join(f'{r:.2f}' for r in rps)}; ratio of the medians: {o.rps / y.rps:.2f})"
        )
    g, y8 = results[("ours", "gitrepository", 8)], results[("yardstick", "pod", 8)]
    print(
        f"gitrepository c=8: {g.rps:.0f} req/s ({g.rps / y8.rps:.2f} of the yardstick's pod rate), "
        f"p99 {g.p99_ms:.2f} ms"
    )
    errors = sum(r.errors for r in results.values())
    if errors:
        print(f"WARNING: {errors} failed requests", file=sys.stderr)
    rps, p99 = ratios[8]
    print(f"bench-webhook: pod c=8 rps_ratio={statistics.median(rps):.2f} p99_ratio={statistics.median(p99):.2f}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
