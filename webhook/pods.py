"""Workload-identity injection into Pods, driven by the Pod's ServiceAccount annotations. Pure, no IO.

The injectors, one per cloud, live in ``webhook.injectors``; the copy-on-write editing in ``webhook.podpatch``.

``mutate_pod`` never modifies its input: it copies the parts it changes, shares the rest, and records the
JSON Patch while it edits (the tests check it against a diff of the whole object).

``PodView`` names every field an injector reads. The webhook decodes only those from a review (the rest of a
pod, images, probes, resources, is skipped by the decoder), which halves the cost of decoding. Patch paths stay
valid for the whole pod because lists keep every element, in order. An injector that reads a new field must add
it to the view: the golden tests run every fixture through both the view and the whole pod and require the same
patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from common import names
from webhook.injectors import INJECTORS, PodConfig
from webhook.jsonpatch import Patch
from webhook.podpatch import Pod, PodWriter, get


class _Named(TypedDict, total=False):
    name: str


class _Container(TypedDict, total=False):
    name: str
    env: list[_Named]
    volumeMounts: list[dict[str, Any]]  # whole: a mount of our volume's name is compared and corrected


class _PodSpec(TypedDict, total=False):
    serviceAccountName: str
    initContainers: list[_Container]
    containers: list[_Container]
    volumes: list[dict[str, Any]]
    nodeSelector: dict[str, str]


class _ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    labels: dict[str, str]
    annotations: dict[str, str]


class PodView(TypedDict, total=False):
    """The fields of a Pod that ``mutate_pod`` reads (and the only ones the webhook decodes)."""

    metadata: _ObjectMeta
    spec: _PodSpec


@dataclass(slots=True)
class Mutation:
    pod: Pod  # the mutated pod (the input itself when nothing changed)
    patch: Patch  # RFC 6902 ops turning the input into ``pod``


def mutate_pod(pod: Pod, sa_annotations: Mapping[str, str], config: PodConfig) -> Mutation:
    """The pod with the workload identity its ServiceAccount asks for. Raises PodRejected on bad input."""
    w = PodWriter(pod)
    providers: tuple[str, ...] = ()
    for injector in INJECTORS:
        if sa_annotations.get(injector.trigger) and injector.apply(w, sa_annotations, config):
            providers += (injector.provider,)
    if providers:
        current = get(pod, "metadata", "annotations")
        value = ",".join(providers)
        if (current or {}).get(names.ANNOTATION_INJECTED) != value:
            w.set(("metadata", "annotations"), names.ANNOTATION_INJECTED, value)
    return Mutation(w.pod, w.ops)
