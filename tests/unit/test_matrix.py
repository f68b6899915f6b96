"""The Kubernetes matrix is one list: what the Makefile builds, what the suite runs, what is pinned."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.controlplane import BUILD_SCRIPT, DEFAULT_K8S, K8S_MATRIX, OTHER_K8S

REPO = Path(__file__).parents[2]


def test_the_makefile_builds_the_versions_the_suite_runs() -> None:
    match = re.search(r"^K8S_VERSIONS := (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match is not None
    assert tuple(match.group(1).split()) == OTHER_K8S
    assert K8S_MATRIX == ("v1.34.4", DEFAULT_K8S, "v1.36.3", "v1.37.2")


def test_each_matrix_version_is_pinned_with_its_own_module() -> None:
    for version in OTHER_K8S:
        go_mod = (BUILD_SCRIPT.parent / "versions" / version / "go.mod").read_text()
        assert f"k8s.io/kubernetes {version}\n" in go_mod
        assert (BUILD_SCRIPT.parent / "versions" / version / "go.sum").is_file()
