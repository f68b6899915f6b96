"""Serving TLS that follows rotated certificate files without a restart.

``load_cert_chain`` on the live SSLContext changes the certificate for every handshake after it, so the
server keeps its listening socket and open connections. Files are polled (Secret volumes are updated by an
atomic symlink swap, which inotify on the file itself would miss). A half-rotated pair (new key, old
certificate) fails to load: the old pair stays in use and the next poll tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)  # follows symlinks: a swapped ..data link changes the inode
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ReloadingTLS:
    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        self._stamps: tuple[tuple[int, int, int], ...] | None = None
        self.loaded = False
        self.reload()
        if not self.loaded:
            raise RuntimeError(f"cannot load TLS certificate {cert_file} / key {key_file}")

    def reload(self) -> bool:
        """Load the files if they changed since the last load; True when a new pair is in use."""
        try:
            stamps = (_stamp(self.cert_file), _stamp(self.key_file))
        except OSError as err:
            log.warning("tls files unreadable; keeping the current pair", extra={"error": type(err).__name__})
            return False
        if stamps == self._stamps:
            return False
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as err:
            # Typically a rotation caught half-way: keep serving the old pair, retry on the next poll.
            log.warning("tls files did not load; keeping the current pair", extra={"error": str(err)})
            return False
        if self._stamps is not None:
            log.info("tls certificate reloaded", extra={"cert_file": str(self.cert_file)})
        self._stamps = stamps
        self.loaded = True
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload()
