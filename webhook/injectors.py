"""One ``Injector`` per cloud, each a row of ``INJECTORS``: it fires when the Pod's ServiceAccount carries its
trigger annotation. In label mode it adds what that cloud's own webhook keys on; in full mode it adds what that
webhook would add (env, projected token volume and mount), never overwriting what a container already sets.
Pure, no IO."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from common import names
from webhook.podpatch import Pod, PodWriter, add_volume, get, inject_into_containers, set_if_absent, token_volume

Mode = Literal["label", "full"]


@dataclass(frozen=True, slots=True)
class PodConfig:
    azure_injection: Mode = "label"
    aws_injection: Mode = "label"
    gke_node_selector: bool = False
    azure_tenant_id: str = ""
    azure_authority_host: str = names.AZURE_DEFAULT_AUTHORITY_HOST


class PodRejected(ValueError):
    """The Pod asks for something invalid (message says field, value and fix)."""


def _azure(w: PodWriter, sa: Mapping[str, str], config: PodConfig) -> bool:
    labels = get(w.original, "metadata", "labels")
    use = (labels or {}).get(names.AZURE_LABEL_USE)
    if use is not None and use != "true":
        return False  # the pod opted out explicitly
    set_if_absent(w, ("metadata", "labels"), labels, names.AZURE_LABEL_USE, "true")
    if config.azure_injection != "full":
        return True
    pod_annotations = get(w.original, "metadata", "annotations") or {}
    expiration = _azure_token_expiration(pod_annotations, sa)
    if _azure_injected(w.original):
        return True  # the Azure Workload Identity webhook (or a person) got there first: one token volume only
    skip = frozenset(
        s.strip() for s in (pod_annotations.get(names.AZURE_ANNOTATION_SKIP_CONTAINERS) or "").split(";") if s.strip()
    )
    suffix = _azure_volume_hash(w.original)
    volume, mount_path = names.AZURE_TOKEN_VOLUME_PREFIX + suffix, f"{names.AZURE_TOKEN_PATH_PREFIX}/{suffix}"
    env = [{"name": "AZURE_CLIENT_ID", "value": sa[names.AZURE_ANNOTATION_CLIENT_ID]}]
    tenant = sa.get(names.AZURE_ANNOTATION_TENANT_ID) or config.azure_tenant_id
    if tenant:
        env.append({"name": "AZURE_TENANT_ID", "value": tenant})
    env += [
        {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": f"{mount_path}/{names.AZURE_TOKEN_FILE}"},
        {"name": "AZURE_AUTHORITY_HOST", "value": config.azure_authority_host},
    ]
    inject_into_containers(w, env, {"name": volume, "mountPath": mount_path, "readOnly": True}, skip)
    add_volume(w, token_volume(volume, names.AZURE_TOKEN_AUDIENCE, expiration, names.AZURE_TOKEN_FILE))
    return True


def _azure_volume_hash(pod: Pod) -> str:
    """As the Azure Workload Identity webhook names it, so a pod both webhooks see gets one volume, not two."""
    metadata = pod.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName', '')} (prefix)"
    return hashlib.sha256(str(name).encode()).hexdigest()[: 63 - len(names.AZURE_TOKEN_VOLUME_PREFIX)]


def _azure_injected(pod: Pod) -> bool:
    """A token volume of either Azure Workload Identity layout, or a container told where a token is."""
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        if name.startswith(names.AZURE_TOKEN_VOLUME_PREFIX) or name == names.AZURE_LEGACY_TOKEN_VOLUME:
            return True
    return any(
        env.get("name") == "AZURE_FEDERATED_TOKEN_FILE"
        for kind in ("initContainers", "containers")
        for container in spec.get(kind) or []
        for env in container.get("env") or []
    )


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
    if config.aws_injection != "full":
        return True
    token_file = f"{names.AWS_TOKEN_MOUNT_PATH}/{names.AWS_TOKEN_FILE}"
    env = [
        {"name": "AWS_ROLE_ARN", "value": sa[names.AWS_ANNOTATION_ROLE_ARN]},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file},
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
    ]
    mount = {"name": names.AWS_TOKEN_VOLUME, "mountPath": names.AWS_TOKEN_MOUNT_PATH, "readOnly": True}
    inject_into_containers(w, env, mount)
    audience = sa.get(names.AWS_ANNOTATION_AUDIENCE) or names.AWS_DEFAULT_AUDIENCE
    add_volume(w, token_volume(names.AWS_TOKEN_VOLUME, audience, names.AWS_TOKEN_EXPIRATION, names.AWS_TOKEN_FILE))
    return True


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
    }
)
