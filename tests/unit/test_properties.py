"""Properties of the webhook's pure cores over generated input (hypothesis): decoding raises only the typed 400,
reviewing any decodable review never raises, and a second pass over the mutated object is empty. The same checks
run coverage-guided under atheris in ``make fuzz`` (tests/support/fuzzing.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import names
from tests.support.fuzzing import review_gitrepository_body, review_pod_body

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
names_ = st.sampled_from(["manager", "sidecar", "init", "", "a" * 70]) | st.text(max_size=12)


def maybe(well_typed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes anything at all."""
    return st.one_of(well_typed, well_typed, well_typed, json_values)


env_vars = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"name": maybe(st.sampled_from(["AZURE_CLIENT_ID", "AWS_ROLE_ARN", "AZURE_FEDERATED_TOKEN_FILE", "X"]))},
            optional={"value": maybe(st.text(max_size=20))},
        )
    ),
    max_size=4,
)
mounts = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"name": maybe(names_), "mountPath": maybe(st.sampled_from(["/var/run/secrets/azure/wi", "/x"]))}
        )
    ),
    max_size=3,
)
containers = st.lists(
    maybe(
        st.fixed_dictionaries({"name": maybe(names_)}, optional={"env": maybe(env_vars), "volumeMounts": maybe(mounts)})
    ),
    max_size=3,
)
annotation_keys = st.sampled_from(
    [
        names.AZURE_ANNOTATION_SKIP_CONTAINERS,
        names.AZURE_ANNOTATION_TOKEN_EXPIRATION,
        names.ANNOTATION_INJECTED,
        "azure.workload.identity/use",
        "other",
    ]
)
pods = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.just("Pod"),
        "metadata": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": maybe(names_),
                    "labels": maybe(st.dictionaries(annotation_keys, maybe(st.text(max_size=10)), max_size=3)),
                    "annotations": maybe(st.dictionaries(annotation_keys, maybe(st.text(max_size=30)), max_size=3)),
                },
            )
        ),
        "spec": maybe(
            st.fixed_dictionaries(
                {"containers": maybe(containers)},
                optional={
                    "initContainers": maybe(containers),
                    "serviceAccountName": maybe(names_),
                    "volumes": maybe(st.lists(maybe(st.fixed_dictionaries({"name": maybe(names_)})), max_size=3)),
                    "nodeSelector": maybe(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2)),
                },
            )
        ),
    }
)
gitrepositories = st.fixed_dictionaries(
    {
        "apiVersion": st.just("source.toolkit.fluxcd.io/v1"),
        "kind": st.just("GitRepository"),
        "metadata": maybe(
            st.fixed_dictionaries(
                {"name": maybe(names_)},
                optional={
                    "annotations": maybe(
                        st.dictionaries(
                            st.sampled_from(
                                [
                                    names.ANNOTATION_PROVIDER,
                                    names.ANNOTATION_CREDENTIALS_SECRET,
                                    names.ANNOTATION_SERVICE_ACCOUNT,
                                    names.ANNOTATION_GITHUB_PERMISSIONS,
                                    "x",
                                ]
                            ),
                            maybe(st.text(max_size=20)),
                            max_size=3,
                        )
                    ),
                    "finalizers": maybe(st.lists(st.text(max_size=10), max_size=2)),
                },
            )
        ),
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": maybe(
                        st.sampled_from(["https://github.com/acme/app", "ssh://git@github.com/a/b", "http://x", ""])
                        | st.text(max_size=30)
                    ),
                    "provider": maybe(st.sampled_from([*names.ALLOWED_PROVIDERS, "githbu", ""])),
                    "secretRef": maybe(st.fixed_dictionaries({"name": maybe(names_)})),
                    "serviceAccountName": maybe(names_),
                    "interval": maybe(st.sampled_from(["1m", "10s", "bogus"])),
                },
            )
        ),
    }
)


def envelope(kind: str, obj: Any, operation: Any, old: Any = None) -> bytes:
    group = "" if kind == "Pod" else "source.toolkit.fluxcd.io"
    request: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": group, "version": "v1", "kind": kind},
        "namespace": "apps",
        "name": "x",
        "operation": operation,
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


operations = st.sampled_from(["CREATE", "UPDATE"]) | st.text(max_size=8)


@SETTINGS
@given(st.binary(max_size=300))
async def test_any_bytes_are_answered_or_refused_with_a_400(body: bytes) -> None:
    assert await review_pod_body(body) in {"400", "denied", "allowed", "patched", "skipped"}
    assert await review_gitrepository_body(body) in {"400", "denied", "allowed", "patched", "skipped"}


@SETTINGS
@given(json_values)
async def test_any_json_is_answered_or_refused_with_a_400(value: Any) -> None:
    body = json.dumps(value).encode()
    assert await review_pod_body(body) in {"400", "denied", "allowed", "patched", "skipped"}
    assert await review_gitrepository_body(body) in {"400", "denied", "allowed", "patched", "skipped"}


@SETTINGS
@given(pods, operations)
async def test_any_decodable_pod_review_is_answered_and_a_second_pass_is_empty(pod: Any, operation: str) -> None:
    assert await review_pod_body(envelope("Pod", pod, operation)) in {"400", "denied", "allowed", "patched", "skipped"}


@SETTINGS
@given(gitrepositories, operations, st.none() | gitrepositories)
async def test_any_decodable_gitrepository_review_is_answered_and_a_second_pass_is_empty(
    obj: Any, operation: str, old: Any
) -> None:
    body = envelope("GitRepository", obj, operation, old)
    assert await review_gitrepository_body(body) in {"400", "denied", "allowed", "patched", "skipped"}


async def test_an_empty_provider_annotation_kept_across_an_update_is_answered() -> None:
    """Found by hypothesis: an UPDATE whose old and new objects both carry an empty provider annotation widened
    the policy with "" and failed (a 500), an UPDATE any tenant can send. It is a denial naming the annotation."""
    obj = {"metadata": {"name": "manager", "annotations": {"flux-passwordless.io/provider": ""}}, "spec": {}}
    body = envelope("GitRepository", obj, "UPDATE", obj)
    assert await review_gitrepository_body(body) == "denied"


def test_the_properties_see_every_outcome() -> None:
    """The generators reach the interesting answers, not only 400s (a property that only ever sees 400s checks
    nothing)."""
    import asyncio

    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "manager"}]}}
    assert asyncio.run(review_pod_body(envelope("Pod", pod, "CREATE"))) == "patched"
    spec: dict[str, Any] = {"url": "https://github.com/acme/app", "provider": "github"}
    repo = {"metadata": {"name": "r"}, "spec": spec}
    assert asyncio.run(review_gitrepository_body(envelope("GitRepository", repo, "CREATE"))) == "denied"
    spec["secretRef"] = {"name": "app"}
    assert asyncio.run(review_gitrepository_body(envelope("GitRepository", repo, "CREATE"))) == "patched"
