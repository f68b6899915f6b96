"""Sharding the way Flux shards source-controller: ``--watch-label-selector``.

A shard serves exactly the GitRepositories and opted-in Secrets its selector matches (Flux's convention is the
``sharding.fluxcd.io/key`` label: ``sharding.fluxcd.io/key=shard1`` on a shard, ``!sharding.fluxcd.io/key`` on
the main instance), and elects its leader on a Lease of its own. The output Secret of a GitRepository carries
the GitRepository's values of the labels the selector names, so each shard watches only its own outputs; a
GitRepository moved to another shard (its label changed) has its Secret adopted there (same owner).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

# One requirement of a Kubernetes label selector: key, !key, key=v, key==v, key!=v, key in (a,b), key notin (a,b).
_KEY = r"(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"^\s*(?:!\s*(?P<absent>{_KEY})|(?P<key>{_KEY})\s*(?:(?:==|=|!=)\s*{_VALUE}"
    rf"|\s(?:in|notin)\s*\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\))?)\s*$"
)


def _requirements(selector: str) -> list[str]:
    """Split on the commas that separate requirements (not those inside ``in (a, b)``)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def selector_keys(selector: str) -> tuple[str, ...]:
    """The label keys ``selector`` names; ValueError (saying which requirement) when it is not a label selector."""
    if not selector.strip():
        return ()
    keys: list[str] = []
    for requirement in _requirements(selector):
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise ValueError(
                f'--watch-label-selector: Invalid value: "{selector}": "{requirement.strip()}" is not a label '
                "requirement (key, !key, key=value, key!=value, key in (a,b), key notin (a,b))"
            )
        key = match.group("absent") or match.group("key")
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def shard_labels(labels: Mapping[str, str], keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The labels of an object that decide its shard, to be carried by what we write for it."""
    return tuple((k, str(labels[k])) for k in keys if k in labels)


def combined(selector: str, extra: str) -> str:
    """Both selectors at once (a label selector's requirements are ANDed)."""
    return ",".join(s for s in (extra, selector.strip()) if s)


def lease_name(base: str, selector: str) -> str:
    """A shard's own Lease: the default name suffixed with a digest of its selector (shards never share one)."""
    if not selector.strip():
        return base
    return f"{base}-{hashlib.sha256(selector.strip().encode()).hexdigest()[:10]}"
