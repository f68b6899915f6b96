"""An enterprise's egress, on one machine: a real forward proxy (tinyproxy, from Debian's packages) and a
firewall rule that lets only the proxy reach the cloud stand-ins, so a client that ignores the proxy settings
fails as it would behind a corporate egress.

The rule is an iptables OUTPUT rule on loopback: connections to the stand-ins' ports are reset unless they come
from the proxy's user (``nobody``). The proxy asks for basic auth, and logs every request and CONNECT it relays.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.controlplane import free_port

PROXY_USER, PROXY_UID = "nobody", 65534
USERNAME, PASSWORD = "egress", "pr0xy-s3cret-9f2c"  # the proxy's basic auth: must never be seen in a log or Event


class EgressProxy:
    def __init__(self, workdir: Path) -> None:
        if shutil.which("tinyproxy") is None:
            raise RuntimeError("tinyproxy is not installed (make node-deps installs it)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / "tinyproxy.log"
        self.config = self.dir / "tinyproxy.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"User {PROXY_USER}",
                    "Group nogroup",
                    f"Port {self.port}",
                    "Listen 127.0.0.1",
                    "Timeout 30",
                    "LogLevel Connect",
                    "MaxClients 100",
                    "Allow 127.0.0.1",
                    f"BasicAuth {USERNAME} {PASSWORD}",
                    "DisableViaHeader Yes",
                    "",
                ]
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The proxy URL with its credentials, as an admin puts it in HTTPS_PROXY."""
        return f"http://{USERNAME}:{PASSWORD}@127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # In the foreground without a LogFile it logs to its stderr: a file opened here, before it drops to nobody
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            time.sleep(0.05)
        raise TimeoutError("tinyproxy did not listen")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def relayed(self) -> list[str]:
        """host:port of every CONNECT, and of every plain-HTTP request, it relayed (from its log)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            if "Request (file descriptor" not in line:
                continue
            target = line.split("): ", 1)[1].split()[1]
            found.append(target if "://" not in target else urlsplit(target).netloc)
        return found


@contextlib.contextmanager
def egress_proxy(workdir: Path) -> Iterator[EgressProxy]:
    proxy = EgressProxy(workdir)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _rule(port: int) -> list[str]:
    return [
        "OUTPUT",
        "-o",
        "lo",
        "-p",
        "tcp",
        "-d",
        "127.0.0.1",
        "--dport",
        str(port),
        "-m",
        "owner",
        "!",
        "--uid-owner",
        str(PROXY_UID),
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]


@contextlib.contextmanager
def only_through_proxy(*urls: str) -> Iterator[None]:
    """While open, the hosts of ``urls`` (loopback ports) can be reached only by the proxy's user."""
    ports = sorted({urlsplit(url).port or 443 for url in urls})
    added = []
    try:
        for port in ports:
            subprocess.run(["iptables", "-I", *_rule(port)], check=True)
            added.append(port)
        yield
    finally:
        for port in added:
            subprocess.run(["iptables", "-D", *_rule(port)], check=False)
