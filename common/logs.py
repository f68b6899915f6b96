"""JSON log lines on stderr, one object per record, for both processes.

Fields passed through ``extra={...}`` become top-level keys. Callers log names, namespaces, reasons and
fingerprints; never a token, a key or a Secret value (tests grep captured logs for that).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["error"] = str(record.exc_info[1])
        return json.dumps(entry, default=str)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries()


def quiet_libraries() -> None:
    """Cap libraries that log too much, or log what must never be logged, whatever the level asked for."""
    # kubernetes_asyncio logs every response body at DEBUG: Secret values included.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.INFO)
    # azure-identity / msal log request details at DEBUG; google-auth too.
    for name in ("azure", "msal", "google", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO)
    # aiohttp's access log would repeat every admission request; our own metrics count them.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
