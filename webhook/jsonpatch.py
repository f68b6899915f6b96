"""RFC 6902 patch as a diff of two whole JSON documents.

Mutations in this package copy only what they change and share every other subtree with the original, so
``diff`` skips shared subtrees by identity and costs what the change costs, not what the object weighs.
"""

from __future__ import annotations

from typing import Any

Patch = list[dict[str, Any]]


def escape(token: str) -> str:
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


def diff(old: Any, new: Any, path: str = "") -> Patch:
    """Operations that turn ``old`` into ``new`` (applying them gives exactly ``new``)."""
    if old is new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: Patch = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{escape(key)}", "value": value})
            elif old[key] is not value:
                ops.extend(diff(old[key], value, f"{path}/{escape(key)}"))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        common = min(len(old), len(new))
        if len(new) >= len(old) and all(old[i] is new[i] or old[i] == new[i] for i in range(common)):
            return [{"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in range(common, len(new))]
        if len(new) == len(old):
            return [op for i in range(common) for op in diff(old[i], new[i], f"{path}/{i}")]
        return [{"op": "replace", "path": path, "value": new}]
    if type(old) is type(new) and old == new:
        return []
    return [{"op": "replace", "path": path, "value": new}]
