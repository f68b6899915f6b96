"""Golden Pod fixtures (tests/fixtures/pods/*.yaml): each with its expected patch, mutated pod or denial."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonpatch
import pytest
import yaml

from webhook.jsonpatch import diff
from webhook.pods import PodConfig, PodRejected, mutate_pod

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "pods").glob("*.yaml"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    config = PodConfig(**(case.get("config") or {}))
    sa = case["serviceAccount"]["annotations"]
    pod, expect = case["pod"], case["expect"]
    pristine = copy.deepcopy(pod)

    if "denied" in expect:
        with pytest.raises(PodRejected) as err:
            mutate_pod(pod, sa, config)
        assert str(err.value) == expect["denied"]
        return
    mutation = mutate_pod(pod, sa, config)
    mutated, patch = mutation.pod, mutation.patch
    assert pod == pristine, "the input pod must not be modified"
    assert sorted(patch, key=str) == sorted(diff(pod, mutated), key=str), "recorded ops == diff of the objects"
    if "patch" in expect:
        assert patch == expect["patch"]
    if "mutated" in expect:
        assert mutated == expect["mutated"]
    assert jsonpatch.apply_patch(pod, patch) == mutated, "applying the patch gives exactly the mutated pod"
    assert jsonpatch.apply_patch(pod, jsonpatch.make_patch(pod, mutated)) == mutated
    again = mutate_pod(mutated, sa, config)
    assert again.patch == [], "a second pass yields an empty patch"
    assert diff(mutated, again.pod) == []
