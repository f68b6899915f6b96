"""``make run`` with no KUBECONFIG: the whole product on a local control plane, walked through as a story.

Everything is real except the clouds: a kube-apiserver + etcd built from Kubernetes' Go modules, the webhook
registered with the apiserver by URL over TLS, the refresher, and local stand-ins that speak the GitHub,
Google and Entra protocols, plus a Git smart-HTTP server that accepts only tokens they issued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config

from common import logs, names
from refresher import config as refresher_config
from refresher.app import Refresher
from tests.support.clouds import Clouds, running_clouds
from tests.support.controlplane import ControlPlane, binaries_dir, free_port
from tests.support.gitserver import git_clone
from tests.support.kube import Kube, install_crds
from tests.support.registration import register
from tests.support.webhook import running_webhook

REPO = Path(__file__).resolve().parents[1]
TOKEN_LIFETIME_S = 60  # short, so renewal happens while you watch
STARTED = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


def progress(text: str) -> None:
    say(f"[{time.monotonic() - STARTED:5.1f}s] {text}")


def heading(number: int, text: str) -> None:
    say()
    say(f"--- {number}. {text} " + "-" * max(0, 72 - len(text)))


class Shell:
    """Runs kubectl as a person would, printing the command and what it answered."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    async def kubectl(
        self, *args: str, stdin: str | None = None, show: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """In a thread: the webhook this kubectl reaches runs on our event loop. ``show=False`` prints the
        command but not its answer (the caller prints a readable, token-free version)."""
        return await asyncio.to_thread(self._kubectl, *args, stdin=stdin, show=show)

    def _kubectl(self, *args: str, stdin: str | None = None, show: bool = True) -> subprocess.CompletedProcess[str]:
        line = "kubectl " + " ".join(args)
        if stdin is not None:
            say(f"$ {line} <<EOF")
            say(textwrap.indent(stdin.rstrip(), "  "))
            say("  EOF")
        else:
            say(f"$ {line}")
        proc = subprocess.run(
            [str(self.plane.kubectl), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.plane.kubectl_env(),
            timeout=60,
        )
        for stream in (proc.stdout, proc.stderr) if show else (proc.stderr,):
            if stream.strip():
                say(textwrap.indent(stream.rstrip(), "  "))
        return proc


def gitrepository(name: str, namespace: str, **spec: Any) -> str:
    body = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", **spec},
    }
    return yaml.safe_dump(body, sort_keys=False)


async def wait_for(what: str, probe: Any, within_s: float = 30.0) -> Any:
    started = time.monotonic()
    last_note = started
    while True:
        value = await probe()
        if value:
            return value
        now = time.monotonic()
        if now - started > within_s:
            raise TimeoutError(f"gave up waiting for {what} after {within_s:.0f}s")
        if now - last_note >= 5:
            progress(f"still waiting for {what} ({now - started:.0f}s)")
            last_note = now
        await asyncio.sleep(0.1)


