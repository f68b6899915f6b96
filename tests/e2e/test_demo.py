"""`make run` completes its story unattended (DEMO_EXIT=1), and says what a newcomer should see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.controlplane import ControlPlane

REPO = Path(__file__).parents[2]


def test_make_run_story_completes(control_plane: ControlPlane) -> None:  # binaries are built
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["DEMO_EXIT"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=170
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    expected = [
        'denied the request: spec.provider: Unsupported value: "gitub"',
        'did you mean "github"?',
        'denied the request: spec.secretRef: Required value: provider "github" needs a secretRef',
        "provider=generic secretRef=infra-git-token",
        "username=flux@demo-project.iam.gserviceaccount.com password=<a short-lived token>",
        "cloned: README.md",
        "before the old one expired",
        'labels={"azure.workload.identity/use":"true"} injected=azure',
        "TokenMinted",
        "The story is complete.",
    ]
    for line in expected:
        assert line in out, f"missing {line!r} in:\n{out[-4000:]}"
    assert "ya29." not in out, "the demo never prints a token"
