"""The webhook over real TLS on a loopback port, and a client for it, for every HTTP test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.webhook import RunningWebhook, running_webhook

SERVICEACCOUNTS = {"flux-system/source-controller": {"azure.workload.identity/client-id": "0000-1"}}


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[RunningWebhook]:
    async with running_webhook(tmp_path, serviceaccounts=SERVICEACCOUNTS) as hook:
        yield hook


@pytest.fixture
async def http(webhook: RunningWebhook) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=webhook.client_ssl())
    async with aiohttp.ClientSession(webhook.url, connector=connector) as session:
        yield session