async def story(plane: ControlPlane, clouds: Clouds, api: client.ApiClient, shell: Shell, workdir: Path) -> None:
    core = client.CoreV1Api(api)
    ns = "demo"

    heading(1, "A typo in the provider is refused, with a suggestion")
    await shell.kubectl("create", "namespace", ns)
    await shell.kubectl(
        "apply", "-f", "-", stdin=gitrepository("podinfo", ns, url=clouds.repo_url("acme/app"), provider="gitub")
    )

    heading(2, "provider: github without a secretRef is refused")
    await shell.kubectl(
        "apply", "-f", "-", stdin=gitrepository("podinfo", ns, url=clouds.repo_url("acme/app"), provider="github")
    )

    heading(3, "A gcp GitRepository is stored as generic, reading its own basic-auth Secret")
    key = clouds.google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    say("# the service-account key, as downloaded from the Google Cloud console, goes into a Secret:")
    secret_file = workdir / "gcp-sa.json"
    secret_file.write_text(json.dumps(key))
    await shell.kubectl(
        "create", "secret", "generic", "gcp-sa", "-n", ns, f"--from-file=gcpServiceAccount={secret_file}"
    )
    manifest = gitrepository(
        "infra",
        ns,
        url=clouds.repo_url("gcp/infra"),
        ref={"branch": "main"},
        interval="10s",
        timeout="10s",
        provider="gcp",
        secretRef={"name": "gcp-sa"},
    )
    applied_at = time.monotonic()
    await shell.kubectl("apply", "-f", "-", stdin=manifest)
    await shell.kubectl(
        "get",
        "gitrepository",
        "infra",
        "-n",
        ns,
        "-o",
        "jsonpath=provider={.spec.provider} secretRef={.spec.secretRef.name}{'\\n'}",
    )

    async def filled() -> client.V1Secret | None:
        with contextlib.suppress(client.exceptions.ApiException):
            secret = await core.read_namespaced_secret("infra-git-token", ns)
            if secret.data and "password" in secret.data:
                return secret
        return None

    secret = await wait_for("the Secret infra-git-token", filled)
    progress(f"Secret infra-git-token filled {time.monotonic() - applied_at:.2f}s after kubectl apply")
    await shell.kubectl(
        "get",
        "secret",
        "infra-git-token",
        "-n",
        ns,
        "-o",
        "jsonpath={.type} {.metadata.annotations.flux-passwordless\\.io/expires-at}{'\\n'}",
        show=False,
    )
    say(
        f"  type={secret.type} username={base64.b64decode(secret.data['username']).decode()} password=<a short-lived "
        f"token> expires-at={secret.metadata.annotations[names.ANNOTATION_EXPIRES_AT]}"
    )

    heading(4, "git clone with exactly that Secret")
    username = base64.b64decode(secret.data["username"]).decode()
    password = base64.b64decode(secret.data["password"]).decode()
    dest = workdir / "infra"
    say(f"$ git clone {clouds.repo_url('gcp/infra')} infra   # basic auth: {username} / <token from the Secret>")
    cloned = await asyncio.to_thread(
        git_clone, clouds.repo_url("gcp/infra"), username, password, clouds.tls.ca_file, dest
    )
    if cloned.returncode != 0:
        raise RuntimeError(f"git clone failed: {cloned.stderr.strip()}")
    say(f"  cloned: {', '.join(sorted(p.name for p in dest.iterdir() if p.name != '.git'))}")

    heading(5, f"The token renews before it expires (tokens live {TOKEN_LIFETIME_S}s in this demo)")
    first_expiry = secret.metadata.annotations[names.ANNOTATION_EXPIRES_AT]
    say(f"  current token expires at {first_expiry}")

    async def renewed() -> client.V1Secret | None:
        current = await filled()
        if current is not None and current.data["password"] != secret.data["password"]:
            return current
        return None

    say("  it is renewed at 80% of its life, or earlier so that 2 x (interval + timeout) = 40s of validity remain")
    say("  for source-controller: here, about 20s after it was minted")
    renewed_secret = await wait_for("the renewal", renewed, within_s=TOKEN_LIFETIME_S * 2)
    say(
        f"  renewed at {renewed_secret.metadata.annotations[names.ANNOTATION_REFRESHED_AT]}, before the old one "
        f"expired; the new one expires at {renewed_secret.metadata.annotations[names.ANNOTATION_EXPIRES_AT]}"
    )

    heading(6, "A pod in an opted-in namespace gets its workload-identity label")
    await shell.kubectl("label", "namespace", ns, "flux-passwordless.io/inject=enabled")
    await shell.kubectl("create", "serviceaccount", "source-controller", "-n", ns)
    await shell.kubectl(
        "annotate",
        "serviceaccount",
        "source-controller",
        "-n",
        ns,
        "azure.workload.identity/client-id=00000000-0000-0000-0000-000000000001",
    )
    await asyncio.sleep(0.5)  # the webhook's ServiceAccount watch
    pod = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "source-controller", "namespace": ns},
            "spec": {
                "serviceAccountName": "source-controller",
                "containers": [{"name": "manager", "image": "ghcr.io/fluxcd/source-controller:v1.9.1"}],
            },
        },
        sort_keys=False,
    )
    await shell.kubectl("apply", "-f", "-", stdin=pod)
    await shell.kubectl(
        "get",
        "pod",
        "source-controller",
        "-n",
        ns,
        "-o",
        "jsonpath=labels={.metadata.labels} injected={.metadata.annotations.flux-passwordless\\.io/injected}{'\\n'}",
    )

    heading(7, "kubectl describe shows what happened")
    await shell.kubectl("describe", "gitrepository", "infra", "-n", ns)


