"""Reading plain-dict Kubernetes objects: their key and metadata. Pure, no imports beyond the standard library."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata`` of a plain-dict object, empty when absent or malformed."""
    found = obj.get("metadata")
    return found if isinstance(found, Mapping) else {}


def key_of(obj: Mapping[str, Any]) -> Key:
    m = meta(obj)
    return (str(m.get("namespace", "")), str(m.get("name", "")))
