"""The GCP and Azure providers through the real google-auth and azure-identity, against local fakes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common import names
from refresher.credentials import azure_identity, gcp_credential, gcp_identity
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MintKey, MintRequest
from refresher.providers.azure import AzureProvider
from refresher.providers.gcp import GcpProvider
from tests.fakes.entra import FakeEntra, running_entra
from tests.fakes.google import FakeGoogle, key_json, running_google
from tests.support.tls import TLSFiles

SCOPES = (names.GCP_DEFAULT_SCOPE,)


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogle]:
    async with running_google(FakeGoogle(token_lifetime_s=1800)) as fake:
        yield fake


def gcp_request(info: dict[str, object]) -> MintRequest:
    credential = gcp_credential({"gcpServiceAccount": key_json(info)}, "gcp-sa")
    return MintRequest(MintKey("gcp", "apps", credential.fingerprint, SCOPES), credential, scopes=SCOPES)


def provider_for(google: FakeGoogle) -> GcpProvider:
    return GcpProvider(token_urls=(f"{google.url}/token",), sts_url=f"{google.url}/v1/token")


async def test_gcp_service_account_key_mints_a_token(google: FakeGoogle) -> None:
    info = google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    token = await provider_for(google).mint(gcp_request(info))
    assert token.username == "flux@demo-project.iam.gserviceaccount.com"
    assert google.live(token.value)
    assert 1700 < token.expires_at - time.time() <= 1800


async def test_gcp_revoked_key_is_permanent(google: FakeGoogle) -> None:
    info = google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    google.revoke(info)
    with pytest.raises(PermanentError) as err:
        await provider_for(google).mint(gcp_request(info))
    assert "invalid_grant" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)


async def test_gcp_backend_error_is_temporary(google: FakeGoogle) -> None:
    info = google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    google.fail_statuses = [503, 503, 503, 503]  # google-auth retries itself; all of them fail
    with pytest.raises(TemporaryError):
        await provider_for(google).mint(gcp_request(info))


async def test_gcp_external_account_federation(google: FakeGoogle, tmp_path: Path) -> None:
    subject = tmp_path / "token"
    subject.write_text("projected-service-account-token")
    google.subject_tokens.add("projected-service-account-token")
    token = await provider_for(google).mint(gcp_request(google.external_account(str(subject))))
    assert google.live(token.value)


async def test_gcp_key_pointing_away_from_google_is_refused(google: FakeGoogle, tmp_path: Path) -> None:
    info = google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    info["token_uri"] = "http://169.254.169.254/computeMetadata/v1/"
    with pytest.raises(PermanentError) as err:
        await provider_for(google).mint(gcp_request(info))
    assert "not an allowed Google token endpoint" in str(err.value)
    external = google.external_account(str(tmp_path / "token"))
    external["credential_source"] = {"executable": {"command": "/bin/sh -c 'cat /etc/passwd'"}}
    with pytest.raises(PermanentError) as err:
        await provider_for(google).mint(gcp_request(external))
    assert "url and executable sources are refused" in str(err.value)
    external = google.external_account(str(tmp_path / "token"))
    external["token_url"] = "https://attacker.example/token"
    with pytest.raises(PermanentError):
        await provider_for(google).mint(gcp_request(external))
    assert google.issued == {}, "nothing was sent anywhere"


def test_gcp_key_that_is_not_json_is_named() -> None:
    with pytest.raises(PermanentError) as err:
        gcp_credential({"gcpServiceAccount": b"{not json"}, "gcp-sa")
    assert (
        str(err.value) == 'Secret "gcp-sa" key gcpServiceAccount is not JSON: paste the service-account key file as is'
    )


ISSUER = "https://kubernetes.default.svc"


class Issuer:
    """Stands in for the apiserver's ServiceAccount token signer (the e2e tests use the real TokenRequest)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.requests: list[tuple[str, str, str]] = []

    async def token_request(self, namespace: str, service_account: str, audience: str) -> str:
        self.requests.append((namespace, service_account, audience))
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": [audience],
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(claims, self.key, algorithm="RS256")


# --- gcp keyless (a tenant's ServiceAccount, workload identity federation) -----------------------------

