"""Golden Pod fixtures (tests/fixtures/pods/*.yaml): each with its expected patch, mutated pod or denial."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import cast

import jsonpatch
import msgspec
import pytest
import yaml

from webhook import admission
from webhook.injectors import PodConfig, PodRejected
from webhook.jsonpatch import diff
from webhook.podpatch import Pod
from webhook.pods import mutate_pod
from webhook.reviews import POD_REVIEWS

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
        with pytest.raises(PodRejected) as err:
            mutate_pod(as_the_webhook_decodes_it(pod), sa, config)
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

    view = as_the_webhook_decodes_it(pod)
    assert len(msgspec.json.encode(view)) < len(msgspec.json.encode(pod)), "the view leaves fields out"
    assert mutate_pod(view, sa, config).patch == patch, "the decoded view must give the patch the whole pod gives"


def as_the_webhook_decodes_it(pod: Pod) -> Pod:
    """The pod as the Pod endpoint sees it: only the fields in PodView."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": pod},
    }
    request = admission.decode(msgspec.json.encode(review), POD_REVIEWS).request
    assert request is not None
    assert request.object is not None
    return cast(Pod, request.object)
