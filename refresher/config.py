"""Refresher configuration: flags with FLUX_PASSWORDLESS_* environment defaults, validated once at start."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass

from common import names
from common.flags import csv, env, listen
from common.gitrepository import PolicyConfig
from refresher import sharding
from refresher.credentials import GITHUB_DEFAULT_API, github_api_base
from refresher.providers.gcp import GOOGLE_IAM_CREDENTIALS_URL, GOOGLE_STS_URL, GOOGLE_TOKEN_URL
from refresher.targets import Rules, parse_permissions


@dataclass(frozen=True)
class RefresherConfig:
    namespaces: tuple[str, ...]  # empty: all namespaces
    identity_namespaces: frozenset[str]
    credentials_namespaces: frozenset[str]
    rules: Rules  # managed providers, allowed GitHub permissions
    github_token_scope: str  # "repositories" or "installation"
    gcp_scopes: tuple[str, ...]
    gcp_token_urls: tuple[str, ...]
    github_api_urls: tuple[str, ...]
    github_recheck_s: float
    gcp_sts_url: str
    gcp_iam_credentials_url: str
    azure_auth: str  # "basic" or "bearer"
    azure_username: str
    azure_authority_host: str | None
    azure_tenant_id: str | None
    azure_ca_file: str | None
    mint_concurrency: int
    write_concurrency: int
    credentials_resync_s: float
    leader_elect: bool
    lease_name: str
    watch_label_selector: str  # empty: no sharding
    lease_namespace: str
    identity: str
    kubeconfig: str | None
    listen: tuple[str, int]
    log_level: str


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flux-passwordless-refresher",
        description="Mints short-lived Git tokens (GitHub App, Google, Microsoft Entra) into basic-auth Secrets.",
    )
    own = os.environ.get("POD_NAMESPACE", "flux-passwordless")
    p.add_argument("--namespaces", default=env("namespaces", ""), help="watch only these (comma-separated)")
    p.add_argument(
        "--credentials-namespaces",
        default=env("credentials-namespaces", ""),
        help="namespaces whose credentials Secrets tenants may name as namespace/name, as their grant annotations "
        "allow (default: the refresher's own namespace)",
    )
    p.add_argument(
        "--identity-namespaces",
        default=env("identity-namespaces", ""),
        help=f"namespaces that may use its own cloud identity (default: its own and {names.FLUX_NAMESPACE})",
    )
    p.add_argument("--namespace", default=env("namespace", own), help="the refresher's own namespace")
    p.add_argument("--managed-providers", default=env("managed-providers", ",".join(names.DEFAULT_MANAGED_PROVIDERS)))
    p.add_argument(
        "--github-permissions",
        default=env("github-permissions", names.DEFAULT_GITHUB_PERMISSIONS),
        help="the most a GitHub token may carry, e.g. contents:write,metadata:read,pull_requests:write "
        "(an object asking for more gets a Warning Event and no token)",
    )
    p.add_argument(
        "--github-token-scope",
        choices=["repositories", "installation"],
        default=env("github-token-scope", "repositories"),
    )
    p.add_argument("--gcp-scopes", default=env("gcp-scopes", names.GCP_DEFAULT_SCOPE))
    p.add_argument(
        "--github-api-urls",
        default=env("github-api-urls", GITHUB_DEFAULT_API),
        help="GitHub API bases a credentials Secret may name in githubAppBaseURL (comma-separated; a GitHub "
        "Enterprise Server as https://HOST, read as https://HOST/api/v3); anything else is refused",
    )
    p.add_argument(
        "--github-recheck-interval",
        type=float,
        default=float(env("github-recheck-interval", "600")),
        help="seconds before repositories GitHub said an installation cannot reach are asked for again",
    )
    p.add_argument(
        "--gcp-token-urls",
        default=env("gcp-token-urls", GOOGLE_TOKEN_URL),
        help="token endpoints a service-account key's token_uri may name",
    )
    p.add_argument("--gcp-sts-url", default=env("gcp-sts-url", GOOGLE_STS_URL))
    p.add_argument(
        "--gcp-iam-credentials-url",
        default=env("gcp-iam-credentials-url", GOOGLE_IAM_CREDENTIALS_URL),
        help="the only IAM Credentials API impersonation may call (keyless Google, external_account key files)",
    )
    p.add_argument("--azure-auth", choices=["basic", "bearer"], default=env("azure-auth", "basic"))
    p.add_argument("--azure-username", default=env("azure-username", names.AZURE_DEFAULT_USERNAME))
    p.add_argument("--azure-authority-host", default=env("azure-authority-host", "") or None)
    p.add_argument("--azure-tenant-id", default=env("azure-tenant-id", "") or None)
    p.add_argument("--azure-ca-file", default=env("azure-ca-file", "") or None, help="CA bundle for Entra ID")
    p.add_argument("--mint-concurrency", type=int, default=int(env("mint-concurrency", "8")), help="per provider")
    p.add_argument("--write-concurrency", type=int, default=int(env("write-concurrency", "16")))
    p.add_argument("--credentials-resync", type=float, default=float(env("credentials-resync", "30")))
    p.add_argument("--leader-elect", action="store_true", default=env("leader-elect", "") == "true")
    p.add_argument(
        "--watch-label-selector",
        default=env("watch-label-selector", ""),
        help="serve only the GitRepositories and opted-in Secrets this label selector matches, as Flux's "
        "source-controller shards (e.g. sharding.fluxcd.io/key=shard1; the main instance: !sharding.fluxcd.io/key)",
    )
    p.add_argument(
        "--lease-name",
        default=env("lease-name", ""),
        help="the leader-election Lease (default: flux-passwordless-refresher, suffixed per shard selector)",
    )
    p.add_argument("--identity", default=env("identity", os.environ.get("POD_NAME", socket.gethostname())))
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    p.add_argument("--listen", default=env("listen", "0.0.0.0:8080"), help="health and metrics (plain HTTP)")
    p.add_argument("--log-level", default=env("log-level", "info"), choices=["debug", "info", "warning", "error"])
    return p


def from_args(argv: list[str] | None = None) -> RefresherConfig:
    p = parser()
    a = p.parse_args(argv)
    try:
        policy = PolicyConfig(frozenset(csv(a.managed_providers)))
    except ValueError as err:
        p.error(str(err))
    address = listen(p, a.listen, "0.0.0.0:8080")
    if a.mint_concurrency < 1 or a.write_concurrency < 1:
        p.error("--mint-concurrency and --write-concurrency must be at least 1")
    if a.credentials_resync <= 0:
        p.error("--credentials-resync must be positive")
    if a.github_recheck_interval <= 0:
        p.error("--github-recheck-interval must be positive")
    github_api_urls = tuple(github_api_base(url) for url in csv(a.github_api_urls))
    if not github_api_urls or not all(url.startswith("https://") for url in github_api_urls):
        p.error(f'--github-api-urls: Invalid value: "{a.github_api_urls}": one or more https:// URLs')
    identity = frozenset(csv(a.identity_namespaces)) or frozenset({a.namespace, names.FLUX_NAMESPACE})
    try:
        shard_keys = sharding.selector_keys(a.watch_label_selector)
    except ValueError as err:
        p.error(str(err))
    return RefresherConfig(
        namespaces=csv(a.namespaces),
        identity_namespaces=identity,
        credentials_namespaces=frozenset(csv(a.credentials_namespaces)) or frozenset({a.namespace}),
        rules=Rules(policy, parse_permissions(a.github_permissions), shard_keys),
        watch_label_selector=a.watch_label_selector.strip(),
        github_token_scope=a.github_token_scope,
        gcp_scopes=csv(a.gcp_scopes),
        gcp_token_urls=csv(a.gcp_token_urls),
        github_api_urls=github_api_urls,
        github_recheck_s=a.github_recheck_interval,
        gcp_sts_url=a.gcp_sts_url,
        gcp_iam_credentials_url=a.gcp_iam_credentials_url,
        azure_auth=a.azure_auth,
        azure_username=a.azure_username,
        azure_authority_host=a.azure_authority_host,
        azure_tenant_id=a.azure_tenant_id,
        azure_ca_file=a.azure_ca_file,
        mint_concurrency=a.mint_concurrency,
        write_concurrency=a.write_concurrency,
        credentials_resync_s=a.credentials_resync,
        leader_elect=a.leader_elect,
        lease_name=a.lease_name or sharding.lease_name(names.REFRESHER_LEASE, a.watch_label_selector),
        lease_namespace=a.namespace,
        identity=a.identity,
        kubeconfig=a.kubeconfig,
        listen=address,
        log_level=a.log_level,
    )
