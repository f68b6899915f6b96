"""A real one-node Kubernetes cluster on this machine, for the deploy tests and for ``make node-up``.

Every part is the real one: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
kube-proxy built from the ``k8s.io/kubernetes`` module (tests/controlplane/build.sh node), containerd, runc and
the CNI plugins from Debian's packages, and images built locally (no registry is reachable): the pod sandbox
from tests/node/pause.c, ours from the Dockerfile (``make image``).

The whole node runs inside a network namespace and a private mount namespace of its own, so the host is left
as it was: the host reaches the apiserver over a veth pair (``https://10.201.<slot>.2:6443``); inside, the
paths kubelet and containerd insist on (/var/log, /run/containerd, /run/netns) are tmpfs, and the host
sysctls kubelet rewrites are bind-mounted files. Pod cgroups live under ``/fpnode<slot>`` of each controller.
What this cluster leaves out on purpose: CoreDNS (pods get the host's resolv.conf), a cloud provider, and
kubelet's client authentication (AlwaysAllow: only the node's own namespace can reach it).

Settings that this machine's kernel and sandbox need (all measured): cgroup v1 (``failCgroupV1: false``), no
systemd (``cgroupfs``), root without CAP_SYS_RESOURCE (``oomScoreAdj: 0``, ``restrict_oom_score_adj``).

CLI:  python -m tests.support.node up|down|status|load IMAGE [--slot N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from certs.files import ensure_files
from tests.support.controlplane import (
    REPO,
    ControlPlane,
    binaries_dir,
    write_kubeconfig,
    write_service_account_keys,
)

# The image the shipped manifests run (kept in step with manifests/: the deploy tests check every pod runs it).
IMAGE = os.environ.get("FLUX_PASSWORDLESS_IMAGE", "ghcr.io/flux-passwordless/flux-passwordless:0.1.0")
# podman on hosts like this one: runc (crun fails on hybrid cgroups), no systemd, and limits root may set.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
PODMAN_LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
NODE_BUILD = ["bash", str(REPO / "tests" / "controlplane" / "build.sh"), "node"]
IMAGES_SCRIPT = REPO / "tests" / "node" / "images.sh"
NODE_NAME = "fp-node"
NODE_K8S_VERSION = "v1.35.4"  # tests/controlplane/go.mod
FLUX_VERSION = "v1.9.6"  # the CRDs `make node-up` installs: the newest source-controller that builds here
CNI_BIN = Path("/usr/lib/cni")
DEBIAN_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "podman": "podman",
    "mmdebstrap": "mmdebstrap",
}
# The host sysctls kubelet sets at start; inside the node's mount namespace each is a file of our own.
KUBELET_SYSCTLS = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]
CGROUP_ROOT = Path("/sys/fs/cgroup")
COMPONENTS = ["kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"]


@dataclass(frozen=True)
class Layout:
    """Names, addresses and paths of node ``slot`` (1: ``make node-up``; the tests use their own slot)."""

    slot: int
    state: Path

    @property
    def netns(self) -> str:
        return f"fp-node-{self.slot}"

    @property
    def host_ip(self) -> str:
        return f"10.201.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.201.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.slot}.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.96.{self.slot}.1"

    @property
    def cgroup(self) -> str:
        return f"fpnode{self.slot}"

    @property
    def url(self) -> str:
        return f"https://{self.node_ip}:6443"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def status_file(self) -> Path:
        return self.state / "status.json"


def default_layout(slot: int = 1) -> Layout:
    # Short on purpose: containerd's socket path must stay under 108 bytes.
    return Layout(slot, Path(os.environ.get("FLUX_PASSWORDLESS_NODE_DIR", f"/tmp/fp-node-{slot}")))


def missing_packages() -> list[str]:
    missing = {pkg for tool, pkg in DEBIAN_PACKAGES.items() if shutil.which(tool) is None}
    if not (CNI_BIN / "bridge").exists():
        missing.add("containernetworking-plugins")
    return sorted(missing)


def node_binaries(build: bool = False) -> Path:
    args = NODE_BUILD if build else [*NODE_BUILD[:2], "--print-dir", "node"]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def image_ref(which: str) -> str:
    """Build (once) and name one of tests/node/images.sh's images."""
    out = subprocess.run(["bash", str(IMAGES_SCRIPT), which], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def build_image(base: str = "local", ref: str = IMAGE) -> float:
    """Build our Dockerfile into podman's store; ``base`` "local" is a Debian base made here (no registry is
    reachable), anything else an image reference to build FROM. Returns the seconds it took."""
    if base == "local":
        base = image_ref("base")
    t0 = time.monotonic()
    subprocess.run(
        [
            *PODMAN,
            "build",
            *PODMAN_LIMITS,
            # pip inside the build reaches PyPI as the host does: its network and its CA store
            "--network",
            "host",
            "--volume",
            "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--build-arg",
            f"BASE={base}",
            "--tag",
            ref,
            str(REPO),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def image_size_mb(ref: str = IMAGE) -> float:
    out = run(*PODMAN, "image", "inspect", "--format", "{{.Size}}", ref).stdout
    return int(out.strip()) / 1e6


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), check=False, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done


# --- host side: namespace, veth, teardown -----------------------------------------------------------


def _network_up(layout: Layout) -> None:
    ns, host_if, node_if = layout.netns, f"fpn{layout.slot}h", f"fpn{layout.slot}n"
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", host_if, "type", "veth", "peer", "name", node_if)
    run("ip", "link", "set", node_if, "netns", ns)
    run("ip", "addr", "add", f"{layout.host_ip}/30", "dev", host_if)
    run("ip", "link", "set", host_if, "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "addr", "add", f"{layout.node_ip}/30", "dev", node_if)
    run("ip", "-n", ns, "link", "set", node_if, "up")
    run("ip", "-n", ns, "route", "add", "default", "via", layout.host_ip)
    # The host reaches pods (tests talk to them directly when they need to); nothing routes further.
    run("ip", "route", "replace", layout.pod_cidr, "via", layout.node_ip)
    run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def _cgroup_dirs(layout: Layout) -> list[Path]:
    return [c / layout.cgroup for c in sorted(CGROUP_ROOT.iterdir()) if (c / "cgroup.procs").exists()]


def _cgroups_up(layout: Layout) -> None:
    for directory in _cgroup_dirs(layout):
        directory.mkdir(exist_ok=True)
        if directory.parent.name == "cpuset":  # a v1 cpuset starts empty: no task could join it
            for name in ("cpuset.cpus", "cpuset.mems"):
                (directory / name).write_text((directory.parent / name).read_text())


def _kill_everything(layout: Layout) -> None:
    """Whatever is left of the node: its namespace's processes and every process in its pod cgroups."""
    for _ in range(3):
        pids: set[int] = set()
        listed = run("ip", "netns", "pids", layout.netns, check=False)
        pids.update(int(p) for p in listed.stdout.split())
        for root in _cgroup_dirs(layout):
            if root.exists():
                for procs in root.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _cgroups_down(layout: Layout) -> None:
    for root in _cgroup_dirs(layout):
        if not root.exists():
            continue
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


# Supervisors this process started, reaped at teardown (the CLI's `up` leaves its supervisor running).
_supervisors: dict[int, subprocess.Popen[bytes]] = {}


def teardown(layout: Layout) -> None:
    status = read_status(layout)
    if status is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(str(status["pid"])), signal.SIGTERM)
        deadline = time.monotonic() + 20
        while read_status(layout) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    _kill_everything(layout)
    if (supervisor := _supervisors.pop(layout.slot, None)) is not None:
        supervisor.wait()
    _cgroups_down(layout)
    run("ip", "route", "del", layout.pod_cidr, check=False)
    run("ip", "netns", "del", layout.netns, check=False)
    layout.status_file.unlink(missing_ok=True)
    # Container root filesystems are large; the logs stay for whoever debugs the run.
    shutil.rmtree(layout.state / "containerd", ignore_errors=True)
    shutil.rmtree(layout.state / "kubelet", ignore_errors=True)


def read_status(layout: Layout) -> dict[str, object] | None:
    if not layout.status_file.exists():
        return None
    status: dict[str, object] = json.loads(layout.status_file.read_text())
    try:
        os.kill(int(str(status["pid"])), 0)
    except ProcessLookupError:
        return None
    return status


def load_image(layout: Layout, ref: str) -> None:
    """Copy an image from podman's store into the node's containerd (its socket is a file: no namespace
    needs entering)."""
    with subprocess.Popen([*PODMAN, "save", ref], stdout=subprocess.PIPE) as save:
        run_in = subprocess.run(
            ["ctr", "-a", str(layout.containerd_socket), "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
        )
    if save.returncode or run_in.returncode:
        raise RuntimeError(f"loading {ref} into the node failed: {run_in.stderr.strip()}")


def up(layout: Layout, timeout: float = 180.0) -> dict[str, object]:
    """Start the node in the background (a no-op when it runs); returns its status once the node is Ready."""
    status = read_status(layout)
    if status is not None:
        return status
    if missing := missing_packages():
        raise RuntimeError(f"the node needs Debian packages: apt-get install {' '.join(missing)} (make node-deps)")
    teardown(layout)  # whatever a crashed run left
    binaries_dir(build=True)
    node_binaries(build=True)
    pause = image_ref("pause")
    shutil.rmtree(layout.state, ignore_errors=True)  # a new cluster every time
    layout.state.mkdir(parents=True)
    layout.logs.mkdir(exist_ok=True)
    _network_up(layout)
    _cgroups_up(layout)
    log = (layout.logs / "supervisor.log").open("ab")
    _supervisors[layout.slot] = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{layout.netns}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-m",
            "tests.support.node",
            "serve",
            f"--slot={layout.slot}",
            f"--state-dir={layout.state}",
            f"--pause-image={pause}",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while (status := read_status(layout)) is None or not status.get("ready"):
        if time.monotonic() > deadline:
            teardown(layout)
            raise TimeoutError(f"the node did not become Ready in {timeout:.0f}s; see {layout.logs}")
        if status is None and (layout.logs / "failed").exists():
            reason = (layout.logs / "failed").read_text()
            teardown(layout)
            raise RuntimeError(f"the node failed to start: {reason}; see {layout.logs}")
        time.sleep(0.3)
    load_image(layout, pause)  # before any pod: the sandbox image cannot be pulled
    return status


@contextlib.contextmanager
def running(layout: Layout) -> Iterator[dict[str, object]]:
    status = up(layout)
    try:
        yield status
    finally:
        teardown(layout)


# --- node side: runs inside the namespaces ----------------------------------------------------------


@dataclass
class Supervisor:
    layout: Layout
    pause_image: str
    k8s_bin: Path
    node_bin: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def private_mounts(self) -> None:
        # /sys as this network namespace sees it (kubelet reads its interfaces there), with the host's cgroup
        # hierarchies moved back under it.
        keep = self.layout.state / ".cgroup"
        keep.mkdir(exist_ok=True)
        run("mount", "--rbind", str(CGROUP_ROOT), str(keep))
        run("mount", "-t", "sysfs", "sysfs", "/sys")
        run("mount", "--move", str(keep), str(CGROUP_ROOT))
        for path in ("/var/log", "/run/containerd", "/run/netns"):
            Path(path).mkdir(parents=True, exist_ok=True)
            run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
        sysctls = self.layout.state / "sysctl"
        sysctls.mkdir(exist_ok=True)
        for name in KUBELET_SYSCTLS:
            real = Path("/proc/sys") / name
            mine = sysctls / name.replace("/", ".")
            mine.write_text(real.read_text())
            run("mount", "--bind", str(mine), str(real))

    def write_configs(self) -> None:
        layout, state = self.layout, self.layout.state
        ensure_files(
            layout.pki,
            ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
            [layout.node_ip, layout.kubernetes_service_ip, "127.0.0.1"],
        )
        write_service_account_keys(layout.pki)
        users = {
            "admin": ("flux-passwordless-admin", "system:masters"),
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-controller-manager": ("system:kube-controller-manager", ""),
            "kube-scheduler": ("system:kube-scheduler", ""),
            "kube-proxy": ("system:kube-proxy", ""),
        }
        lines = []
        for who, (user, group) in users.items():
            self.tokens[who] = secrets.token_urlsafe(32)
            lines.append(f'{self.tokens[who]},{user},{user},"{group}"')
            path = layout.kubeconfig if who == "admin" else state / f"{who}.kubeconfig"
            write_kubeconfig(path, layout.url, layout.pki / "ca.crt", user, self.tokens[who])
        tokens = state / "tokens.csv"
        tokens.write_text("\n".join(lines) + "\n")
        tokens.chmod(0o600)
        cni = state / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "fp-node",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": layout.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(state / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (state / "containerd.toml").write_text(
            f"""version = 2
root = "{state}/containerd"
state = "/run/containerd"
[grpc]
  address = "{layout.containerd_socket}"
[{cri}]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni}"
"""
        )
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{layout.cgroup}",
            "oomScoreAdj": 0,
            "failSwapOn": False,
            "address": layout.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
            "podCIDR": layout.pod_cidr,
            "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local",
            # Nothing can be pulled again: never collect an image, never evict for a full disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "maxPods": 60,
            # Secret volumes (the webhook's certificate) refresh within ~10 s instead of ~1 min: the
            # certificate-rotation test waits for it.
            "syncFrequency": "10s",
        }
        (state / "kubelet.yaml").write_text(yaml.safe_dump(kubelet))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(state / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": layout.pod_cidr,
            "oomScoreAdj": 0,
            # conntrack limits are the host's (not per network namespace): leave them alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
        }
        (state / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy))

    def spawn(self, name: str, argv: list[str]) -> None:
        out = (self.layout.logs / f"{name}.log").open("ab")
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            out.close()

    def argv(self) -> dict[str, list[str]]:
        layout, state, pki, k8s, node = self.layout, self.layout.state, self.layout.pki, self.k8s_bin, self.node_bin
        return {
            "containerd": ["containerd", f"--config={state / 'containerd.toml'}"],
            "etcd": [
                str(k8s / "etcd"),
                f"--data-dir={state / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            "kube-apiserver": [
                str(k8s / "kube-apiserver"),
                f"--advertise-address={layout.node_ip}",
                "--secure-port=6443",
                "--etcd-servers=http://127.0.0.1:2379",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'tls.crt'}",
                f"--tls-private-key-file={pki / 'tls.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={state / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--kubelet-preferred-address-types=InternalIP",  # no DNS here: dial the node's IP
                f"--service-cluster-ip-range={layout.service_cidr}",
                "--allow-privileged=true",
                f"--service-account-issuer={layout.url}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--profiling=false",
                "--v=1",
            ],
            "kube-controller-manager": [
                str(node / "kube-controller-manager"),
                f"--kubeconfig={state / 'kube-controller-manager.kubeconfig'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--controllers=*",
                "--v=1",
            ],
            "kube-scheduler": [
                str(node / "kube-scheduler"),
                f"--kubeconfig={state / 'kube-scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--v=1",
            ],
            "kubelet": [
                str(node / "kubelet"),
                f"--config={state / 'kubelet.yaml'}",
                f"--kubeconfig={state / 'kubelet.kubeconfig'}",
                f"--root-dir={state / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={layout.node_ip}",
                "--v=1",
            ],
            "kube-proxy": [str(node / "kube-proxy"), f"--config={state / 'kube-proxy.yaml'}", "--v=1"],
        }

    def api(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        request = urllib.request.Request(
            f"{self.layout.url}{path}", headers={"Authorization": f"Bearer {self.tokens['admin']}"}
        )
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=3) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), b""
        except OSError:
            return 0, b""

    def wait(self, what: str, check: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} (see {self.layout.logs}/{name}.log)")
            if callable(check) and check():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what}: not after {timeout:.0f}s")

    def node_ready(self) -> bool:
        code, body = self.api(f"/api/v1/nodes/{NODE_NAME}")
        if code != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def start(self) -> float:
        t0 = time.monotonic()
        self.private_mounts()
        self.write_configs()
        argv = self.argv()
        self.spawn("containerd", argv["containerd"])
        self.wait("containerd", self.layout.containerd_socket.exists, 30)
        self.spawn("etcd", argv["etcd"])
        self.spawn("kube-apiserver", argv["kube-apiserver"])
        self.wait("kube-apiserver /readyz", lambda: self.api("/readyz")[0] == 200, 120)
        for name in COMPONENTS:
            self.spawn(name, argv[name])
        self.wait("node Ready", self.node_ready, 120)
        return time.monotonic() - t0

    def stop(self) -> None:
        for name in reversed(list(self.procs)):  # kubelet first, containerd last
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def serve(layout: Layout, pause_image: str) -> int:
    """Inside the namespaces: start the node, say so in status.json, and keep it until SIGTERM."""
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor = Supervisor(layout, pause_image, binaries_dir(), node_binaries())
    status: dict[str, object] = {"pid": os.getpid(), "url": layout.url, "ready": False}
    layout.status_file.write_text(json.dumps(status))
    try:
        ready_s = supervisor.start()
    except Exception as err:
        (layout.logs / "failed").write_text(str(err))
        supervisor.stop()
        layout.status_file.unlink(missing_ok=True)
        return 1
    status.update(ready=True, ready_seconds=round(ready_s, 2))
    layout.status_file.write_text(json.dumps(status))
    while not stop and all(p.poll() is None for p in supervisor.procs.values()):
        time.sleep(0.5)
    supervisor.stop()
    layout.status_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status", "image", "load", "serve"])
    parser.add_argument("image", nargs="?", default=IMAGE, help="for image and load: the image reference")
    parser.add_argument("--base", default="local", help="for image: the base to build FROM (local: from Debian)")
    parser.add_argument("--slot", type=int, default=1)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--pause-image", default="")
    args = parser.parse_args(argv)
    layout = Layout(args.slot, args.state_dir) if args.state_dir else default_layout(args.slot)
    if args.action == "serve":
        return serve(layout, args.pause_image)
    if args.action == "down":
        teardown(layout)
        print("node: down")
        return 0
    if args.action == "status":
        status = read_status(layout)
        print(json.dumps(status) if status else "down")
        return 0 if status else 1
    if args.action == "image":
        seconds = build_image(args.base, args.image)
        print(f"image: built {args.image} in {seconds:.1f}s ({image_size_mb(args.image):.0f} MB)")
    if args.action in ("image", "load"):
        if read_status(layout) is None:
            print("node: not running (make node-up); the image stays in podman's store", file=sys.stderr)
            return 0
        t0 = time.monotonic()
        load_image(layout, args.image)
        print(f"node: loaded {args.image} in {time.monotonic() - t0:.1f}s")
        return 0
    try:
        status = up(layout)
    except (RuntimeError, TimeoutError) as err:
        print(f"node: {err}", file=sys.stderr)
        return 1
    # A cluster our users have runs Flux: its CRDs first (the refresher watches GitRepositories).
    from tests.support.sourcecontroller import install_all_crds

    plane = ControlPlane(layout.state, binaries_dir(), api_port=6443, host=layout.node_ip)
    install_all_crds(plane, FLUX_VERSION)
    print(f"node: Ready at {status['url']} ({status.get('ready_seconds')}s from start), Flux {FLUX_VERSION} CRDs")
    print(f"export KUBECONFIG={layout.kubeconfig} PATH={binaries_dir()}:$PATH  # kubectl {NODE_K8S_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
