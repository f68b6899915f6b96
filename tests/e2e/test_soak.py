"""The soak benchmark's short version (`make soak` runs it for 10 minutes): every kind of fault once, about
10 s apart, against two refresher replicas on a real control plane; no Secret may hold a dead token for a
single checked second, no foreign key may be lost, no token re-minted while still good."""

from __future__ import annotations

from pathlib import Path

from bench.soak import FAULTS, report, soak


async def test_every_fault_once_and_no_token_lapses(tmp_path: Path) -> None:
    result = await soak(minutes=1.6, seed=7, workdir=tmp_path, pause_s=(8, 12), every_kind=True)
    print("\n" + report(result) + f"\n{result}")
    assert result["by_kind"] == dict.fromkeys(sorted(FAULTS), 1)
    assert result["expired_secret_seconds"] == 0
    assert result["lost_foreign_keys"] == 0
    assert result["extra_mints"] == 0
    assert result["checks"] > 60
    assert 0 < result["max_failover_s"] < 20
