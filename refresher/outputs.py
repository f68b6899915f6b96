"""The Secrets we write, as pure functions of (target, token, credential). A digest of the fields we own lets
the controller write only when something changed."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from common import names
from common.objects import meta
from common.times import parse_rfc3339, rfc3339
from refresher.credentials import Credential
from refresher.providers import Token
from refresher.targets import Target

OWNED_ANNOTATIONS = (names.ANNOTATION_EXPIRES_AT, names.ANNOTATION_REFRESHED_AT, names.ANNOTATION_TOKEN_KEY)


def _b64(value: str | bytes) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


def token_data(target: Target, token: Token, bearer: bool) -> dict[str, str]:
    if bearer and target.provider == names.PROVIDER_AZURE and target.kind == "GitRepository":
        return {names.KEY_BEARER_TOKEN: _b64(token.value)}
    return {names.KEY_USERNAME: _b64(token.username), names.KEY_PASSWORD: _b64(token.value)}


def token_annotations(token: Token, token_key: str) -> dict[str, str]:
    return dict(_token_annotations(token, token_key))


@functools.lru_cache(maxsize=4096)
def _token_annotations(token: Token, token_key: str) -> tuple[tuple[str, str], ...]:
    """Formatted once per token, not once per Secret (10,000 Secrets may share one token)."""
    annotations = {
        names.ANNOTATION_EXPIRES_AT: rfc3339(token.expires_at),
        names.ANNOTATION_REFRESHED_AT: rfc3339(token.issued_at),
    }
    if token_key:
        annotations[names.ANNOTATION_TOKEN_KEY] = token_key
    return tuple(annotations.items())


def held_token(obj: Mapping[str, Any]) -> tuple[str, Token] | None:
    """The token a Secret we wrote holds, with its key (``MintKey.digest``): what a new leader may adopt.
    None when anything is missing or malformed (then the token is simply minted again)."""
    annotations = meta(obj).get("annotations") or {}
    data = obj.get("data") or {}
    key, username, password = (
        annotations.get(names.ANNOTATION_TOKEN_KEY),
        data.get(names.KEY_USERNAME),
        data.get(names.KEY_PASSWORD),
    )
    if not (key and username and password):
        return None
    try:
        token = Token(
            base64.b64decode(password, validate=True).decode(),
            base64.b64decode(username, validate=True).decode(),
            parse_rfc3339(annotations.get(names.ANNOTATION_REFRESHED_AT)),
            parse_rfc3339(annotations.get(names.ANNOTATION_EXPIRES_AT)),
        )
    except (ValueError, TypeError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return (str(key), token) if token.expires_at > token.issued_at > 0 else None


def owned_secret(
    target: Target, token: Token, credential: Credential, bearer: bool, token_key: str = ""
) -> dict[str, Any]:
    """The whole output Secret of a managed GitRepository, owned by it."""
    data = token_data(target, token, bearer)
    for key, value in credential.tls.items():  # GitHub Enterprise behind a private CA, client certificates
        data[key] = _b64(value)
    secret_type = names.SECRET_TYPE_BASIC_AUTH if names.KEY_USERNAME in data else names.SECRET_TYPE_OPAQUE
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target.secret,
            "namespace": target.namespace,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, **dict(target.shard_labels)},
            "annotations": token_annotations(token, token_key),
            "ownerReferences": [
                {
                    "apiVersion": names.GITREPOSITORY_API_VERSION,
                    "kind": names.GITREPOSITORY_KIND,
                    "name": target.name,
                    "uid": target.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "type": secret_type,
        "data": data,
    }


def opt_in_apply(target: Target, token: Token, token_key: str = "") -> dict[str, Any]:
    """A server-side apply body owning only username, password and our annotations of an opted-in Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target.secret,
            "namespace": target.namespace,
            "annotations": token_annotations(token, token_key),
        },
        "data": token_data(target, token, bearer=False),
    }


def digest(body: Mapping[str, Any], data_keys: tuple[str, ...] | None = None) -> bytes:
    """A hash of the fields we own in a Secret (desired or observed): data (all, or ``data_keys``), our
    annotations, type and owner. Two Secrets with the same digest need no write. 16 bytes: one is kept per
    output Secret (twice), so its size counts at 10,000 Secrets."""
    metadata = meta(body)
    data = body.get("data") or {}
    keys = sorted(data) if data_keys is None else sorted(k for k in data_keys if k in data)
    ann = metadata.get("annotations") or {}
    owners = [(o.get("uid"), o.get("name")) for o in metadata.get("ownerReferences") or []]
    text = "\0".join(
        (
            *(f"{k}={data[k]}" for k in keys),
            *(f"{k}={ann.get(k, '')}" for k in OWNED_ANNOTATIONS),
            str(body.get("type", "")) if data_keys is None else "",
            repr(owners) if data_keys is None else "",
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


OPT_IN_KEYS = (names.KEY_USERNAME, names.KEY_PASSWORD)
