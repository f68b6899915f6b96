"""Certificates on disk, in the layout of a ``kubernetes.io/tls`` Secret volume."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from certs.authority import SERVING_VALIDITY, KeyPair, issue_serving, new_ca

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` in one rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_ca(directory: Path) -> KeyPair | None:
    cert, key = directory / CA_CERT, directory / CA_KEY
    if cert.exists() and key.exists():
        return KeyPair(cert.read_bytes(), key.read_bytes())
    return None


def serving_expires_within(directory: Path, margin: dt.timedelta) -> bool:
    """True when there is no serving certificate or it expires within ``margin``."""
    path = directory / TLS_CERT
    if not path.exists():
        return True
    cert = KeyPair(path.read_bytes(), b"").certificate()
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < margin


def ensure_files(
    directory: Path,
    dns_names: list[str],
    ip_addresses: list[str],
    renew_before: dt.timedelta = dt.timedelta(days=30),
    validity: dt.timedelta | None = None,
) -> KeyPair:
    """Create (or keep) a CA and a serving certificate in ``directory``; return the CA.

    The CA is reused when present so the caBundle already registered stays valid; the serving
    certificate is reissued when missing or due within ``renew_before``. The key is written before
    the certificate, and each file atomically.
    """
    ca = load_ca(directory)
    if ca is None:
        ca = new_ca()
        write_atomic(directory / CA_KEY, ca.key_pem)
        write_atomic(directory / CA_CERT, ca.cert_pem, 0o644)
    if serving_expires_within(directory, renew_before):
        serving = issue_serving(ca, dns_names, ip_addresses, validity or SERVING_VALIDITY)
        write_atomic(directory / TLS_KEY, serving.key_pem)
        write_atomic(directory / TLS_CERT, serving.cert_pem, 0o644)
    return ca
