"""One ``Injector`` per cloud, each a row of ``INJECTORS``: it fires when the Pod's ServiceAccount carries its
trigger annotation. In label mode it adds what that cloud's own webhook keys on; in full mode it adds what that
webhook would add (env, projected token volume and mount), never overwriting what a container already sets.
Pure, no IO."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from common import names
from webhook.podpatch import (
    Pod,
    PodWriter,
    add_volume,
    containers,
    get,
    set_if_absent,
    token_volume,
    upsert_mount,
    upsert_volume,
)

Mode = Literal["label", "full"]


@dataclass(frozen=True, slots=True)
class PodConfig:
    azure_injection: Mode = "label"
    aws_injection: Mode = "label"
    gke_node_selector: bool = False
    azure_tenant_id: str = ""
    azure_authority_host: str = names.AZURE_DEFAULT_AUTHORITY_HOST
    aws_default_region: str = ""
    aws_sts_regional_endpoints: bool = False


class PodRejected(ValueError):
    """The Pod asks for something invalid (message says field, value and fix)."""


def _azure(w: PodWriter, sa: Mapping[str, str], config: PodConfig) -> bool:
    """As the Azure Workload Identity webhook v1.6.0 mutates (its layout, so a pod both webhooks see, in either
    order, ends with one volume and env naming the file it mounts): per container, each env var it lacks, and the
    mount of the reserved volume (a mount of that name is corrected); the volume itself (one of that name is
    corrected). docs/azure.md lists where we differ on purpose."""
    labels = get(w.original, "metadata", "labels")
    use = (labels or {}).get(names.AZURE_LABEL_USE)
    if use is not None and use != "true":
        return False  # the pod opted out explicitly
    set_if_absent(w, ("metadata", "labels"), labels, names.AZURE_LABEL_USE, "true")
    if config.azure_injection != "full":
        return True
    pod_annotations = get(w.original, "metadata", "annotations") or {}
    if names.AZURE_ANNOTATION_INJECT_PROXY_SIDECAR in pod_annotations:
        raise PodRejected(
            f"metadata.annotations[{names.AZURE_ANNOTATION_INJECT_PROXY_SIDECAR}]: Forbidden: the proxy sidecar "
            "(for clients without workload identity support) is not injected by flux-passwordless: remove the "
            "annotation and use an SDK with workload identity, or let the Azure Workload Identity webhook inject "
            "this pod (--azure-injection=label)"
        )
    expiration = _azure_token_expiration(pod_annotations, sa)
    skip = frozenset(
        s.strip() for s in (pod_annotations.get(names.AZURE_ANNOTATION_SKIP_CONTAINERS) or "").split(";") if s.strip()
    )
    volume = names.AZURE_TOKEN_VOLUME_PREFIX + _azure_volume_hash(w.original)
    tenant = sa.get(names.AZURE_ANNOTATION_TENANT_ID, config.azure_tenant_id)
    wanted = [
        ("AZURE_CLIENT_ID", sa.get(names.AZURE_ANNOTATION_CLIENT_ID, "")),
        ("AZURE_TENANT_ID", tenant),
        ("AZURE_FEDERATED_TOKEN_FILE", f"{names.AZURE_TOKEN_MOUNT_PATH}/{names.AZURE_TOKEN_FILE}"),
        ("AZURE_AUTHORITY_HOST", config.azure_authority_host),
    ]
    mount = {"name": volume, "mountPath": names.AZURE_TOKEN_MOUNT_PATH, "readOnly": True}
    for kind, index, container, have in containers(w, skip):
        for name, value in wanted:
            if name not in have and value:
                w.append(("spec", kind, index, "env"), {"name": name, "value": value})
        upsert_mount(w, kind, index, container, mount)
    upsert_volume(w, token_volume(volume, names.AZURE_TOKEN_AUDIENCE, expiration, names.AZURE_TOKEN_FILE))
    return True


def _azure_volume_hash(pod: Pod) -> str:
    """As the Azure Workload Identity webhook names it, so a pod both webhooks see gets one volume, not two."""
    metadata = pod.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName', '')} (prefix)"
    return hashlib.sha256(str(name).encode()).hexdigest()[: 63 - len(names.AZURE_TOKEN_VOLUME_PREFIX)]


def _azure_token_expiration(pod_annotations: Mapping[str, str], sa: Mapping[str, str]) -> int:
    key = names.AZURE_ANNOTATION_TOKEN_EXPIRATION
    raw = pod_annotations.get(key) or sa.get(key)
    if raw is None:
        return names.AZURE_TOKEN_EXPIRATION_DEFAULT
    lo, hi = names.AZURE_TOKEN_EXPIRATION_MIN, names.AZURE_TOKEN_EXPIRATION_MAX
    where = "metadata.annotations" if key in pod_annotations else "serviceAccount.metadata.annotations"
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if not lo <= seconds <= hi:
        raise PodRejected(
            f'{where}[{key}]: Invalid value: "{raw}": must be a whole number of seconds from {lo} to {hi}'
        )
    return seconds


def _aws(w: PodWriter, sa: Mapping[str, str], config: PodConfig) -> bool:
    """As the EKS pod identity webhook v0.6.17 mutates for a role ARN (web identity): per container, the STS
    regional endpoint when the ServiceAccount (or --aws-sts-regional-endpoints) asks, the region when
    --aws-default-region is set, AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE unless it sets either, and the
    token mount; the token volume first in the pod's list. docs/aws.md lists where we differ on purpose."""
    if config.aws_injection != "full":
        return True
    pod_annotations = get(w.original, "metadata", "annotations") or {}
    expiration = _aws_token_expiration(sa.get(names.AWS_ANNOTATION_TOKEN_EXPIRATION), names.AWS_TOKEN_EXPIRATION)
    expiration = _aws_token_expiration(pod_annotations.get(names.AWS_ANNOTATION_TOKEN_EXPIRATION), expiration)
    regional = _bool(sa.get(names.AWS_ANNOTATION_STS_REGIONAL_ENDPOINTS), config.aws_sts_regional_endpoints)
    skip = _csv_names(pod_annotations.get(names.AWS_ANNOTATION_SKIP_CONTAINERS))
    token_file = f"{names.AWS_TOKEN_MOUNT_PATH}/{names.AWS_TOKEN_FILE}"
    node_selector = get(w.original, "spec", "nodeSelector") or {}
    if "windows" in (node_selector.get("kubernetes.io/os"), node_selector.get("beta.kubernetes.io/os")):
        token_file = "C:" + token_file.replace("/", "\\")
    mount = {"name": names.AWS_TOKEN_VOLUME, "readOnly": True, "mountPath": names.AWS_TOKEN_MOUNT_PATH}
    for kind, index, container, have in containers(w, skip):
        if (
            have & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
            and have & {"AWS_REGION", "AWS_DEFAULT_REGION"}
            and "AWS_STS_REGIONAL_ENDPOINTS" in have
        ):
            continue  # the peer's rule: a container that sets all three kinds is configured, mount included
        env: list[tuple[str, str]] = []
        if regional and "AWS_STS_REGIONAL_ENDPOINTS" not in have:
            env.append(("AWS_STS_REGIONAL_ENDPOINTS", "regional"))
        if config.aws_default_region and not have & {"AWS_REGION", "AWS_DEFAULT_REGION"}:
            env += [("AWS_DEFAULT_REGION", config.aws_default_region), ("AWS_REGION", config.aws_default_region)]
        if not have & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}:
            env.append(("AWS_ROLE_ARN", sa[names.AWS_ANNOTATION_ROLE_ARN]))
            env.append(("AWS_WEB_IDENTITY_TOKEN_FILE", token_file))
        for name, value in env:
            w.append(("spec", kind, index, "env"), {"name": name, "value": value})
        if not any(m.get("name") == names.AWS_TOKEN_VOLUME for m in container.get("volumeMounts") or []):
            w.append(("spec", kind, index, "volumeMounts"), mount)
    audience = sa.get(names.AWS_ANNOTATION_AUDIENCE) or names.AWS_DEFAULT_AUDIENCE
    volume = token_volume(names.AWS_TOKEN_VOLUME, audience, expiration, names.AWS_TOKEN_FILE)
    add_volume(w, volume, first=True)
    return True


