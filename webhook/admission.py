"""AdmissionReview decoding and encoding (admission.k8s.io v1, and v1beta1 answered in kind)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.jsonpatch import Patch

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer: the HTTP layer turns it into a 400."""


@dataclass(slots=True)
class Request:
    api_version: str
    uid: str
    kind: str  # request.kind.kind, e.g. "Pod"
    group: str
    version: str
    operation: str
    namespace: str
    name: str
    sub_resource: str
    dry_run: bool
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None


def decode(body: bytes, expected_kinds: tuple[str, ...]) -> Request:
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadReview(f"body is not JSON: {err}") from None
    if not isinstance(review, dict):
        raise BadReview("body is not a JSON object")
    api_version = review.get("apiVersion")
    if review.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise BadReview(f"expected kind AdmissionReview, apiVersion one of {', '.join(API_VERSIONS)}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing")
    gvk = request.get("kind")
    if not isinstance(gvk, dict) or gvk.get("kind") not in expected_kinds:
        got = gvk.get("kind") if isinstance(gvk, dict) else gvk
        raise BadReview(f"request.kind.kind is {got!r}; this endpoint reviews {', '.join(expected_kinds)}")
    operation = request.get("operation")
    obj, old = request.get("object"), request.get("oldObject")
    if obj is not None and not isinstance(obj, dict):
        raise BadReview("request.object is not an object")
    if old is not None and not isinstance(old, dict):
        raise BadReview("request.oldObject is not an object")
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise BadReview(f"request.object is missing for a {operation}")
    for field in ("metadata", "spec"):
        if obj is not None and not isinstance(obj.get(field, {}), dict):
            raise BadReview(f"request.object.{field} is not an object")
    return Request(
        api_version=api_version,
        uid=uid,
        kind=gvk["kind"],
        group=str(gvk.get("group") or ""),
        version=str(gvk.get("version") or ""),
        operation=str(operation or ""),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        sub_resource=str(request.get("subResource") or ""),
        dry_run=bool(request.get("dryRun")),
        object=obj,
        old_object=old,
    )


def allow(request: Request, patch: Patch | None = None, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {"uid": request.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        response["warnings"] = warnings
    return _encode(request, response)


def deny(request: Request, message: str, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {
        "uid": request.uid,
        "allowed": False,
        "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": message},
    }
    if warnings:
        response["warnings"] = warnings
    return _encode(request, response)


def _encode(request: Request, response: dict[str, Any]) -> bytes:
    review = {"apiVersion": request.api_version, "kind": "AdmissionReview", "response": response}
    return orjson.dumps(review)
