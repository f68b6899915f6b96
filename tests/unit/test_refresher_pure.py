"""The refresher's pure parts: targets from objects, the mint plan, renewal times."""

from __future__ import annotations

import random

import pytest

from common import names
from common.backoff import Backoff
from common.gitrepository import PolicyConfig
from refresher.credentials import GitHubApp, gcp_credential, github_credential
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MAX_REPOSITORIES, github_repository, make_plan
from refresher.schedule import renew_at, retry_at
from refresher.targets import Invalid, Rules, Target, from_gitrepository, from_opted_in_secret, parse_duration

RULES = Rules()
KEY = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


def gitrepo(name: str, url: str, **annotations: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "apps",
            "uid": f"uid-{name}",
            "annotations": {
                names.ANNOTATION_PROVIDER: "github",
                names.ANNOTATION_CREDENTIALS_SECRET: "app",
                **annotations,
            },
        },
        "spec": {
            "interval": "5m",
            "timeout": "1m30s",
            "url": url,
            "provider": "generic",
            "secretRef": {"name": f"{name}-git-token"},
        },
    }


def opted_in(name: str = "pat", provider: str = "github", **annotations: str) -> dict[str, object]:
    """A Secret labelled for opt-in (``annotations`` by name; the credentials Secret is "app" by default)."""
    annotations = {names.ANNOTATION_CREDENTIALS_SECRET: "app", **annotations}
    return {
        "metadata": {
            "name": name,
            "namespace": "apps",
            "uid": "u",
            "labels": {names.LABEL_PROVIDER: provider},
            "annotations": annotations,
        }
    }


def github(installation: str | None = "7") -> object:
    data = {"githubAppID": b"1", "githubAppPrivateKey": KEY}
    if installation:
        data["githubAppInstallationID"] = installation.encode()
    return github_credential(data, "app")


def test_target_from_a_translated_gitrepository() -> None:
    target = from_gitrepository(gitrepo("web", "https://github.com/acme/web"), RULES)
    assert isinstance(target, Target)
    assert (target.secret, target.credentials, target.urls) == (
        "web-git-token",
        "app",
        ("https://github.com/acme/web",),
    )
    assert target.consumer_window_s == 2 * (300 + 90)
    assert dict(target.permissions) == {"contents": "read"}


def test_unmanaged_gitrepository_is_not_a_target() -> None:
    obj = gitrepo("web", "https://github.com/acme/web")
    obj["metadata"]["annotations"] = {}  # type: ignore[index]
    assert from_gitrepository(obj, RULES) is None


@pytest.mark.parametrize(
    ("labels", "annotations", "message"),
    [
        (
            {names.LABEL_PROVIDER: "GitHub"},
            {},
            'metadata.labels[flux-passwordless.io/provider]: Unsupported value: "GitHub"',
        ),
        (
            {names.LABEL_PROVIDER: "github"},
            {},
            "metadata.annotations[flux-passwordless.io/credentials-secret]: Required",
        ),
        ({names.LABEL_PROVIDER: "github"}, {names.ANNOTATION_CREDENTIALS_SECRET: "pat"}, "must live in another Secret"),
    ],
)
def test_opted_in_secret_rules(labels: dict[str, str], annotations: dict[str, str], message: str) -> None:
    obj = {"metadata": {"name": "pat", "namespace": "apps", "uid": "u", "labels": labels, "annotations": annotations}}
    result = from_opted_in_secret(obj, RULES)
    assert isinstance(result, Invalid)
    assert message in result.message


def test_one_token_per_credential_scoped_to_the_union_of_repositories() -> None:
    credential = github()
    targets = [from_gitrepository(gitrepo(f"r{i}", f"https://github.com/acme/repo-{i % 3}"), RULES) for i in range(9)]
    plan = make_plan([(t, credential) for t in targets if isinstance(t, Target)])  # type: ignore[misc]
    assert len(plan.tokens) == 1
    planned = next(iter(plan.tokens.values()))
    assert planned.request.repositories == ("repo-0", "repo-1", "repo-2")
    assert planned.request.installation == ("id", "7")
    assert sorted(t.name for t, _ in planned.members) == sorted(f"r{i}" for i in range(9))
    assert planned.window_s == 2 * (300 + 90)
    assert len(set(plan.assignment().values())) == 1


def test_more_than_500_repositories_split_into_tokens() -> None:
    credential = github()
    targets = [from_gitrepository(gitrepo(f"r{i}", f"https://github.com/acme/repo-{i}"), RULES) for i in range(1201)]
    plan = make_plan([(t, credential) for t in targets if isinstance(t, Target)])  # type: ignore[misc]
    sizes = sorted(len(p.request.repositories or ()) for p in plan.tokens.values())
    assert sizes == [201, MAX_REPOSITORIES, MAX_REPOSITORIES]