def _aws_token_expiration(raw: str | None, default: int) -> int:
    """The peer's rule: a whole number of seconds, at least 600 (less is raised to it); anything else keeps the
    default (the peer logs and goes on, and so do we: a pod is not refused for it)."""
    if raw is None:
        return default
    try:
        seconds = int(raw.strip())
    except ValueError:
        return default
    return max(seconds, names.AWS_TOKEN_EXPIRATION_MIN)


def _bool(raw: str | None, default: bool) -> bool:
    """Go's strconv.ParseBool, as the peer reads sts-regional-endpoints; anything else keeps the default."""
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return default


def _csv_names(raw: str | None) -> frozenset[str]:
    """The container names of a skip-containers annotation: one CSV record, as the peer reads it."""
    if not raw:
        return frozenset()
    try:
        return frozenset(next(csv.reader([raw])))
    except (csv.Error, StopIteration):
        return frozenset()


def _gcp(w: PodWriter, sa: Mapping[str, str], config: PodConfig) -> bool:
    if config.gke_node_selector:
        current = get(w.original, "spec", "nodeSelector")
        set_if_absent(w, ("spec", "nodeSelector"), current, names.GCP_NODE_SELECTOR, "true")
    return True


@dataclass(frozen=True)
class Injector:
    provider: str
    trigger: str  # the ServiceAccount annotation that turns it on
    apply: Callable[[PodWriter, Mapping[str, str], PodConfig], bool]


INJECTORS: tuple[Injector, ...] = (
    Injector(names.PROVIDER_AZURE, names.AZURE_ANNOTATION_CLIENT_ID, _azure),
    Injector(names.PROVIDER_AWS, names.AWS_ANNOTATION_ROLE_ARN, _aws),
    Injector(names.PROVIDER_GCP, names.GCP_ANNOTATION_SERVICE_ACCOUNT, _gcp),
)

# The ServiceAccount annotations any injector reads: all the SA cache keeps.
SA_ANNOTATIONS_READ: frozenset[str] = frozenset(
    {i.trigger for i in INJECTORS}
    | {
        names.AZURE_ANNOTATION_TENANT_ID,
        names.AZURE_ANNOTATION_TOKEN_EXPIRATION,
        names.AWS_ANNOTATION_AUDIENCE,
        names.AWS_ANNOTATION_TOKEN_EXPIRATION,
        names.AWS_ANNOTATION_STS_REGIONAL_ENDPOINTS,
    }
)
