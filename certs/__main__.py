"""flux-passwordless-certs: TLS for the webhook.

files   --dir DIR [--service S --namespace N] [--dns NAME]... [--ip ADDR]...
        CA + serving certificate as files (tls.crt, tls.key, ca.crt); local runs and `make certs`.
secret  --namespace N --secret NAME --service S [--webhook-config NAME]
        the same kept in a kubernetes.io/tls Secret (in-cluster, self-signed overlay), and the caBundle
        injected into the MutatingWebhookConfiguration.
inject  --ca-file FILE --webhook-config NAME
        only the caBundle injection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from certs.authority import service_dns_names
from certs.cluster import ensure_secret, inject_ca_bundle
from certs.files import CA_CERT, ensure_files
from common import logs
from common.kube import api_client

log = logging.getLogger(__name__)


async def _secret(a: argparse.Namespace) -> None:
    async with await api_client(a.kubeconfig) as api:
        ca = await ensure_secret(api, a.namespace, a.secret, service_dns_names(a.service, a.namespace))
        if a.webhook_config:
            await inject_ca_bundle(api, a.webhook_config, ca)


async def _inject(a: argparse.Namespace, ca_pem: bytes) -> None:
    async with await api_client(a.kubeconfig) as api:
        await inject_ca_bundle(api, a.webhook_config, ca_pem)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="flux-passwordless-certs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    sub = p.add_subparsers(dest="command", required=True)
    files = sub.add_parser("files")
    files.add_argument("--dir", required=True, type=Path)
    files.add_argument("--service", default="")
    files.add_argument("--namespace", default="flux-passwordless")
    files.add_argument("--dns", action="append", default=[])
    files.add_argument("--ip", action="append", default=[])
    secret = sub.add_parser("secret")
    secret.add_argument("--namespace", required=True)
    secret.add_argument("--secret", required=True)
    secret.add_argument("--service", required=True)
    secret.add_argument("--webhook-config", default="")
    inject = sub.add_parser("inject")
    inject.add_argument("--ca-file", required=True)
    inject.add_argument("--webhook-config", required=True)
    a = p.parse_args(argv)
    logs.setup("info")
    if a.command == "files":
        dns = (service_dns_names(a.service, a.namespace) if a.service else []) + a.dns
        if not dns and not a.ip:
            dns, a.ip = ["localhost"], ["127.0.0.1"]
        ensure_files(a.dir, dns, a.ip)
        print(a.dir / CA_CERT)
    elif a.command == "secret":
        asyncio.run(_secret(a))
    else:
        asyncio.run(_inject(a, Path(a.ca_file).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
