"""Workload-identity injection into Pods, driven by the Pod's ServiceAccount annotations. Pure, no IO.

One ``Injector`` per cloud, each a row of ``INJECTORS``: it fires when the ServiceAccount carries its trigger
annotation. In label mode it adds what that cloud's own webhook keys on; in full mode it adds what that
webhook would add (env, projected token volume and mount), never overwriting what a container already sets.

``mutate_pod`` never modifies its input: it copies the parts it changes and shares the rest, so
``webhook.jsonpatch.diff(pod, mutated)`` is cheap and exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from common import names

Mode = Literal["label", "full"]
Pod = dict[str, Any]


@dataclass(frozen=True)
class PodConfig:
    azure_injection: Mode = "label"
    aws_injection: Mode = "label"
    gke_node_selector: bool = False
    azure_tenant_id: str = ""
    azure_authority_host: str = names.AZURE_DEFAULT_AUTHORITY_HOST


class PodRejected(ValueError):
    """The Pod asks for something invalid (message says field, value and fix)."""


@dataclass(frozen=True)
class Mutation:
    pod: Pod  # the mutated pod (the input itself when nothing changed)
    providers: tuple[str, ...]


class _Writer:
    """Copy-on-write access to the few paths of a pod that injectors touch."""

    def __init__(self, pod: Pod) -> None:
        self.original = pod
        self.pod: Pod = dict(pod)
        self._copied: set[str] = set()

    def _own(self, parent: dict[str, Any], key: str, tag: str, default: Any) -> Any:
        if tag not in self._copied:
            value = parent.get(key)
            parent[key] = (
                default if value is None else (dict(value) if isinstance(value, dict) else list(value))
            )
            self._copied.add(tag)
        return parent[key]

    def metadata(self) -> dict[str, Any]:
        result: dict[str, Any] = self._own(self.pod, "metadata", "m", {})
        return result

    def labels(self) -> dict[str, str]:
        result: dict[str, str] = self._own(self.metadata(), "labels", "m.l", {})
        return result

    def annotations(self) -> dict[str, str]:
        result: dict[str, str] = self._own(self.metadata(), "annotations", "m.a", {})
        return result

    def spec(self) -> dict[str, Any]:
        result: dict[str, Any] = self._own(self.pod, "spec", "s", {})
        return result

    def node_selector(self) -> dict[str, str]:
        result: dict[str, str] = self._own(self.spec(), "nodeSelector", "s.ns", {})
        return result

    def volumes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._own(self.spec(), "volumes", "s.v", [])
        return result

    def container(self, kind: str, index: int) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self._own(self.spec(), kind, f"s.{kind}", [])
        tag = f"s.{kind}.{index}"
        if tag not in self._copied:
            containers[index] = dict(containers[index])
            self._copied.add(tag)
        return containers[index]

    def container_list(self, container: dict[str, Any], key: str, kind: str, index: int) -> list[Any]:
        result: list[Any] = self._own(container, key, f"s.{kind}.{index}.{key}", [])
        return result


def _get(mapping: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = mapping
    for key in path:
        if not isinstance(value, Mapping):
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
            if not missing_env and not needs_mount:
                continue
            target = w.container(kind, index)
            if missing_env:
                w.container_list(target, "env", kind, index).extend(missing_env)
            if needs_mount:
                w.container_list(target, "volumeMounts", kind, index).append(mount)


def _add_volume(w: _Writer, volume: dict[str, Any]) -> None:
    existing = _get(w.original, "spec", "volumes") or []
    if not any(v.get("name") == volume["name"] for v in existing):
        w.volumes().append(volume)


def _set_if_absent(
    target: Callable[[], dict[str, str]], current: Mapping[str, str] | None, key: str, value: str
) -> None:
    if not current or key not in current:
        target()[key] = value


# --- the clouds -----------------------------------------------------------------------------------


def _azure(w: _Writer, sa: Mapping[str, str], config: PodConfig) -> bool:
    labels = _get(w.original, "metadata", "labels")
    use = (labels or {}).get(names.AZURE_LABEL_USE)
    if use is not None and use != "true":
        return False  # the pod opted out explicitly
    _set_if_absent(w.labels, labels, names.AZURE_LABEL_USE, "true")
    if config.azure_injection != "full":
        return True
    pod_annotations = _get(w.original, "metadata", "annotations") or {}
    expiration = _azure_token_expiration(pod_annotations, sa)
    skip = frozenset(
        s.strip()
        for s in (pod_annotations.get(names.AZURE_ANNOTATION_SKIP_CONTAINERS) or "").split(";")
        if s.strip()
    )
    env = [{"name": "AZURE_CLIENT_ID", "value": sa[names.AZURE_ANNOTATION_CLIENT_ID]}]
    tenant = sa.get(names.AZURE_ANNOTATION_TENANT_ID) or config.azure_tenant_id
    if tenant:
        env.append({"name": "AZURE_TENANT_ID", "value": tenant})
    env += [
        {
            "name": "AZURE_FEDERATED_TOKEN_FILE",
            "value": f"{names.AZURE_TOKEN_MOUNT_PATH}/{names.AZURE_TOKEN_FILE}",
        },
        {"name": "AZURE_AUTHORITY_HOST", "value": config.azure_authority_host},
    ]
    mount = {"name": names.AZURE_TOKEN_VOLUME, "mountPath": names.AZURE_TOKEN_MOUNT_PATH, "readOnly": True}
    _inject_into_containers(w, env, mount, skip)
    _add_volume(
        w,
        _token_volume(
            names.AZURE_TOKEN_VOLUME, names.AZURE_TOKEN_AUDIENCE, expiration, names.AZURE_TOKEN_FILE
        ),
    )
    return True


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
    _add_volume(
        w, _token_volume(names.AWS_TOKEN_VOLUME, audience, names.AWS_TOKEN_EXPIRATION, names.AWS_TOKEN_FILE)
    )
    return True


def _gcp(w: _Writer, sa: Mapping[str, str], config: PodConfig) -> bool:
    if config.gke_node_selector:
        current = _get(w.original, "spec", "nodeSelector")
        _set_if_absent(w.node_selector, current, names.GCP_NODE_SELECTOR, "true")
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
    triggered = [i for i in INJECTORS if sa_annotations.get(i.trigger)]
    if not triggered:
        return Mutation(pod, ())
    w = _Writer(pod)
    providers = tuple(i.provider for i in triggered if i.apply(w, sa_annotations, config))
    if providers:
        current = _get(pod, "metadata", "annotations")
        value = ",".join(providers)
        if (current or {}).get(names.ANNOTATION_INJECTED) != value:
            w.annotations()[names.ANNOTATION_INJECTED] = value
    if not w._copied:
        return Mutation(pod, providers)
    return Mutation(w.pod, providers)
