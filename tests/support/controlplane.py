"""Start and stop a real etcd + kube-apiserver on loopback, for the tests and for ``make dev-up``.

Flags follow controller-runtime's envtest (plus ``--advertise-address=127.0.0.1`` and a token-authenticated
admin). Children get PR_SET_PDEATHSIG and their own process group, so neither a failed test nor a killed
pytest leaves an orphan behind.

CLI:  python -m tests.support.controlplane up|down|status [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import functools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certs.files import ensure_files

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "controlplane" / "build.sh"
DEFAULT_STATE_DIR = Path(os.environ.get("FLUX_PASSWORDLESS_DEV_DIR", str(REPO / ".dev")))
ADMIN_USER = "flux-passwordless-admin"


def _module_k8s(go_mod: Path) -> str:
    for line in go_mod.read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "k8s.io/kubernetes":
            return words[1]
    raise ValueError(f"{go_mod}: no k8s.io/kubernetes requirement")


# The Kubernetes versions the suite runs on: the default (tests/controlplane/go.mod) for everything, and one of each
# other minor the module proxy serves, oldest to newest (tests/controlplane/versions, pinned by pin.sh), for the
# admission and refresher e2e (K8S_MATRIX). Older than the oldest is not tested: the proxy serves nothing older.
DEFAULT_K8S = _module_k8s(BUILD_SCRIPT.parent / "go.mod")
OTHER_K8S = ("v1.34.4", "v1.36.3", "v1.37.2")
K8S_MATRIX = tuple(sorted((*OTHER_K8S, DEFAULT_K8S), key=lambda v: tuple(int(p) for p in v[1:].split("."))))


def binaries_dir(build: bool = False, version: str | None = None) -> Path:
    """Where ``make control-plane`` puts the binaries of Kubernetes ``version`` (default: ``DEFAULT_K8S``); with
    ``build`` make sure they are there."""
    override = os.environ.get("FLUX_PASSWORDLESS_CONTROLPLANE_BIN")
    if override and version in (None, DEFAULT_K8S):
        return Path(override)
    args = ["bash", str(BUILD_SCRIPT)] + ([] if build else ["--print-dir"])
    env = {**os.environ, "K8S_VERSION": version or DEFAULT_K8S}
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return Path(out.strip().splitlines()[-1])


# Listening ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
# default): a port the kernel hands out as "free" for bind(0) is also one it hands out as the source port of the next
# outgoing connection, so a server started a moment later found it taken (CI: kube-apiserver "bind: address already in
# use"). Ports handed out once are not handed out again by this process.
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()


@functools.cache
def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    low, high = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*_PORT_RANGE)
        if low <= port <= high or port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE} outside the ephemeral range {low}-{high}")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setpgid(0, 0)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def write_service_account_keys(pki: Path) -> None:
    """The key pair the apiserver signs ServiceAccount tokens with (kept when present)."""
    if (pki / "sa.key").exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (pki / "sa.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_kubeconfig(path: Path, url: str, ca_file: Path, user: str, token: str) -> None:
    """A kubeconfig for ``user``, authenticated by a bearer token, trusting ``ca_file``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": url,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; ``stop()`` (or the context manager) tears both down."""

    state_dir: Path
    bin_dir: Path
    tie_to_parent: bool = True
    api_port: int = 0
    host: str = "127.0.0.1"
    etcd_port: int = 0
    token: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ready_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        t0 = time.monotonic()
        for name in ("kube-apiserver", "etcd"):
            if not (self.bin_dir / name).exists():
                raise FileNotFoundError(
                    f"{self.bin_dir / name} is missing: run `make control-plane` first (builds it once)"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = self.state_dir / "pki"
        ensure_files(pki, ["localhost"], ["127.0.0.1"])
        write_service_account_keys(pki)
        self.token = secrets.token_urlsafe(32)
        tokens = self.state_dir / "tokens.csv"
        tokens.write_text(f"{self.token},{ADMIN_USER},{ADMIN_USER},system:masters\n")
        tokens.chmod(0o600)
        self.etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        etcd_data = self.state_dir / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        self._spawn(
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        self._spawn(
            [
                str(self.bin_dir / "kube-apiserver"),
                "--advertise-address=127.0.0.1",
                # Nothing here reaches the apiserver through the kubernetes Service, and from v1.37 the default
                # (lease) reconciler refuses a loopback advertise address: "may not be in the loopback range".
                "--endpoint-reconciler-type=none",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'tls.crt'}",
                f"--tls-private-key-file={pki / 'tls.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                f"--service-account-issuer=https://127.0.0.1:{self.api_port}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--profiling=false",
                "--v=1",
            ],
            logs / "kube-apiserver.log",
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        self._write_kubeconfig()
        return self

    def _spawn(self, argv: list[str], log: Path) -> None:
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if self.tie_to_parent else os.setpgrp,
            )
        finally:
            out.close()
        self.procs.append(proc)

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{Path(str(proc.args[0])).name} exited with {proc.returncode}; "  # type: ignore[index]
                        f"see {self.state_dir / 'logs'}"
                    )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}"
            except OSError as err:
                last = str(err)
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f}s ({last})")

    def _write_kubeconfig(self) -> None:
        write_kubeconfig(self.kubeconfig, self.url, self.ca_file, ADMIN_USER, self.token)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # apiserver first, then etcd
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port (etcd keeps the data)."""
        api = self.procs.pop()
        argv = [str(a) for a in api.args]  # type: ignore[union-attr]
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(timeout=5)
        except subprocess.TimeoutExpired:  # open watches can hold a graceful shutdown for a minute
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()
        self._spawn(argv, self.state_dir / "logs" / "kube-apiserver.log")
        self._wait_ready(60)

    def kubectl_env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


@contextlib.contextmanager
def running(state_dir: Path | None = None) -> Iterator[ControlPlane]:
    with tempfile.TemporaryDirectory(prefix="fp-controlplane-") as tmp:
        cp = ControlPlane(state_dir or Path(tmp), binaries_dir())
        cp.start()
        try:
            yield cp
        finally:
            cp.stop()


# --- CLI for make dev-up / dev-down -------------------------------------------------------------


def _supervise(state_dir: Path) -> int:
    """Foreground: run until SIGTERM/SIGINT, then tear down. ``up`` starts this detached."""
    cp = ControlPlane(state_dir, binaries_dir())
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cp.start()
    (state_dir / "status.json").write_text(
        json.dumps({"pid": os.getpid(), "url": cp.url, "ready_seconds": round(cp.ready_seconds, 2)})
    )
    while not stop and all(p.poll() is None for p in cp.procs):
        time.sleep(0.5)
    cp.stop()
    (state_dir / "status.json").unlink(missing_ok=True)
    return 0


def _status(state_dir: Path) -> dict[str, object] | None:
    path = state_dir / "status.json"
    if not path.exists():
        return None
    status: dict[str, object] = json.loads(path.read_text())
    try:
        os.kill(int(str(status["pid"])), 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status", "serve"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    if args.action == "serve":
        return _supervise(state_dir)
    status = _status(state_dir)
    if args.action == "status":
        print(json.dumps(status) if status else "down")
        return 0 if status else 1
    if args.action == "down":
        if status:
            os.kill(int(str(status["pid"])), signal.SIGTERM)
            for _ in range(100):
                if _status(state_dir) is None:
                    break
                time.sleep(0.2)
        print("local control plane: down")
        return 0
    if status is None:
        binaries_dir(build=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        log = (state_dir / "supervisor.log").open("ab")
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.controlplane", "serve", "--state-dir", str(state_dir)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        t0 = time.monotonic()
        while (status := _status(state_dir)) is None:
            if time.monotonic() - t0 > 120:
                print(f"local control plane did not come up; see {state_dir}/supervisor.log", file=sys.stderr)
                return 1
            time.sleep(0.3)
    print(f"local control plane: up at {status['url']}")
    print(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
