"""Copy-on-write editing of a Pod that records its own JSON Patch, and the edits every injector makes (env,
mounts, volumes, map entries), each adding only what is missing. Pure, no IO."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from webhook.jsonpatch import Patch, escape

Pod = dict[str, Any]
Path = tuple[str | int, ...]
Container = dict[str, Any]


class PodWriter:
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
                    self.ops.append({"op": "add", "path": pointer(path), "value": node})
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
            self.ops.append({"op": op, "path": pointer(path, key), "value": value})

    def replace_item(self, path: Path, index: int, value: Any) -> None:
        """Replace element ``index`` of the list at ``path`` (which the original has)."""
        node, covered = self._node(path, list)
        node[index] = value
        if not covered:
            self.ops.append({"op": "replace", "path": f"{pointer(path)}/{index}", "value": value})

    def insert(self, path: Path, index: int, value: Any) -> None:
        """Insert ``value`` at ``index`` of the list at ``path`` (which the original has)."""
        node, covered = self._node(path, list)
        node.insert(index, value)
        if not covered:
            self.ops.append({"op": "add", "path": f"{pointer(path)}/{index}", "value": value})

    def append(self, path: Path, value: Any) -> None:
        node, covered = self._node(path, list)
        node.append(value)
        if not covered:
            self.ops.append({"op": "add", "path": f"{pointer(path)}/{len(node) - 1}", "value": value})


@functools.lru_cache(maxsize=4096)
def pointer(path: Path, key: str | None = None) -> str:
    """JSON Pointer of ``path`` (plus ``key``); the same few paths recur on every request."""
    pointer = "".join(f"/{escape(str(p))}" for p in path)
    return pointer if key is None else f"{pointer}/{escape(key)}"


def get(mapping: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def token_volume(name: str, audience: str, seconds: int, path: str) -> dict[str, Any]:
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


def containers(w: PodWriter, skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, int, Container, set[str]]]:
    """Every init and regular container not named in ``skip``: (list, index, the container, its env names)."""
    spec = w.original.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            if container.get("name") not in skip:
                yield kind, index, container, {e.get("name") for e in container.get("env") or []}


def add_volume(w: PodWriter, volume: dict[str, Any], first: bool = False) -> None:
    """Add ``volume`` unless one of its name exists (``first``: at the head of the list)."""
    existing = get(w.original, "spec", "volumes") or []
    if any(v.get("name") == volume["name"] for v in existing):
        return
    if first and existing:
        w.insert(("spec", "volumes"), 0, volume)
    else:
        w.append(("spec", "volumes"), volume)


def set_if_absent(w: PodWriter, path: Path, current: Mapping[str, str] | None, key: str, value: str) -> None:
    if not current or key not in current:
        w.set(path, key, value)


def upsert_mount(w: PodWriter, kind: str, index: int, container: Mapping[str, Any], mount: dict[str, Any]) -> None:
    """The container mounts ``mount``: a mount of the same volume name is made exactly it, else it is added."""
    for i, existing in enumerate(container.get("volumeMounts") or []):
        if existing.get("name") == mount["name"]:
            if existing != mount:
                w.replace_item(("spec", kind, index, "volumeMounts"), i, mount)
            return
    w.append(("spec", kind, index, "volumeMounts"), mount)


def upsert_volume(w: PodWriter, volume: dict[str, Any]) -> None:
    """The pod has ``volume``: one of the same name is made exactly it, else it is added."""
    for i, existing in enumerate(get(w.original, "spec", "volumes") or []):
        if existing.get("name") == volume["name"]:
            if existing != volume:
                w.replace_item(("spec", "volumes"), i, volume)
            return
    w.append(("spec", "volumes"), volume)
