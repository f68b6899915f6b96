"""Webhook configuration: command-line flags (each with a FLUX_PASSWORDLESS_* environment default), validated
once at start so a typo stops the process with a clear message instead of misbehaving later."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from common import names
from common.flags import csv, env, listen
from common.gitrepository import PolicyConfig
from webhook.injectors import Mode, PodConfig

MODES: tuple[Mode, ...] = ("label", "full")
MIB = 1024 * 1024


@dataclass(frozen=True)
class WebhookConfig:
    host: str
    port: int
    tls_cert_file: Path
    tls_key_file: Path
    cert_reload_seconds: float
    policy: PolicyConfig
    pods: PodConfig
    excluded_namespaces: frozenset[str]
    kubeconfig: str | None
    serviceaccounts_file: Path | None
    max_body_bytes: int
    body_budget_bytes: int
    max_header_bytes: int
    max_connections: int
    metrics_listen: tuple[str, int] | None  # plain HTTP, /metrics only; None: off
    secret_warnings: bool
    header_timeout_s: float
    idle_timeout_s: float
    shutdown_delay_s: float
    secret_lookup_timeout: float
    serviceaccount_lookup_timeout: float
    log_level: str


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flux-passwordless-webhook",
        description="Mutating admission webhook: GitRepository policy and provider translation, "
        "workload-identity injection into Pods.",
    )
    p.add_argument("--listen", default=env("listen", "0.0.0.0:9443"), help="host:port to serve HTTPS on")
    p.add_argument(
        "--metrics-listen",
        default=env("metrics-listen", "0.0.0.0:8080"),
        help="host:port for /metrics over plain HTTP, apart from the admission port (empty: off)",
    )
    p.add_argument(
        "--secret-warnings",
        action="store_true",
        default=env("secret-warnings", "") == "true",
        help="read credentials Secrets' key names to warn at admission (needs secrets: get; off by default, "
        "the refresher says the same as Warning Events)",
    )
    p.add_argument("--tls-cert-file", default=env("tls-cert-file", "/tls/tls.crt"))
    p.add_argument("--tls-key-file", default=env("tls-key-file", "/tls/tls.key"))
    p.add_argument(
        "--cert-reload-interval",
        type=float,
        default=float(env("cert-reload-interval", "10")),
        help="seconds between checks for rotated certificate files",
    )
    p.add_argument(
        "--managed-providers",
        default=env("managed-providers", ",".join(names.DEFAULT_MANAGED_PROVIDERS)),
        help="providers the refresher serves (rewritten to generic + our Secret); others are left to Flux",
    )
    p.add_argument("--azure-injection", choices=MODES, default=env("azure-injection", "label"))
    p.add_argument("--aws-injection", choices=MODES, default=env("aws-injection", "label"))
    p.add_argument(
        "--aws-default-region",
        default=env("aws-default-region", ""),
        help="full AWS injection: AWS_REGION and AWS_DEFAULT_REGION (the EKS webhook's --aws-default-region)",
    )
    p.add_argument(
        "--aws-sts-regional-endpoints",
        action="store_true",
        default=env("aws-sts-regional-endpoints", "") == "true",
        help="full AWS injection: AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount says otherwise "
        "(the EKS webhook's --sts-regional-endpoint)",
    )
    p.add_argument(
        "--gke-node-selector",
        action="store_true",
        default=env("gke-node-selector", "") == "true",
        help=f'add nodeSelector {names.GCP_NODE_SELECTOR}: "true" to GCP-identity pods',
    )
    p.add_argument("--azure-tenant-id", default=env("azure-tenant-id", ""))
    p.add_argument("--azure-authority-host", default=env("azure-authority-host", names.AZURE_DEFAULT_AUTHORITY_HOST))
    p.add_argument(
        "--namespace",
        default=env("namespace", os.environ.get("POD_NAMESPACE", "flux-passwordless")),
        help="the webhook's own namespace (never mutated)",
    )
    p.add_argument(
        "--exclude-namespaces",
        default=env("exclude-namespaces", ""),
        help="more namespaces never mutated (kube-system and --namespace always are)",
    )
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    p.add_argument(
        "--serviceaccounts-file",
        default=env("serviceaccounts-file", "") or None,
        help='JSON {"ns/name": {annotation: value}} instead of watching the cluster (local runs, benchmarks)',
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(env("max-body-bytes", str(3 * MIB))),
        help="larger request bodies are refused (413) before they are read",
    )
    p.add_argument(
        "--body-budget-bytes",
        type=int,
        default=int(env("body-budget-bytes", str(48 * MIB))),
        help="request bodies held at once across all connections (each reserves its Content-Length until "
        "answered); past it a body waits, unread, up to --header-timeout, then gets 503",
    )
    p.add_argument(
        "--max-header-bytes",
        type=int,
        default=int(env("max-header-bytes", str(32 * 1024))),
        help="a request head larger than this gets 431 and its connection is closed",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=int(env("max-connections", "500")),
        help="connections at once; past it the oldest idle (or still handshaking) one makes room "
        "(each may hold about 70 KB)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=float(env("header-timeout", "10")),
        help="seconds for a new connection's TLS handshake and first request headers, and for a request body",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=float(env("idle-timeout", "60")),
        help="seconds a kept-alive connection may stay idle",
    )
    p.add_argument(
        "--shutdown-delay",
        type=float,
        default=float(env("shutdown-delay", "10")),
        help="seconds to keep serving (and answer /healthz 503) after SIGTERM, while the pod is taken out of the "
        "Service: kube-proxy and the apiserver may still send it new connections for a moment",
    )
    p.add_argument("--log-level", default=env("log-level", "info"), choices=["debug", "info", "warning", "error"])
    return p


def from_args(argv: list[str] | None = None) -> WebhookConfig:
    p = parser()
    a = p.parse_args(argv)
    host, port = listen(p, a.listen, "0.0.0.0:9443")
    metrics = listen(p, a.metrics_listen, "0.0.0.0:8080") if a.metrics_listen else None
    try:
        policy = PolicyConfig(frozenset(csv(a.managed_providers)))
    except ValueError as err:
        p.error(str(err))
    if a.cert_reload_interval <= 0:
        p.error("--cert-reload-interval must be positive")
    if a.max_body_bytes < 64 * 1024:
        p.error("--max-body-bytes must be at least 65536 (pods are large)")
    if a.body_budget_bytes < a.max_body_bytes:
        p.error(
            f'--body-budget-bytes: Invalid value: "{a.body_budget_bytes}": at least --max-body-bytes '
            f"({a.max_body_bytes}), or the largest review could never be read"
        )
    if not 4096 <= a.max_header_bytes <= MIB:
        p.error(f'--max-header-bytes: Invalid value: "{a.max_header_bytes}": between 4096 and 1048576')
    if a.max_connections < 8:
        p.error(f'--max-connections: Invalid value: "{a.max_connections}": at least 8')
    if a.header_timeout <= 0 or a.idle_timeout <= 0:
        p.error("--header-timeout and --idle-timeout must be positive")
    if not 0 <= a.shutdown_delay <= 60:
        p.error(f'--shutdown-delay: Invalid value: "{a.shutdown_delay}": between 0 and 60 seconds')
    excluded = frozenset([*names.ALWAYS_EXCLUDED_NAMESPACES, a.namespace, *csv(a.exclude_namespaces)])
    return WebhookConfig(
        host=host,
        port=port,
        tls_cert_file=Path(a.tls_cert_file),
        tls_key_file=Path(a.tls_key_file),
        cert_reload_seconds=a.cert_reload_interval,
        policy=policy,
        pods=PodConfig(
            azure_injection=a.azure_injection,
            aws_injection=a.aws_injection,
            gke_node_selector=a.gke_node_selector,
            azure_tenant_id=a.azure_tenant_id,
            azure_authority_host=a.azure_authority_host,
            aws_default_region=a.aws_default_region,
            aws_sts_regional_endpoints=a.aws_sts_regional_endpoints,
        ),
        excluded_namespaces=excluded,
        kubeconfig=a.kubeconfig,
        serviceaccounts_file=Path(a.serviceaccounts_file) if a.serviceaccounts_file else None,
        max_body_bytes=a.max_body_bytes,
        body_budget_bytes=a.body_budget_bytes,
        max_header_bytes=a.max_header_bytes,
        max_connections=a.max_connections,
        metrics_listen=metrics,
        secret_warnings=a.secret_warnings,
        header_timeout_s=a.header_timeout,
        idle_timeout_s=a.idle_timeout,
        shutdown_delay_s=a.shutdown_delay,
        secret_lookup_timeout=2.0,
        serviceaccount_lookup_timeout=1.0,
        log_level=a.log_level,
    )
