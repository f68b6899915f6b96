"""Sharding as Flux shards: the selector's keys, what an output Secret carries, a Lease per shard, bad selectors
refused at start with the requirement named."""

from __future__ import annotations

import pytest

from common import names
from refresher import config as refresher_config
from refresher.credentials import github_credential
from refresher.outputs import owned_secret
from refresher.providers import Token
from refresher.sharding import combined, lease_name, selector_keys
from refresher.targets import Rules, Target, from_gitrepository
from tests.unit.test_refresher_pure import KEY, gitrepo

SHARD = names.FLUX_SHARD_LABEL


@pytest.mark.parametrize(
    ("selector", "keys"),
    [
        ("", ()),
        (f"{SHARD}=shard1", (SHARD,)),
        (f"{SHARD}==shard1", (SHARD,)),
        (f"!{SHARD}", (SHARD,)),
        (f"{SHARD} in (shard1, shard2),tier!=dev", (SHARD, "tier")),
        (f"{SHARD} notin (a),{SHARD}", (SHARD,)),
        ("team", ("team",)),
    ],
)
def test_selector_keys(selector: str, keys: tuple[str, ...]) -> None:
    assert selector_keys(selector) == keys


@pytest.mark.parametrize("selector", ["=x", "a b", f"{SHARD}=shard 1", f"{SHARD} in shard1", "a,,b", "-a=1", "a=(b)"])
def test_a_malformed_selector_is_refused_naming_the_requirement(selector: str) -> None:
    with pytest.raises(ValueError, match="--watch-label-selector: Invalid value") as err:
        selector_keys(selector)
    assert "is not a label requirement" in str(err.value)


def test_the_config_refuses_a_malformed_selector_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        refresher_config.from_args(["--watch-label-selector=shard in"])
    assert "--watch-label-selector: Invalid value" in capsys.readouterr().err


def test_each_shard_has_its_own_lease_and_the_main_one_keeps_the_default() -> None:
    main = refresher_config.from_args([])
    one = refresher_config.from_args([f"--watch-label-selector={SHARD}=shard1"])
    two = refresher_config.from_args([f"--watch-label-selector={SHARD}=shard2"])
    rest = refresher_config.from_args([f"--watch-label-selector=!{SHARD}"])
    assert main.lease_name == names.REFRESHER_LEASE
    assert len({main.lease_name, one.lease_name, two.lease_name, rest.lease_name}) == 4
    assert one.lease_name == lease_name(names.REFRESHER_LEASE, f"{SHARD}=shard1")
    assert refresher_config.from_args(["--lease-name=mine", f"--watch-label-selector={SHARD}=a"]).lease_name == "mine"


def test_selectors_combine_with_ours() -> None:
    assert combined("", names.LABEL_PROVIDER) == names.LABEL_PROVIDER
    assert combined(f"{SHARD}=a", "app.kubernetes.io/managed-by=x") == f"app.kubernetes.io/managed-by=x,{SHARD}=a"


def test_the_output_secret_carries_the_gitrepositorys_shard_labels() -> None:
    obj = gitrepo("web", "https://github.com/acme/web")
    obj["metadata"]["labels"] = {SHARD: "shard1", "team": "a", "other": "x"}  # type: ignore[index]
    rules = Rules(shard_keys=selector_keys(f"{SHARD}=shard1,team"))
    target = from_gitrepository(obj, rules)
    assert isinstance(target, Target)
    assert target.shard_labels == ((SHARD, "shard1"), ("team", "a"))
    credential = github_credential({"githubAppID": b"1", "githubAppPrivateKey": KEY}, "app")
    secret = owned_secret(target, Token("t", "x-access-token", 1, 2), credential, bearer=False)
    assert secret["metadata"]["labels"] == {
        names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
        SHARD: "shard1",
        "team": "a",
    }
    unsharded = from_gitrepository(obj, Rules())
    assert isinstance(unsharded, Target)
    assert unsharded.shard_labels == ()