def test_unreachable_repositories_leave_the_shared_token_and_only_their_objects() -> None:
    """The pure half of #24: repositories known to be out of reach are left out of every scope (the 500-split
    included); an object naming only those is left out and listed, one naming others too keeps those."""
    credential = github()
    targets = [from_gitrepository(gitrepo(f"r{i}", f"https://github.com/acme/repo-{i}"), RULES) for i in range(1001)]
    gone = from_gitrepository(gitrepo("gone", "https://github.com/acme/gone"), RULES)
    pairs = [(t, credential) for t in [*targets, gone] if isinstance(t, Target)]
    plain = make_plan(pairs)  # type: ignore[arg-type]
    assert any("gone" in (p.request.repositories or ()) for p in plain.tokens.values())
    assert isinstance(credential, GitHubApp)
    out = {("apps", credential.fingerprint, ("id", "7")): frozenset({"gone", "repo-3"})}
    plan = make_plan(pairs, unreachable=out)  # type: ignore[arg-type]
    scopes = [set(p.request.repositories or ()) for p in plan.tokens.values()]
    assert not any(scope & {"gone", "repo-3"} for scope in scopes)
    assert sum(len(scope) for scope in scopes) == 1000
    assert [(u.target.name, u.repositories, u.served) for u in plan.unreachable] == [
        ("gone", ("acme/gone",), False),
        ("r3", ("acme/repo-3",), False),
    ]
    assert {t.name for p in plan.tokens.values() for t, _ in p.members} == {f"r{i}" for i in range(1001)} - {"r3"}


def test_permissions_and_installation_scope_change_the_token() -> None:
    credential = github()
    reader = from_gitrepository(gitrepo("a", "https://github.com/acme/a"), RULES)
    writer = from_gitrepository(
        gitrepo("b", "https://github.com/acme/b", **{names.ANNOTATION_GITHUB_PERMISSIONS: "contents:write"}),
        RULES,
    )
    plan = make_plan([(reader, credential), (writer, credential)])  # type: ignore[list-item]
    assert len(plan.tokens) == 2
    assert {dict(p.request.permissions)["contents"] for p in plan.tokens.values()} == {"read", "write"}
    whole = make_plan([(reader, credential)], github_scope="installation")  # type: ignore[list-item]
    assert next(iter(whole.tokens.values())).request.repositories is None


def test_gcp_targets_share_a_token_per_key() -> None:
    key = gcp_credential(
        {"gcpServiceAccount": b'{"type":"service_account","client_email":"a@b","private_key":"k","token_uri":"t"}'},
        "sa",
    )
    targets = [
        from_gitrepository(gitrepo(f"g{i}", "https://source.developers.google.com/p/p/r/x"), RULES) for i in range(5)
    ]
    plan = make_plan([(t, key) for t in targets])  # type: ignore[misc]
    assert len(plan.tokens) == 1
    assert len(next(iter(plan.tokens.values())).members) == 5


def test_renewal_at_80_percent_or_earlier_for_the_consumer() -> None:
    rng = random.Random(1)
    at = renew_at(0, 3600, 0, rng)
    assert 2880 - 120 <= at <= 2880
    at = renew_at(0, 3600, 1800, rng)  # the consumer needs 30 minutes left
    assert 1800 - 120 <= at <= 1800
    at = renew_at(0, 3600, 7200, rng)  # cannot be met: never sooner than 10% in
    assert 360 - 120 <= at <= 360


def test_backoff_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(2)
    backoff = Backoff(base_s=1, cap_s=60)
    assert retry_at(0, 1, PermanentError("bad key"), rng, backoff) is None
    delays = [retry_at(0, n, TemporaryError("5xx"), rng, backoff) for n in range(1, 12)]
    assert all(d is not None and d <= 60 for d in delays)
    last = delays[-1]
    assert last is not None
    assert last >= 30
    assert retry_at(0, 1, TemporaryError("429", retry_after=42), rng, backoff) == 42