POOL_PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/clusters/providers/prod"
READER = "infra-reader@demo-project.iam.gserviceaccount.com"


def keyless(annotations: dict[str, str], namespace: str = "team-a", service_account: str = "infra") -> MintRequest:
    credential = gcp_identity(namespace, service_account, annotations)
    return MintRequest(MintKey("gcp", namespace, credential.fingerprint, SCOPES), credential, scopes=SCOPES)


def keyless_provider(google: FakeGoogle, issuer: Issuer) -> GcpProvider:
    return GcpProvider(
        token_urls=(f"{google.url}/token",),
        sts_url=f"{google.url}/v1/token",
        iam_url=google.url,
        token_request=issuer.token_request,
    )


WIF = {names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: POOL_PROVIDER}


async def test_gcp_keyless_impersonates_the_service_account_the_kubernetes_one_names(google: FakeGoogle) -> None:
    issuer = Issuer()
    google.trust(POOL_PROVIDER, ISSUER, issuer.public_pem)
    google.allow(READER, POOL_PROVIDER, "team-a", "infra")
    token = await keyless_provider(google, issuer).mint(keyless({**WIF, names.GCP_ANNOTATION_SERVICE_ACCOUNT: READER}))
    assert token.username == READER
    assert google.issued[token.value][0] == READER
    assert issuer.requests == [("team-a", "infra", f"//iam.googleapis.com/{POOL_PROVIDER}")]
    (claims,) = google.exchanged
    assert claims["sub"] == "system:serviceaccount:team-a:infra"
    assert google.impersonated == [
        (f"principal://iam.googleapis.com/{POOL_PROVIDER.rpartition('/providers/')[0]}/subject/{claims['sub']}", READER)
    ]


async def test_gcp_keyless_without_impersonation_uses_the_federated_token(google: FakeGoogle) -> None:
    issuer = Issuer()
    google.trust(POOL_PROVIDER, ISSUER, issuer.public_pem)
    token = await keyless_provider(google, issuer).mint(keyless(WIF))
    assert token.username == names.GCP_FEDERATED_USERNAME
    assert google.live(token.value)
    assert google.impersonated == []


async def test_gcp_keyless_refusals_say_what_to_check_and_carry_no_token(google: FakeGoogle) -> None:
    issuer = Issuer()
    provider = keyless_provider(google, issuer)
    request = keyless({**WIF, names.GCP_ANNOTATION_SERVICE_ACCOUNT: READER})
    with pytest.raises(PermanentError) as err:  # no pool provider of that name
        await provider.mint(request)
    assert err.value.reason == "Unauthorized"
    assert "invalid_target" in str(err.value)
    google.trust(POOL_PROVIDER, "https://another-cluster.example", issuer.public_pem)
    with pytest.raises(PermanentError) as err:  # trusts another cluster's issuer
        await provider.mint(request)
    assert "issuer" in str(err.value)
    google.trust(POOL_PROVIDER, ISSUER, Issuer().public_pem)
    with pytest.raises(PermanentError) as err:  # the issuer's key is another one (a forged token)
        await provider.mint(request)
    assert "invalid_grant" in str(err.value)
    google.trust(POOL_PROVIDER, ISSUER, issuer.public_pem)
    with pytest.raises(PermanentError) as err:  # federated, but not allowed to impersonate the Google account
        await provider.mint(request)
    assert "PERMISSION_DENIED" in str(err.value)
    assert "roles/iam.workloadIdentityUser" in str(err.value)
    assert google.impersonated == []
    for told in google.issued:  # the federated tokens: never in a message
        assert told not in str(err.value)


async def test_gcp_keyless_iam_outage_is_temporary(google: FakeGoogle) -> None:
    issuer = Issuer()
    google.trust(POOL_PROVIDER, ISSUER, issuer.public_pem)
    google.allow(READER, POOL_PROVIDER, "team-a", "infra")
    google.iam_fail_statuses = [503]
    with pytest.raises(TemporaryError):
        await keyless_provider(google, issuer).mint(keyless({**WIF, names.GCP_ANNOTATION_SERVICE_ACCOUNT: READER}))


