"""What kubernetes-asyncio's generated calls return with ``_preload_content=False``, for unit tests of code
that reads raw responses (informers, leader election, events)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    body: bytes = b"{}"
    reason: str = "OK"
    lines: list[bytes] = field(default_factory=list)  # a watch stream, one JSON event per line
    fail_after_lines: BaseException | None = None  # raised once the lines are read (a dropped stream)

    @classmethod
    def of(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(obj).encode())

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        return None

    @property
    def content(self) -> AsyncIterator[bytes]:
        async def stream() -> AsyncIterator[bytes]:
            for line in self.lines:
                yield line
            if self.fail_after_lines is not None:
                raise self.fail_after_lines

        return stream()
