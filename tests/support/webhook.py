"""Run the real webhook server on a loopback port, in-process or as the process users run, for the HTTP and e2e
tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from certs.files import CA_CERT, TLS_CERT, TLS_KEY, ensure_files
from tests.support.controlplane import free_port
from webhook import config as webhook_config
from webhook.server import serve


@dataclass
class RunningWebhook:
    url: str
    port: int
    cert_dir: Path
    ca_file: Path
    metrics_url: str
    stop: asyncio.Event  # what SIGTERM sets
    task: asyncio.Task[None]

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()


@contextlib.asynccontextmanager
async def running_webhook(
    tmp: Path,
    *extra_args: str,
    serviceaccounts: dict[str, dict[str, str]] | None = None,
    kubeconfig: Path | None = None,
) -> AsyncIterator[RunningWebhook]:
    cert_dir = tmp / "webhook-tls"
    ensure_files(cert_dir, ["localhost"], ["127.0.0.1"])
    port, metrics_port = free_port(), free_port()
    args = [
        f"--listen=127.0.0.1:{port}",
        f"--metrics-listen=127.0.0.1:{metrics_port}",
        f"--tls-cert-file={cert_dir / TLS_CERT}",
        f"--tls-key-file={cert_dir / TLS_KEY}",
        "--cert-reload-interval=0.1",
        "--shutdown-delay=0",
        *extra_args,
    ]
    if kubeconfig is not None:
        args.append(f"--kubeconfig={kubeconfig}")
    else:
        sa_file = tmp / "serviceaccounts.json"
        sa_file.write_text(json.dumps(serviceaccounts or {}))
        args.append(f"--serviceaccounts-file={sa_file}")
    cfg = webhook_config.from_args(args)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cfg, stop))
    for _ in range(200):
        if task.done():
            task.result()  # raises the start-up error
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    try:
        yield RunningWebhook(
            f"https://127.0.0.1:{port}",
            port,
            cert_dir,
            cert_dir / CA_CERT,
            f"http://127.0.0.1:{metrics_port}/metrics",
            stop,
            task,
        )
    finally:
        stop.set()
        await task


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` (bytes, or JSON-encoded); the status and the decoded answer (JSON, else text)."""
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with http.post(path, data=data, headers={"Content-Type": "application/json"}) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if resp.content_type == "application/json" else text)


@contextlib.contextmanager
def webhook_process(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int, ssl.SSLContext]]:
    """The webhook as users run it (``python -m webhook``: uvloop, default limits), listening; its process, port
    and a client TLS context that trusts it."""
    cert_dir = tmp_path / "tls"
    ensure_files(cert_dir, ["localhost"], ["127.0.0.1"])
    (tmp_path / "sa.json").write_text("{}")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            f"--listen=127.0.0.1:{port}",
            f"--tls-cert-file={cert_dir / TLS_CERT}",
            f"--tls-key-file={cert_dir / TLS_KEY}",
            f"--serviceaccounts-file={tmp_path / 'sa.json'}",
            "--log-level=warning",
            "--metrics-listen=",
            "--shutdown-delay=0",
            *extra,
        ]
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield proc, port, ssl.create_default_context(cafile=str(cert_dir / CA_CERT))
    finally:
        proc.terminate()
        proc.wait(10)
