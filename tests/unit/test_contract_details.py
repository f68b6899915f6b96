"""Contract details that are easy to get subtly wrong: names, spellings, output shapes."""

from __future__ import annotations

import base64
import re

import pytest

from common import names
from common.gitrepository import output_secret_name, redact_url
from refresher.credentials import github_credential
from refresher.outputs import OPT_IN_KEYS, digest, opt_in_apply, owned_secret
from refresher.providers import Token
from refresher.targets import Kind, Target

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KEY = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


def test_output_secret_name_fits_253_with_a_stable_hash() -> None:
    assert output_secret_name("podinfo") == "podinfo-git-token"
    long_a = "a" * 240 + ".b"
    long_b = "a" * 240 + ".c"
    cut_at_a_dot = "y" * 231 + "." + "z" * 20  # truncation lands right after the dot
    for name in (long_a, long_b, "x" * 253, cut_at_a_dot):
        short = output_secret_name(name)
        assert len(short) <= 253
        assert short.endswith("-git-token")
        assert DNS_SUBDOMAIN.match(short), short
    assert output_secret_name(long_a) != output_secret_name(long_b), "distinct names stay distinct"
    assert output_secret_name(long_a) == output_secret_name(long_a), "and stable"


def test_flux_spelling_wins_over_the_seed_rfc_spelling() -> None:
    both = {
        "githubAppID": b"1",
        "githubAppPrivateKey": KEY,
        "githubPrivateKey": b"-----BEGIN RSA PRIVATE KEY-----\nOTHER\n-----END RSA PRIVATE KEY-----\n",
        "githubAppInstallationID": b"7",
        "githubInstallationID": b"8",
        "githubAppBaseURL": b"https://ghe.example.com",
        "githubApiURL": b"https://other.example.com",
    }
    credential = github_credential(both, "app")
    assert credential.private_key == KEY.strip()
    assert credential.installation_id == "7"
    assert credential.api_base == "https://ghe.example.com/api/v3"
    seed_only = github_credential({"githubAppID": b"1", "githubPrivateKey": KEY, "githubInstallationID": b"8"}, "app")
    assert (seed_only.installation_id, seed_only.private_key) == ("8", KEY.strip())


def _target(provider: str, kind: Kind = "GitRepository") -> Target:
    return Target(kind, "apps", "fleet", "uid-1", provider, "fleet-git-token", None)


def test_owned_secret_shape_and_bearer_mode() -> None:
    token = Token("t0k3n", "azure-devops", 1_800_000_000, 1_800_003_600)
    credential = github_credential({"githubAppID": b"1", "githubAppPrivateKey": KEY, "ca.crt": b"CA"}, "app")
    basic = owned_secret(_target("azure"), token, credential, bearer=False)
    assert basic["type"] == "kubernetes.io/basic-auth"
    assert set(basic["data"]) == {"username", "password", "ca.crt"}
    assert base64.b64decode(basic["data"]["ca.crt"]) == b"CA"
    assert basic["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert basic["metadata"]["annotations"] == {
        names.ANNOTATION_EXPIRES_AT: "2027-01-15T09:00:00Z",
        names.ANNOTATION_REFRESHED_AT: "2027-01-15T08:00:00Z",
    }
    bearer = owned_secret(_target("azure"), token, credential, bearer=True)
    assert bearer["type"] == "Opaque"
    assert set(bearer["data"]) == {"bearerToken", "ca.crt"}
    github = owned_secret(_target("github"), token, credential, bearer=True)
    assert github["type"] == "kubernetes.io/basic-auth", "bearer mode is for azure only"


def test_opt_in_apply_owns_only_username_password_and_our_annotations() -> None:
    token = Token("t0k3n", "x-access-token", 1_800_000_000, 1_800_003_600)
    body = opt_in_apply(_target("github", kind="Secret"), token)
    assert set(body["data"]) == set(OPT_IN_KEYS)
    assert set(body["metadata"]) == {"name", "namespace", "annotations"}
    assert "type" not in body, "the opted-in Secret keeps its type"
    observed = {**body, "data": {**body["data"], "url": "aHR0cHM6Ly9naXRodWIuY29t"}, "type": "Opaque"}
    assert digest(observed, OPT_IN_KEYS) == digest(body, OPT_IN_KEYS), "foreign keys do not cause writes"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ghp_abc@github.com/o/r", "https://***@github.com/o/r"),
        ("https://x-access-token:ghp_abc@github.com/o/r", "https://***@github.com/o/r"),
        ("ssh://git@github.com/o/r", "ssh://git@github.com/o/r"),
        ("ssh://git:ghp_abc@github.com/o/r", "ssh://git:***@github.com/o/r"),
        ("git:ghp_abc@github.com:o/r", "git:***@github.com:o/r"),
        ("git@github.com:o/r", "git@github.com:o/r"),
        ("https://github.com/o/r@main", "https://github.com/o/r@main"),
    ],
)
def test_urls_never_show_a_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown
