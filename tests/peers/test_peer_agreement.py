"""Every peer fixture's ``expect`` is what the peer's own code answers today (tests/peers/harness: the Azure
Workload Identity webhook v1.6.0 and the EKS pod identity webhook v0.6.17, from their published modules). A
fixture edited by hand, or a harness that drifts, fails here; ``make peer-goldens`` rewrites them from the peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.peerwebhooks import fixtures, load, running_peers

FIXTURES = fixtures()


@pytest.fixture(scope="module")
def ask() -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    with running_peers() as asking:
        yield asking


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name.split('-v')[0]}/{p.stem}" for p in FIXTURES])
def test_the_fixture_holds_the_peers_answer(ask: Callable[[dict[str, Any]], dict[str, Any]], path: Path) -> None:
    case = load(path)
    assert ask(case) == case["expect"]


def test_every_peer_case_is_here() -> None:
    """The counts the closing note gives: the Azure cases we ported and all of the EKS goldens (24 pods of
    pkg/handler/testdata and the two inline ones of handler_test.go)."""
    by_peer = {p.parent.name: 0 for p in FIXTURES}
    for p in FIXTURES:
        by_peer[p.parent.name] += 1
    assert by_peer == {"amazon-eks-pod-identity-webhook-v0.6.17": 26, "azure-workload-identity-v1.6.0": 35}