async def run_local(exit_after: bool) -> int:
    say("flux-passwordless: the whole product on a local control plane")
    say("(no cloud account needed: GitHub, Google and Entra are local stand-ins that speak their protocols)")
    say()
    progress("building (first time only, several minutes) or finding the control plane binaries ...")
    bin_dir = await asyncio.to_thread(binaries_dir, True)
    (REPO / ".dev").mkdir(exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="run-", dir=REPO / ".dev"))  # one per run: runs never collide
    plane = ControlPlane(state, bin_dir)
    progress("starting etcd and kube-apiserver ...")
    await asyncio.to_thread(plane.start)
    progress(f"control plane ready in {plane.ready_seconds:.1f}s at {plane.url}; KUBECONFIG={plane.kubeconfig}")
    try:
        await asyncio.to_thread(install_crds, plane)
        progress("GitRepository CRD installed")
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(plane.kubeconfig), client_configuration=cfg)
        with tempfile.TemporaryDirectory(prefix="fp-run-") as tmp:
            workdir = Path(tmp)
            sa_public = (state / "pki" / "sa.pub").read_bytes()
            async with (
                client.ApiClient(cfg) as api,
                running_clouds(workdir / "clouds", sa_public) as clouds,
                running_webhook(workdir, "--azure-injection=label", kubeconfig=plane.kubeconfig) as hook,
                aiohttp.ClientSession() as session,
            ):
                clouds.google.token_lifetime_s = TOKEN_LIFETIME_S
                progress(f"GitHub/Google/Entra stand-ins and the git server ({clouds.git.url}) are up")
                await register(Kube(plane, api), hook, "flux-passwordless")
                progress(f"webhook serving at {hook.url}, registered with the apiserver (caBundle of its own CA)")
                args = [
                    f"--kubeconfig={plane.kubeconfig}",
                    f"--listen=127.0.0.1:{free_port()}",
                    "--credentials-resync=5",
                    *clouds.refresher_args(),
                ]
                refresher = Refresher(refresher_config.from_args(args), api, session)
                task = asyncio.create_task(refresher.run())
                progress("refresher running")
                try:
                    await story(plane, clouds, api, Shell(plane), workdir)
                    say()
                    say("The story is complete.")
                    if not exit_after:
                        say(
                            f"Everything is still running: export KUBECONFIG={plane.kubeconfig} and look around. "
                            "Ctrl-C tears it all down."
                        )
                        await asyncio.Event().wait()
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        progress("tearing down the control plane")
        await asyncio.to_thread(plane.stop)
        shutil.rmtree(state, ignore_errors=True)
    return 0


def run_against_cluster() -> int:
    """With KUBECONFIG: the two processes against that cluster and the real cloud endpoints."""
    say(f"KUBECONFIG={os.environ['KUBECONFIG']}: running the webhook and the refresher against that cluster.")
    say("The webhook serves on 0.0.0.0:9443; for the cluster to call it, deploy with `kubectl apply -k manifests/`")
    say("instead (see README). Ctrl-C stops both.")
    cert_dir = REPO / ".dev" / "webhook-tls"
    subprocess.run(
        [sys.executable, "-m", "certs", "files", "--dir", str(cert_dir)], check=True, stdout=subprocess.DEVNULL
    )
    procs = [
        subprocess.Popen([sys.executable, "-m", "refresher", "--listen=127.0.0.1:8080"]),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                f"--tls-cert-file={cert_dir / 'tls.crt'}",
                f"--tls-key-file={cert_dir / 'tls.key'}",
                "--metrics-listen=127.0.0.1:8081",  # the refresher's health port is 8080
                "--shutdown-delay=0",  # not behind a Service: nothing to wait for
            ]
        ),
    ]
    try:
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    exit_after = "--exit" in args or os.environ.get("DEMO_EXIT") == "1"
    logs.setup(os.environ.get("DEMO_LOG_LEVEL", "error"))
    if os.environ.get("KUBECONFIG") and "--local" not in args:
        return run_against_cluster()
    try:
        return asyncio.run(run_local(exit_after))
    except KeyboardInterrupt:
        say("\ninterrupted: everything torn down")
        return 130
