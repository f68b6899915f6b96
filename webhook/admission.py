"""AdmissionReview decoding and encoding (admission.k8s.io v1, and v1beta1 answered in kind).

Reviews are decoded by msgspec against typed schemas: a field of the wrong type is refused with its JSON path
(``Expected `object`, got `int` - at `$.request.object.metadata```), and each endpoint decodes only what it reads.
The Pod endpoint decodes ``webhook.pods.PodView``, not the whole pod; the GitRepository endpoint the whole object.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from webhook.jsonpatch import Patch
from webhook.pods import PodView

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# Deeper objects are refused (a CRD field that preserves unknown fields lets a tenant send anything). Real
# GitRepositories nest under 10 levels; the policy's copies and diffs recurse, so a bound keeps them safe.
MAX_DEPTH = 100


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer: the HTTP layer turns it into a 400."""


T = TypeVar("T")


class GroupVersionKind(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class Request(msgspec.Struct, Generic[T], rename="camel"):
    """``AdmissionReview.request``: the fields any review reads, with ``object`` typed per endpoint."""

    uid: str = ""
    kind: GroupVersionKind = GroupVersionKind()
    operation: str = ""
    namespace: str = ""
    name: str = ""
    sub_resource: str = ""
    object: T | None = None
    old_object: T | None = None


class Review(msgspec.Struct, Generic[T], rename="camel"):
    api_version: str = ""
    kind: str = ""
    request: Request[T] | None = None


_JSON_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "array", type(None): "null"}


class _Reference(msgspec.Struct):
    name: str = ""


class _ObjectMeta(msgspec.Struct):
    """The metadata fields the policy reads, with the types the apiserver guarantees (others are not checked)."""

    name: str = ""
    namespace: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None


class _GitRepositorySpec(msgspec.Struct, rename="camel"):
    url: str = ""
    provider: str = ""
    secret_ref: _Reference | None = None
    service_account_name: str = ""


class GitRepositoryShape(msgspec.Struct):
    """What a GitRepository decoded whole must look like where the policy reads it: an apiserver never sends
    anything else (its schema and CRD validation come first), so a review that does is a 400 naming the path."""

    metadata: _ObjectMeta | None = None
    spec: _GitRepositorySpec | None = None


@dataclass(frozen=True, slots=True)
class Schema:
    """What one endpoint accepts: the resource kinds, the decoder of its reviews, and whether the whole object
    is decoded (and so must be checked for depth and for the shape of what the policy reads)."""

    kinds: tuple[str, ...]
    decoder: msgspec.json.Decoder[Review[Any]]
    whole_object: bool
    shape: type[msgspec.Struct] | None = None


def schema(kinds: tuple[str, ...], *, pod_view: bool = False, shape: type[msgspec.Struct] | None = None) -> Schema:
    decoder: msgspec.json.Decoder[Review[Any]] = msgspec.json.Decoder(
        Review[PodView] if pod_view else Review[dict[str, Any]]
    )
    return Schema(kinds, decoder, not pod_view, shape)


def too_deep(obj: Any, limit: int = MAX_DEPTH) -> str | None:
    """The JSON path (shortened) where ``obj`` first nests deeper than ``limit``, or None. Iterative, so it
    cannot itself run out of stack; depth only on the common path (a 3 MB object in ~20 ms), the path is
    worked out only for an object that fails."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return _path_deeper_than(obj, limit)
        children = node.values() if type(node) is dict else node
        depth += 1
        stack.extend((child, depth) for child in children if type(child) is dict or type(child) is list)
    return None


def _path_deeper_than(obj: Any, limit: int) -> str:
    stack: list[tuple[Any, tuple[str, ...]]] = [(obj, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            return f"$.request.object{''.join(path[:6])}...({len(path) - 6} more levels)"
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, (dict, list)):
                step = f".{str(key)[:40]}" if isinstance(node, dict) else f"[{key}]"
                stack.append((child, (*path, step)))
    return "$.request.object"


def decode(body: bytes | bytearray, accepts: Schema) -> Review[Any]:
    """The review, checked: it has a request with a uid, a kind this endpoint takes, and an object to review."""
    try:
        review = accepts.decoder.decode(body)
    except msgspec.ValidationError as err:
        message = str(err)  # "Expected `str`, got `int` - at `$.request.uid`"; no path when it is the body itself
        raise BadReview(message if " - at `" in message else f"{message} - at `$`") from None
    except msgspec.DecodeError as err:
        raise BadReview(f"body is not JSON: {err}") from None
    except RecursionError:
        raise BadReview(f"body nests deeper than {MAX_DEPTH} levels - at `$`") from None
    if review.kind != "AdmissionReview" or review.api_version not in API_VERSIONS:
        raise BadReview(f"expected kind AdmissionReview, apiVersion one of {', '.join(API_VERSIONS)}")
    request = review.request
    if request is None:
        raise BadReview("AdmissionReview has no request")
    if not request.uid:
        raise BadReview("request.uid is missing")
    if request.kind.kind not in accepts.kinds:
        got = request.kind.kind
        raise BadReview(f"request.kind.kind is {got!r}; this endpoint reviews {', '.join(accepts.kinds)}")
    obj = request.object
    if obj is None:
        if request.operation in ("CREATE", "UPDATE"):
            raise BadReview(f"request.object is missing for a {request.operation}")
    else:
        for field in ("metadata", "spec"):
            value = obj.get(field, {})
            if not isinstance(value, dict):
                got = _JSON_TYPES.get(type(value), type(value).__name__)
                raise BadReview(f"Expected `object`, got `{got}` - at `$.request.object.{field}`")
        if accepts.whole_object and (where := too_deep(obj)) is not None:
            raise BadReview(f"object nests deeper than {MAX_DEPTH} levels - at `{where}`")
    if accepts.shape is not None:
        for field, value in (("object", obj), ("oldObject", request.old_object)):
            if value is not None:
                _check_shape(value, accepts.shape, f"$.request.{field}")
    return review


def _check_shape(obj: Any, shape: type[msgspec.Struct], at: str) -> None:
    try:
        msgspec.convert(obj, shape)
    except msgspec.ValidationError as err:
        message = str(err)  # "Expected `str`, got `array` - at `$.metadata.annotations[...]`"
        raise BadReview(message.replace("- at `$", f"- at `{at}") if " - at `$" in message else message) from None


def allow(review: Review[Any], patch: Patch | None = None, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {"uid": _uid(review), "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = binascii.b2a_base64(_encode(patch), newline=False).decode()
    if warnings:
        response["warnings"] = warnings
    return _answer(review, response)


def deny(review: Review[Any], message: str, warnings: list[str] | None = None) -> bytes:
    response: dict[str, Any] = {
        "uid": _uid(review),
        "allowed": False,
        "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": message},
    }
    if warnings:
        response["warnings"] = warnings
    return _answer(review, response)


_encode = msgspec.json.Encoder().encode


def _uid(review: Review[Any]) -> str:
    return review.request.uid if review.request is not None else ""


def _answer(review: Review[Any], response: dict[str, Any]) -> bytes:
    return _encode({"apiVersion": review.api_version, "kind": "AdmissionReview", "response": response})
