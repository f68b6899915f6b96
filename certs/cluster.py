"""Certificates kept in a ``kubernetes.io/tls`` Secret, and the caBundle patched into our webhook config."""

from __future__ import annotations

import base64
import datetime as dt
import logging

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from certs.authority import KeyPair, issue_serving, new_ca
from common import names

log = logging.getLogger(__name__)

CA_KEY_FIELD = "ca.key"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


async def ensure_secret(
    api: client.ApiClient,
    namespace: str,
    secret: str,
    dns_names: list[str],
    renew_before: dt.timedelta = dt.timedelta(days=30),
) -> bytes:
    """Create the TLS Secret, or renew its serving certificate when due; return the CA certificate (PEM).

    Replicas racing at start converge: a 409 on create means another won, and its Secret is read back.
    """
    core = client.CoreV1Api(api)
    for _ in range(3):
        try:
            current = await core.read_namespaced_secret(secret, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            current = None
        data = (current.data or {}) if current else {}
        ca = KeyPair(_unb64(data.get("ca.crt")), _unb64(data.get(CA_KEY_FIELD)))
        cert_pem = _unb64(data.get("tls.crt"))
        if ca.cert_pem and ca.key_pem and cert_pem:
            expires = KeyPair(cert_pem, b"").certificate().not_valid_after_utc
            if expires - dt.datetime.now(dt.UTC) > renew_before:
                return ca.cert_pem
        if not (ca.cert_pem and ca.key_pem):
            ca = new_ca()
        serving = issue_serving(ca, dns_names)
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=secret,
                namespace=namespace,
                labels={names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE},
                resource_version=current.metadata.resource_version if current else None,
            ),
            type="kubernetes.io/tls",
            data={
                "tls.crt": _b64(serving.cert_pem),
                "tls.key": _b64(serving.key_pem),
                "ca.crt": _b64(ca.cert_pem),
                CA_KEY_FIELD: _b64(ca.key_pem),
            },
        )
        try:
            if current is None:
                await core.create_namespaced_secret(namespace, body)
            else:
                await core.replace_namespaced_secret(secret, namespace, body)
        except ApiException as err:
            if err.status == 409:
                continue  # someone else wrote it first: read theirs
            raise
        log.info("tls secret written", extra={"namespace": namespace, "secret": secret})
        return ca.cert_pem
    raise RuntimeError(f"could not settle Secret {namespace}/{secret} after 3 attempts")


async def inject_ca_bundle(api: client.ApiClient, webhook_configuration: str, ca_pem: bytes) -> int:
    """Set ``clientConfig.caBundle`` on every webhook of the MutatingWebhookConfiguration; returns how many
    changed."""
    admission = client.AdmissionregistrationV1Api(api)
    current = await admission.read_mutating_webhook_configuration(webhook_configuration)
    bundle = _b64(ca_pem)
    patch = []
    for index, hook in enumerate(current.webhooks or []):
        if hook.client_config.ca_bundle != bundle:
            patch.append(
                {
                    "op": "replace" if hook.client_config.ca_bundle else "add",
                    "path": f"/webhooks/{index}/clientConfig/caBundle",
                    "value": bundle,
                }
            )
    if patch:
        await admission.patch_mutating_webhook_configuration(webhook_configuration, patch)
        log.info("caBundle injected", extra={"webhookconfiguration": webhook_configuration, "webhooks": len(patch)})
    return len(patch)