@pytest.mark.parametrize(
    ("annotations", "reason", "said"),
    [
        ({}, "MissingKey", "lacks annotation gcp.auth.fluxcd.io/workload-identity-provider"),
        (
            {names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: "https://evil.example/providers/x"},
            "InvalidKey",
            "is not projects/NUMBER",
        ),
        (
            {**WIF, names.GCP_ANNOTATION_SERVICE_ACCOUNT: "x@y.iam.gserviceaccount.com/../../../v1/evil"},
            "InvalidKey",
            "is not a Google service account email",
        ),
    ],
)
def test_gcp_keyless_service_account_annotations_are_checked(
    annotations: dict[str, str], reason: str, said: str
) -> None:
    """The email goes into the IAM URL's path, the provider into the audience: nothing else gets through."""
    with pytest.raises(PermanentError) as err:
        gcp_identity("team-a", "infra", annotations)
    assert err.value.reason == reason
    assert said in str(err.value)


# --- azure -----------------------------------------------------------------------------------------


@pytest.fixture
async def entra(tmp_path: Path) -> AsyncIterator[tuple[FakeEntra, Issuer, TLSFiles]]:
    issuer = Issuer()
    tls = TLSFiles.create(tmp_path / "tls")
    async with running_entra(FakeEntra(issuer.public_pem), tls) as fake:
        yield fake, issuer, tls


Entra = tuple[FakeEntra, Issuer, TLSFiles]


def azure_request(namespace: str, sa: str | None, annotations: dict[str, str] | None) -> MintRequest:
    identity = azure_identity(namespace, sa, annotations)
    scopes = (names.AZURE_DEVOPS_SCOPE,)
    return MintRequest(MintKey("azure", "apps", identity.fingerprint, scopes), identity, scopes=scopes)


async def test_azure_per_object_service_account(entra: Entra) -> None:
    fake, issuer, tls = entra
    fake.federate("tenant-1", "client-1", "team-a", "git-reader")
    provider = AzureProvider(issuer.token_request, authority=fake.url, connection_verify=str(tls.ca_file))
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-1", names.AZURE_ANNOTATION_TENANT_ID: "tenant-1"}
    token = await provider.mint(azure_request("team-a", "git-reader", annotations))
    assert fake.live(token.value)
    assert token.username == "azure-devops"
    assert issuer.requests == [("team-a", "git-reader", "api://AzureADTokenExchange")]


async def test_azure_unfederated_service_account_is_permanent(entra: Entra) -> None:
    fake, issuer, tls = entra
    fake.federate("tenant-1", "client-1", "team-a", "git-reader")
    provider = AzureProvider(issuer.token_request, authority=fake.url, connection_verify=str(tls.ca_file))
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-1", names.AZURE_ANNOTATION_TENANT_ID: "tenant-1"}
    with pytest.raises(PermanentError) as err:
        await provider.mint(azure_request("team-b", "intruder", annotations))
    assert "AADSTS70021" in str(err.value)
    assert "eyJ" not in str(err.value), "never the assertion"


async def test_azure_own_workload_identity(entra: Entra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, issuer, tls = entra
    fake.federate("tenant-1", "refresher-client", "flux-passwordless", "refresher")
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(await issuer.token_request("flux-passwordless", "refresher", "api://AzureADTokenExchange"))
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_CLIENT_ID", "refresher-client")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", fake.url)
    provider = AzureProvider(issuer.token_request, connection_verify=str(tls.ca_file))
    token = await provider.mint(azure_request("flux-system", None, None))
    await provider.close()
    assert fake.live(token.value)


async def test_azure_own_managed_identity_through_imds(entra: Entra, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, issuer, _ = entra
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.imds_url)
    provider = AzureProvider(issuer.token_request)
    token = await provider.mint(azure_request("flux-system", None, None))
    await provider.close()
    assert fake.live(token.value)
    assert fake.imds_requests == 1


def test_azure_service_account_without_client_id_is_named() -> None:
    with pytest.raises(PermanentError) as err:
        azure_identity("team-a", "git-reader", {})
    assert "azure.workload.identity/client-id" in str(err.value)