@pytest.mark.parametrize(("text", "seconds"), [("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("bad", 7)])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, 7) == seconds


def test_github_repository_from_urls() -> None:
    assert github_repository("https://github.com/acme/app.git") == ("acme", "app")
    assert github_repository("acme/app") == ("acme", "app")
    assert github_repository("https://github.com/acme") is None


def test_a_token_never_spans_namespaces() -> None:
    """The same App key in two tenants' namespaces: one token each, each scoped to its own tenant's repos."""
    credential = github()
    pairs = []
    for ns in ("tenant-a", "tenant-b"):
        obj = gitrepo("app", f"https://github.com/acme/{ns}-app")
        obj["metadata"]["namespace"] = ns  # type: ignore[index]
        target = from_gitrepository(obj, RULES)
        assert isinstance(target, Target)
        pairs.append((target, credential))
    plan = make_plan(pairs)  # type: ignore[arg-type]
    assert len(plan.tokens) == 2
    for key, planned in plan.tokens.items():
        (member,) = planned.members
        assert key.namespace == member[0].namespace
        assert planned.request.repositories == (f"{key.namespace}-app",)


@pytest.mark.parametrize(
    ("asked", "refused"),
    [
        (None, None),
        ("contents:write", None),
        ("contents:write,metadata:read", None),
        ("administration:write", "administration:write"),
        ("contents:admin", "contents:admin"),
        ("secrets:write,members:read", "members:read,secrets:write"),
        ("contents:sudo", "contents:sudo"),
    ],
)
def test_github_permissions_beyond_the_allowlist_are_refused(asked: str | None, refused: str | None) -> None:
    annotations = {names.ANNOTATION_GITHUB_PERMISSIONS: asked} if asked else {}
    result = from_gitrepository(gitrepo("web", "https://github.com/acme/web", **annotations), RULES)
    secret = from_opted_in_secret(opted_in(**annotations), RULES)
    if refused is None:
        assert isinstance(result, Target)
        assert isinstance(secret, Target)
        return
    for invalid in (result, secret):
        assert isinstance(invalid, Invalid)
        assert invalid.reason == "PermissionsRefused"
        assert invalid.message == (
            f'metadata.annotations[flux-passwordless.io/github-permissions]: Forbidden: "{refused}": beyond what '
            "this cluster allows (contents:write,metadata:read); ask the admin to extend the refresher's "
            "--github-permissions, or ask for less"
        )


def test_our_own_output_secret_cannot_be_opted_in() -> None:
    """Regression: labelling an owned <name>-git-token Secret made two writers overwrite each other for ever."""
    secret = opted_in("web-git-token")
    secret["metadata"]["labels"][names.LABEL_MANAGED_BY] = names.MANAGED_BY_VALUE  # type: ignore[index]
    result = from_opted_in_secret(secret, RULES)
    assert isinstance(result, Invalid)
    assert result.reason == "OptInRefused"


def test_the_refresher_serves_only_its_managed_providers() -> None:
    """Regression: a hand-written provider annotation was served even for a provider the admin turned off."""
    rules = Rules(PolicyConfig(frozenset({"github", "gcp"})))
    obj = gitrepo("fleet", "https://dev.azure.com/contoso/fleet/_git/fleet", **{names.ANNOTATION_PROVIDER: "azure"})
    result = from_gitrepository(obj, rules)
    assert isinstance(result, Invalid)
    assert 'Unsupported value: "azure": supported values: "gcp", "github"' in result.message
    assert isinstance(from_opted_in_secret(opted_in(provider="azure"), rules), Invalid)


def test_a_bad_credentials_name_on_an_opted_in_secret_is_refused() -> None:
    result = from_opted_in_secret(opted_in(**{names.ANNOTATION_CREDENTIALS_SECRET: "t1/app/x"}), RULES)
    assert isinstance(result, Invalid)
    assert result.message.startswith(
        'metadata.annotations[flux-passwordless.io/credentials-secret]: Invalid value: "t1/app/x"'
    )
    central = from_opted_in_secret(opted_in(**{names.ANNOTATION_CREDENTIALS_SECRET: "platform/app"}), RULES)
    assert isinstance(central, Target)
    assert central.credentials == "platform/app"


def test_objects_behind_different_proxies_never_share_a_token_request() -> None:
    from refresher.credentials import proxy_from_secret

    credential = github()
    a = from_gitrepository(gitrepo("a", "https://github.com/acme/a"), RULES)
    b = from_gitrepository(gitrepo("b", "https://github.com/acme/b"), RULES)
    assert isinstance(a, Target)
    assert isinstance(b, Target)
    proxy = proxy_from_secret({"address": b"http://proxy.corp:3128", "username": b"u", "password": b"p@ss"}, "egress")
    plan = make_plan([(a, credential), (b, credential)], proxies={a.key: proxy})  # type: ignore[list-item]
    requests = sorted(plan.tokens.values(), key=lambda p: p.members[0][0].name)
    assert [p.request.proxy for p in requests] == [proxy, None]
    assert [p.request.repositories for p in requests] == [("a",), ("b",)]
    assert proxy.url() == "http://u:p%40ss@proxy.corp:3128"
    assert "p@ss" not in repr(proxy)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, 'proxy Secret "egress" lacks address'),
        ({"address": b"proxy.corp:3128"}, "must be an http:// or https:// URL"),
        ({"address": b"http://u:secret@proxy.corp:3128"}, "no credentials in it"),
    ],
)
def test_a_proxy_secret_is_checked_and_its_values_never_told(data: dict[str, bytes], message: str) -> None:
    from refresher.credentials import proxy_from_secret
    from refresher.errors import PermanentError

    with pytest.raises(PermanentError) as err:
        proxy_from_secret(data, "egress")
    assert message in str(err.value)
    assert "secret" not in str(err.value).replace("Secret", "")
