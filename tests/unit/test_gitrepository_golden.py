"""Golden GitRepository fixtures (tests/fixtures/gitrepositories/*.yaml), each with its expected outcome."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from common.gitrepository import PolicyConfig, SecretKeys, SecretLookup
from common.translation import admit_gitrepository
from webhook.jsonpatch import diff

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "gitrepositories").glob("*.yaml"))


def _keys(raw: Any) -> SecretKeys:
    if raw is None:
        return SecretLookup.UNKNOWN
    if raw == "missing":
        return SecretLookup.MISSING
    return frozenset(raw)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    config = PolicyConfig(**{k: frozenset(v) for k, v in (case.get("config") or {}).items()})
    obj, expect = case["object"], case["expect"]
    keys = _keys(case.get("secret_keys"))
    pristine = copy.deepcopy(obj)

    review, stored = admit_gitrepository(obj, config, keys)

    assert obj == pristine, "the input object must not be modified"
    assert review.warnings == expect.get("warnings", [])
    assert all(len(w) <= 120 for w in review.warnings)
    if "denied" in expect:
        assert not review.allowed
        assert review.message() == expect["denied"]
        return
    assert review.allowed, review.message()
    assert stored == expect["stored"]
    patch = diff(obj, stored)
    assert jsonpatch.apply_patch(obj, patch) == stored, "applying our patch gives exactly the stored object"
    assert jsonpatch.apply_patch(obj, jsonpatch.make_patch(obj, stored)) == stored
    again, restored = admit_gitrepository(stored, config, keys)
    assert again.allowed
    assert diff(stored, restored) == [], "a second pass yields an empty patch"
