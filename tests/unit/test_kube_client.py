"""The API client: aiohttp's per-request environment lookups (proxy variables, ~/.netrc read in a thread) are
skipped only where the environment configures neither; a proxy or a netrc file keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.kube import PROXY_VARIABLES, api_client


def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


async def trusts_environment(tmp_path: Path) -> bool:
    api = await api_client(kubeconfig(tmp_path))
    try:
        return bool(api.rest_client.pool_manager.trust_env)
    finally:
        await api.close()


async def test_no_proxy_and_no_netrc_skips_the_lookups(bare_environment: Path, tmp_path: Path) -> None:
    assert await trusts_environment(tmp_path) is False


async def test_a_proxy_variable_keeps_them(
    bare_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert await trusts_environment(tmp_path) is True


async def test_a_netrc_file_keeps_them(bare_environment: Path, tmp_path: Path) -> None:
    (bare_environment / ".netrc").write_text("machine example.test login a password b\n")
    assert await trusts_environment(tmp_path) is True
