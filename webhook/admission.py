"""AdmissionReview decoding and encoding (admission.k8s.io v1, and v1beta1 answered in kind).

Reviews are decoded by msgspec against typed schemas: a field of the wrong type is refused with its JSON path
(``Expected `object`, got `int` - at `$.request.object.metadata```), and each endpoint decodes only what it reads.
The Pod endpoint decodes ``webhook.pods.PodView``, not the whole pod; the GitRepository endpoint the whole object.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import msgspec

from webhook.jsonpatch import Patch
from webhook.pods import PodView

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer: the HTTP layer turns it into a 400."""


class _GroupVersionKind(TypedDict, total=False):
    group: str
    version: str
    kind: str


class _RequestFields(TypedDict, total=False):
    uid: str
    kind: _GroupVersionKind
    operation: str
    namespace: str
    name: str
    subResource: str


class _ObjectRequest(_RequestFields, total=False):
    object: dict[str, Any] | None


class _PodRequest(_RequestFields, total=False):
    object: PodView | None


class _ObjectReview(TypedDict, total=False):
    apiVersion: str
    kind: str
    request: _ObjectRequest


class _PodReview(TypedDict, total=False):
    apiVersion: str
    kind: str
    request: _PodRequest


_JSON_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "array", type(None): "null"}


@dataclass(frozen=True, slots=True)
class Schema:
    """What one endpoint accepts: the resource kinds, and the decoder of its reviews."""

    kinds: tuple[str, ...]
    decoder: msgspec.json.Decoder[Any]


def schema(kinds: tuple[str, ...], *, pod_view: bool = False) -> Schema:
    return Schema(kinds, msgspec.json.Decoder(_PodReview if pod_view else _ObjectReview))


@dataclass(slots=True)
class Request:
    api_version: str
    uid: str
    kind: str  # request.kind.kind, e.g. "Pod"
    operation: str
    namespace: str
    name: str
    sub_resource: str
    object: dict[str, Any] | None


def decode(body: bytes, accepts: Schema) -> Request:
    try:
        review = cast(_ObjectReview, accepts.decoder.decode(body))
    except msgspec.ValidationError as err:
        message = str(err)  # "Expected `str`, got `int` - at `$.request.uid`"; no path when it is the body itself
        raise BadReview(message if " - at `" in message else f"{message} - at `$`") from None
    except msgspec.DecodeError as err:
        raise BadReview(f"body is not JSON: {err}") from None
    api_version = review.get("apiVersion", "")
    if review.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise BadReview(f"expected kind AdmissionReview, apiVersion one of {', '.join(API_VERSIONS)}")
    request = review.get("request")
    if request is None:
        raise BadReview("AdmissionReview has no request")
    uid = request.get("uid")
    if not uid:
        raise BadReview("request.uid is missing")
    kind = request.get("kind", {}).get("kind", "")
    if kind not in accepts.kinds:
        raise BadReview(f"request.kind.kind is {kind!r}; this endpoint reviews {', '.join(accepts.kinds)}")
    operation = request.get("operation", "")
    obj = request.get("object")
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise BadReview(f"request.object is missing for a {operation}")
    if obj is not None:
        for field in ("metadata", "spec"):
            value = obj.get(field, {})
            if not isinstance(value, dict):
                got = _JSON_TYPES.get(type(value), type(value).__name__)
                raise BadReview(f"Expected `object`, got `{got}` - at `$.request.object.{field}`")
    return Request(
        api_version=api_version,
        uid=uid,
        kind=kind,
        operation=operation,
        namespace=request.get("namespace", ""),
        name=request.get("name", ""),
        sub_resource=request.get("subResource", ""),
        object=obj,
    )


def allow(request: Request, patch: Patch | None = None, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {"uid": request.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(_encode(patch)).decode()
    if warnings:
        response["warnings"] = warnings
    return _review(request, response)


def deny(request: Request, message: str, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {
        "uid": request.uid,
        "allowed": False,
        "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": message},
    }
    if warnings:
        response["warnings"] = warnings
    return _review(request, response)


_encode = msgspec.json.Encoder().encode


def _review(request: Request, response: dict[str, Any]) -> bytes:
    return _encode({"apiVersion": request.api_version, "kind": "AdmissionReview", "response": response})
