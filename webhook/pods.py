"""Workload-identity injection into Pods, driven by the Pod's ServiceAccount annotations. Pure, no IO.

One ``Injector`` per cloud, each a row of ``INJECTORS``: it fires when the ServiceAccount carries its trigger
annotation. In label mode it adds what that cloud's own webhook keys on; in full mode it adds what that
webhook would add (env, projected token volume and mount), never overwriting what a container already sets.

``mutate_pod`` never modifies its input: it copies the parts it changes, shares the rest, and records the
JSON Patch while it edits (the tests check it against a diff of the whole object).

``PodView`` names every field an injector reads. The webhook decodes only those from a review (the rest of a
pod, images, probes, resources, is skipped by the decoder), which halves the cost of decoding. Patch paths stay
valid for the whole pod because lists keep every element, in order. An injector that reads a new field must add
it to the view: the golden tests run every fixture through both the view and the whole pod and require the same
patch.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from common import names
from webhook.jsonpatch import Patch, escape

Mode = Literal["label", "full"]
Pod = dict[str, Any]


class _Named(TypedDict, total=False):
    name: str


class _VolumeMount(TypedDict, total=False):
    name: str
    mountPath: str


class _Container(TypedDict, total=False):
    name: str
    env: list[_Named]
    volumeMounts: list[_VolumeMount]


class _PodSpec(TypedDict, total=False):
    serviceAccountName: str
    initContainers: list[_Container]
    containers: list[_Container]
    volumes: list[dict[str, Any]]
    nodeSelector: dict[str, str]


class _ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    labels: dict[str, str]
    annotations: dict[str, str]


class PodView(TypedDict, total=False):
    """The fields of a Pod that ``mutate_pod`` reads (and the only ones the webhook decodes)."""

    metadata: _ObjectMeta
    spec: _PodSpec


@dataclass(frozen=True, slots=True)
class PodConfig:
    azure_injection: Mode = "label"
    aws_injection: Mode = "label"
    gke_node_selector: bool = False
    azure_tenant_id: str = ""
    azure_authority_host: str = names.AZURE_DEFAULT_AUTHORITY_HOST


class PodRejected(ValueError):
    """The Pod asks for something invalid (message says field, value and fix)."""


@dataclass(slots=True)
class Mutation:
    pod: Pod  # the mutated pod (the input itself when nothing changed)
    patch: Patch  # RFC 6902 ops turning the input into ``pod``


Path = tuple[str | int, ...]


class _Writer:
    """Copy-on-write edits of a pod that record, as they go, the JSON Patch that makes them.

    Only the containers on an edited path are copied; everything else stays shared with the original. A map
    or list the original lacks is added whole by one op whose value is the new object itself, so edits made
    inside it later need no op of their own.
    """

    __slots__ = ("_nodes", "ops", "original", "pod")

    def __init__(self, pod: Pod) -> None:
        self.original = pod
        self.pod = pod  # replaced by a shallow copy on the first edit
        self.ops: Patch = []
        self._nodes: dict[Path, tuple[Any, bool]] = {}  # path -> (our copy, covered by an "add" op)

    def _node(self, path: Path, empty: type[dict[str, Any]] | type[list[Any]]) -> tuple[Any, bool]:
        got = self._nodes.get(path)
        if got is not None:
            return got
        if not path:
            self.pod = dict(self.original)
            got = (self.pod, False)
        else:
            parent, covered = self._node(path[:-1], dict)
            key = path[-1]
            current = parent[key] if isinstance(key, int) else parent.get(key)
            if current is None:
                node = parent[key] = empty()
                if not covered:
                    self.ops.append({"op": "add", "path": _pointer(path), "value": node})
                got = (node, True)
            else:
                node = parent[key] = current.copy()
                got = (node, covered)
        self._nodes[path] = got
        return got

    def set(self, path: Path, key: str, value: Any) -> None:
        node, covered = self._node(path, dict)
        existed = key in node
        node[key] = value
        if not covered:
            op = "replace" if existed else "add"
            self.ops.append({"op": op, "path": _pointer(path, key), "value": value})

    def append(self, path: Path, value: Any) -> None:
        node, covered = self._node(path, list)
        node.append(value)
        if not covered:
            self.ops.append({"op": "add", "path": f"{_pointer(path)}/{len(node) - 1}", "value": value})


@functools.lru_cache(maxsize=4096)
def _pointer(path: Path, key: str | None = None) -> str:
    """JSON Pointer of ``path`` (plus ``key``); the same few paths recur on every request."""
    pointer = "".join(f"/{escape(str(p))}" for p in path)
    return pointer if key is None else f"{pointer}/{escape(key)}"


def _get(mapping: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _token_volume(name: str, audience: str, seconds: int, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": audience,
                        "expirationSeconds": seconds,
                        "path": path,
                    }
                }
            ]
        },
    }


def _inject_into_containers(
    w: _Writer,
    env: list[dict[str, str]],
    mount: dict[str, Any],
    skip: frozenset[str] = frozenset(),
) -> None:
    """Add ``env`` (by name, never overwriting) and ``mount`` to every init and regular container."""
    spec = w.original.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            if container.get("name") in skip:
                continue
            have = {e.get("name") for e in container.get("env") or []}
            missing_env = [e for e in env if e["name"] not in have]
            mounts = container.get("volumeMounts") or []
            needs_mount = not any(
                m.get("name") == mount["name"] or m.get("mountPath") == mount["mountPath"] for m in mounts
            )
            for entry in missing_env:
                w.append(("spec", kind, index, "env"), entry)
            if needs_mount:
                w.append(("spec", kind, index, "volumeMounts"), mount)


def _add_volume(w: _Writer, volume: dict[str, Any]) -> None:
    existing = _get(w.original, "spec", "volumes") or []
    if not any(v.get("name") == volume["name"] for v in existing):
        w.append(("spec", "volumes"), volume)


def _set_if_absent(w: _Writer, path: Path, current: Mapping[str, str] | None, key: str, value: str) -> None:
    if not current or key not in current:
        w.set(path, key, value)


# --- the clouds -----------------------------------------------------------------------------------


def _azure(w: _Writer, sa: Mapping[str, str], config: PodConfig) -> bool:
    labels = _get(w.original, "metadata", "labels")
    use = (labels or {}).get(names.AZURE_LABEL_USE)
    if use is not None and use != "true":
        return False  # the pod opted out explicitly
    _set_if_absent(w, ("metadata", "labels"), labels, names.AZURE_LABEL_USE, "true")
    if config.azure_injection != "full":
        return True
    pod_annotations = _get(w.original, "metadata", "annotations") or {}
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
    _inject_into_containers(w, env, {"name": volume, "mountPath": mount_path, "readOnly": True}, skip)
    _add_volume(w, _token_volume(volume, names.AZURE_TOKEN_AUDIENCE, expiration, names.AZURE_TOKEN_FILE))
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


def _aws(w: _Writer, sa: Mapping[str, str], config: PodConfig) -> bool:
    if config.aws_injection != "full":
        return True
    token_file = f"{names.AWS_TOKEN_MOUNT_PATH}/{names.AWS_TOKEN_FILE}"
    env = [
        {"name": "AWS_ROLE_ARN", "value": sa[names.AWS_ANNOTATION_ROLE_ARN]},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file},
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
    ]
    mount = {"name": names.AWS_TOKEN_VOLUME, "mountPath": names.AWS_TOKEN_MOUNT_PATH, "readOnly": True}
    _inject_into_containers(w, env, mount)
    audience = sa.get(names.AWS_ANNOTATION_AUDIENCE) or names.AWS_DEFAULT_AUDIENCE
    _add_volume(w, _token_volume(names.AWS_TOKEN_VOLUME, audience, names.AWS_TOKEN_EXPIRATION, names.AWS_TOKEN_FILE))
    return True


def _gcp(w: _Writer, sa: Mapping[str, str], config: PodConfig) -> bool:
    if config.gke_node_selector:
        current = _get(w.original, "spec", "nodeSelector")
        _set_if_absent(w, ("spec", "nodeSelector"), current, names.GCP_NODE_SELECTOR, "true")
    return True


@dataclass(frozen=True)
class Injector:
    provider: str
    trigger: str  # the ServiceAccount annotation that turns it on
    apply: Callable[[_Writer, Mapping[str, str], PodConfig], bool]


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


def mutate_pod(pod: Pod, sa_annotations: Mapping[str, str], config: PodConfig) -> Mutation:
    """The pod with the workload identity its ServiceAccount asks for. Raises PodRejected on bad input."""
    w = _Writer(pod)
    providers: tuple[str, ...] = ()
    for injector in INJECTORS:
        if sa_annotations.get(injector.trigger) and injector.apply(w, sa_annotations, config):
            providers += (injector.provider,)
    if providers:
        current = _get(pod, "metadata", "annotations")
        value = ",".join(providers)
        if (current or {}).get(names.ANNOTATION_INJECTED) != value:
            w.set(("metadata", "annotations"), names.ANNOTATION_INJECTED, value)
    return Mutation(w.pod, w.ops)
