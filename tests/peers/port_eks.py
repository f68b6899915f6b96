"""Write tests/fixtures/pods/peers/amazon-eks-pod-identity-webhook-v0.6.17 from the peer's own golden pods
(pkg/handler/testdata, in its published module): each pod with the ServiceAccount, flags and container-credentials
config its test annotations describe, the test annotations themselves left out. ``expect`` is filled from the
peer's code (refresh.py); this checks on the way that the harness reproduces each golden's expected patch.

    python -m tests.peers.port_eks && python -m tests.peers.refresh
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from tests.peers.peerwebhooks import FIXTURES, normalized, running_peers

MODULE = "github.com/aws/amazon-eks-pod-identity-webhook@v0.6.17"
OUT = FIXTURES / "amazon-eks-pod-identity-webhook-v0.6.17"
T = "testing.eks.amazonaws.com/"
SA_KEYS = {  # test annotation -> the ServiceAccount annotation it stands for (as the peer's test reads them)
    "serviceAccount/roleArn": "eks.amazonaws.com/role-arn",
    "serviceAccount/audience": "eks.amazonaws.com/audience",
    "serviceAccount/sts-regional-endpoints": "eks.amazonaws.com/sts-regional-endpoints",
    "handler/injectSTS": "eks.amazonaws.com/sts-regional-endpoints",
    "serviceAccount/token-expiration": "eks.amazonaws.com/token-expiration",
    "handler/expiration": "eks.amazonaws.com/token-expiration",
}


def module_dir() -> Path:
    out = subprocess.run(["go", "mod", "download", "-json", MODULE], capture_output=True, text=True, check=True)
    return Path(json.loads(out.stdout)["Dir"])


def convert(path: Path, root: Path) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    pod = yaml.safe_load(path.read_text())
    test = {k[len(T) :]: v for k, v in (pod["metadata"].get("annotations") or {}).items() if k.startswith(T)}
    kept = {k: v for k, v in pod["metadata"]["annotations"].items() if not k.startswith(T)}
    if kept:
        pod["metadata"]["annotations"] = kept
    else:
        del pod["metadata"]["annotations"]
    pod["metadata"]["namespace"] = "default"  # as the peer's test sets them
    pod["spec"]["serviceAccountName"] = "default"
    annotations: dict[str, str] = {}
    for key, target in SA_KEYS.items():
        if key in test and target not in annotations:
            annotations[target] = test[key]
    config: dict[str, Any] = {"aws_injection": "full"}
    if "handler/region" in test:
        config["aws_default_region"] = test["handler/region"]
    case: dict[str, Any] = {
        "source": f"amazon-eks-pod-identity-webhook v0.6.17, pkg/handler/{path.relative_to(root)} (TestUpdatePodSpec)",
        "peer": "aws",
        "config": config,
        "serviceAccount": {"name": "default", "annotations": annotations},
    }
    if "containercredentials/uri" in test:
        case["peer_container_credentials"] = {
            k: test[f"containercredentials/{k}"] for k in ("uri", "audience", "mountPath", "volumeName", "tokenPath")
        }
    case["pod"] = pod
    case["expect"] = None
    expected = json.loads(test["expectedPatch"]) if test.get("expectedPatch") else None
    return case, expected


def main() -> None:
    root = module_dir() / "pkg" / "handler"
    OUT.mkdir(parents=True, exist_ok=True)
    with running_peers() as ask:
        for path in sorted((root / "testdata").rglob("*.yaml")):
            case, expected = convert(path, root)
            name = path.name.removesuffix(".pod.yaml")
            if path.parent.name == "containercredentials":
                name = f"containercredentials-{name}"
            if expected is not None:  # the harness must give what the peer's own test expects
                reproduced = ask(case)
                want = jsonpatch.apply_patch(case["pod"], expected)
                assert reproduced == {"mutated": normalized(want)}, f"{name}: the harness differs from the golden"
            head = f"# Ported from the peer's golden pod {path.name}: {path.parent.name}.\n"
            (OUT / f"{name}.yaml").write_text(head + yaml.safe_dump(case, sort_keys=False, width=120))
            print(name)


if __name__ == "__main__":
    main()
