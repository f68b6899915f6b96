"""The real webhooks we stand in for, from their published Go modules (tests/peers/harness, built and cached by
tests/peers/build.sh), and what a fixture under tests/fixtures/pods/peers means to each side.

A peer fixture holds a pod, its ServiceAccount and the webhook configuration (ours: ``PodConfig`` fields), the
peer's answer in ``expect`` (``mutated`` or ``denied``), filled from the peer's own code by ``refresh.py`` and
checked against it by ``test_peer_agreement.py``; and, only where we differ on purpose, ``ours`` and ``why``.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from common import names
from webhook.injectors import PodConfig, PodRejected
from webhook.pods import mutate_pod

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "fixtures" / "pods" / "peers"


def fixtures() -> list[Path]:
    return sorted(FIXTURES.rglob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def harness() -> Path:
    """The harness binary (built on first use: a minute or two, cold)."""
    out = subprocess.run(["bash", str(HERE / "build.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def peer_request(case: dict[str, Any]) -> dict[str, Any]:
    config = case.get("config") or {}
    request: dict[str, Any] = {
        "peer": case["peer"],
        "namespace": (case["pod"].get("metadata") or {}).get("namespace", "default"),
        "pod": case["pod"],
        "serviceAccount": case["serviceAccount"],
        "config": {
            "tenantID": config.get("azure_tenant_id", ""),
            "region": config.get("aws_default_region", ""),
            "stsRegionalEndpoints": bool(config.get("aws_sts_regional_endpoints", False)),
        },
    }
    if "peer_container_credentials" in case:
        request["config"]["containerCredentials"] = case["peer_container_credentials"]
    return request


@contextmanager
def running_peers() -> Iterator[Any]:
    """``ask(case) -> {"mutated": pod} | {"denied": message}``, from the peers' own code."""
    with subprocess.Popen([str(harness())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None

        def ask(case: dict[str, Any]) -> dict[str, Any]:
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(json.dumps(peer_request(case)) + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            if answer.get("error"):
                raise RuntimeError(f"harness: {answer['error']}")
            if "denied" in answer:
                return {"denied": answer["denied"]}
            return {"mutated": normalized(jsonpatch.apply_patch(case["pod"], answer.get("patch") or []))}

        try:
            yield ask
        finally:
            proc.stdin.close()
            proc.wait(10)


def normalized(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod as compared: without what a Go round-trip adds and means nothing (``resources: {}``, ``status: {}``,
    ``null`` for an unset optional field), and without our own marker annotation (flux-passwordless.io/injected)."""
    pod = _without_nulls(copy.deepcopy(pod))
    pod.pop("status", None)
    metadata = pod.get("metadata") or {}
    metadata.pop("creationTimestamp", None)
    annotations = metadata.get("annotations") or {}
    annotations.pop(names.ANNOTATION_INJECTED, None)
    if "annotations" in metadata and not annotations:
        del metadata["annotations"]
    for kind in ("initContainers", "containers"):
        for container in (pod.get("spec") or {}).get(kind) or []:
            if container.get("resources") == {}:
                del container["resources"]
    return pod


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def pod_config(case: dict[str, Any]) -> PodConfig:
    return PodConfig(**(case.get("config") or {}))


def ours(case: dict[str, Any]) -> dict[str, Any]:
    """What our injection (pure: the webhook's own core) answers for a fixture. A ServiceAccount that does not
    exist reaches it as no annotations."""
    annotations = {} if case.get("serviceAccountMissing") else case["serviceAccount"]["annotations"]
    try:
        return {"mutated": normalized(mutate_pod(case["pod"], annotations, pod_config(case)).pod)}
    except PodRejected as err:
        return {"denied": str(err)}
