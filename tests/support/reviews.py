"""AdmissionReview bodies as the apiserver sends them, for the HTTP tests and the webhook benchmark."""

from __future__ import annotations

from typing import Any


def gitrepository_review(
    spec: dict[str, Any], uid: str = "b1c2", metadata: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A CREATE of GitRepository apps/podinfo with ``spec``; ``overrides`` replace request fields."""
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository"},
            "resource": {"group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories"},
            "namespace": "apps",
            "name": "podinfo",
            "operation": "CREATE",
            "object": {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": metadata or {"name": "podinfo", "namespace": "apps"},
                "spec": spec,
            },
        },
    }
    review["request"].update(overrides)
    return review
