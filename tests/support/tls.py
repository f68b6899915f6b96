"""A throwaway CA and loopback serving certificate for the local fakes and servers."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from certs.files import CA_CERT, TLS_CERT, TLS_KEY, ensure_files


@dataclass(frozen=True)
class TLSFiles:
    directory: Path
    host: str = "127.0.0.1"  # the address the servers using it listen on, and its certificate names

    @classmethod
    def create(cls, directory: Path, host: str = "127.0.0.1") -> TLSFiles:
        ensure_files(directory, ["localhost"], sorted({"127.0.0.1", host}))
        return cls(directory, host)

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_CERT

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.directory / TLS_CERT, self.directory / TLS_KEY)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))
