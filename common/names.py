"""Every name of the product contract: labels, annotations, Secret keys, field manager.

Both processes import from here and nowhere else spells these strings, so a rename is one edit
(the contract is ``shared/design/contract.md``).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "flux-passwordless.io/"
FIELD_MANAGER: Final = "flux-passwordless"

# --- Flux -------------------------------------------------------------------------------------
FLUX_SOURCE_GROUP: Final = "source.toolkit.fluxcd.io"
GITREPOSITORY_KIND: Final = "GitRepository"
GITREPOSITORY_PLURAL: Final = "gitrepositories"
GITREPOSITORY_VERSIONS: Final = ("v1", "v1beta2")
GITREPOSITORY_API_VERSION: Final = FLUX_SOURCE_GROUP + "/v1"

# --- providers ---------------------------------------------------------------------------------
PROVIDER_GENERIC: Final = "generic"
PROVIDER_GITHUB: Final = "github"
PROVIDER_GCP: Final = "gcp"
PROVIDER_AZURE: Final = "azure"
PROVIDER_AWS: Final = "aws"
# Every value spec.provider may hold, in the order messages list them.
ALLOWED_PROVIDERS: Final = (PROVIDER_GENERIC, PROVIDER_AZURE, PROVIDER_GITHUB, PROVIDER_GCP, PROVIDER_AWS)
# Providers the refresher can mint tokens for.
SERVABLE_PROVIDERS: Final = (PROVIDER_GCP, PROVIDER_GITHUB, PROVIDER_AZURE)
DEFAULT_MANAGED_PROVIDERS: Final = SERVABLE_PROVIDERS
# Providers whose credentials live in a user Secret (spec.secretRef required).
PROVIDERS_NEEDING_SECRET: Final = (PROVIDER_GITHUB, PROVIDER_GCP)  # gcp: unless keyless (a ServiceAccount)
PROVIDERS_WITH_SERVICE_ACCOUNT: Final = (PROVIDER_AZURE, PROVIDER_GCP)  # per-object identity, no key anywhere

# --- our annotations and labels ----------------------------------------------------------------
ANNOTATION_PROVIDER: Final = PREFIX + "provider"  # on a GitRepository: the provider we serve
LABEL_PROVIDER: Final = PREFIX + "provider"  # on an opted-in Secret
ANNOTATION_CREDENTIALS_SECRET: Final = PREFIX + "credentials-secret"
# On a translated GitRepository: its spec.serviceAccountName (Azure per-object identity), which Flux's CRD
# forbids next to provider: generic ("serviceAccountName can only be set when provider is 'azure' or 'aws'").
ANNOTATION_SERVICE_ACCOUNT: Final = PREFIX + "service-account"
ANNOTATION_EXPIRES_AT: Final = PREFIX + "expires-at"
ANNOTATION_REFRESHED_AT: Final = PREFIX + "refreshed-at"
# On a Secret we write: which token it holds (a hash of namespace, credential fingerprint and scope; nothing
# secret), so a new leader can adopt a still-valid token instead of minting it again.
ANNOTATION_TOKEN_KEY: Final = PREFIX + "token-key"
ANNOTATION_GITHUB_PERMISSIONS: Final = PREFIX + "github-permissions"
# What a GitHub token may carry unless the admin says otherwise (--github-permissions): enough for Flux to
# fetch and for image automation to push.
DEFAULT_GITHUB_PERMISSIONS: Final = "contents:write,metadata:read"
# On an opted-in Secret: repositories (URLs or owner/name, comma-separated) its consumers fetch, for GitHub
# token scoping, beside those of the GitRepositories that reference it.
ANNOTATION_REPOSITORIES: Final = PREFIX + "repositories"
# On a central credentials Secret (in a --credentials-namespaces namespace): who may use it, for what.
ANNOTATION_GRANT_NAMESPACES: Final = PREFIX + "grant-namespaces"  # names and globs, comma-separated
ANNOTATION_GRANT_REPOSITORIES: Final = PREFIX + "grant-repositories"  # owner/name globs (GitHub); absent: any
ANNOTATION_GRANT_PERMISSIONS: Final = PREFIX + "grant-permissions"  # the most a token may carry (GitHub)
ANNOTATION_INJECTED: Final = PREFIX + "injected"
LABEL_INJECT: Final = PREFIX + "inject"
INJECT_ENABLED: Final = "enabled"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "flux-passwordless"

REFRESHER_LEASE: Final = "flux-passwordless-refresher"  # per shard: suffixed with a digest of its selector
FLUX_SHARD_LABEL: Final = "sharding.fluxcd.io/key"  # Flux's sharding convention (--watch-label-selector)
OUTPUT_SECRET_SUFFIX: Final = "-git-token"

# --- Secret keys: what we write ----------------------------------------------------------------
KEY_USERNAME: Final = "username"
KEY_PASSWORD: Final = "password"
KEY_BEARER_TOKEN: Final = "bearerToken"
TLS_KEYS_COPIED: Final = ("ca.crt", "tls.crt", "tls.key")
SECRET_TYPE_BASIC_AUTH: Final = "kubernetes.io/basic-auth"
SECRET_TYPE_OPAQUE: Final = "Opaque"

# --- Secret keys: what we read (Flux spelling first; it wins over the seed RFC's) ---------------
KEY_GITHUB_APP_ID: Final = ("githubAppID",)
KEY_GITHUB_INSTALLATION_ID: Final = ("githubAppInstallationID", "githubInstallationID")
KEY_GITHUB_INSTALLATION_OWNER: Final = ("githubAppInstallationOwner",)
KEY_GITHUB_PRIVATE_KEY: Final = ("githubAppPrivateKey", "githubPrivateKey")
KEY_GITHUB_BASE_URL: Final = ("githubAppBaseURL", "githubApiURL")
KEY_GCP_SERVICE_ACCOUNT: Final = ("gcpServiceAccount",)
# A proxy Secret (spec.proxySecretRef), Flux's format
KEY_PROXY_ADDRESS: Final = "address"
KEY_PROXY_USERNAME: Final = "username"
KEY_PROXY_PASSWORD: Final = "password"
KEYS_PROXY: Final = (KEY_PROXY_ADDRESS, KEY_PROXY_USERNAME, KEY_PROXY_PASSWORD)

# Seed-RFC spellings: accepted, but the webhook warns and suggests Flux's.
SEED_RFC_SPELLINGS: Final = {
    "githubInstallationID": "githubAppInstallationID",
    "githubPrivateKey": "githubAppPrivateKey",
    "githubApiURL": "githubAppBaseURL",
}

GITHUB_USERNAME: Final = "x-access-token"
AZURE_DEFAULT_USERNAME: Final = "azure-devops"

# --- workload identity: Azure -----------------------------------------------------------------
AZURE_ANNOTATION_CLIENT_ID: Final = "azure.workload.identity/client-id"
AZURE_ANNOTATION_TENANT_ID: Final = "azure.workload.identity/tenant-id"
AZURE_ANNOTATION_SKIP_CONTAINERS: Final = "azure.workload.identity/skip-containers"
AZURE_ANNOTATION_INJECT_PROXY_SIDECAR: Final = "azure.workload.identity/inject-proxy-sidecar"
AZURE_ANNOTATION_TOKEN_EXPIRATION: Final = "azure.workload.identity/service-account-token-expiration"
AZURE_LABEL_USE: Final = "azure.workload.identity/use"
AZURE_TOKEN_AUDIENCE: Final = "api://AzureADTokenExchange"
# The token layout of the Azure Workload Identity webhook v1.6.0 (its consts.go): volume <prefix><hash>, mounted at
# /var/run/secrets/azure/wi, the token at token/azure-identity-token under it; <hash> is the first characters of
# sha256(pod name) (``generateName + " (prefix)"`` for a pod not named yet) that keep the volume name within 63.
AZURE_TOKEN_VOLUME_PREFIX: Final = "azure-workload-identity-reserved-"
AZURE_TOKEN_MOUNT_PATH: Final = "/var/run/secrets/azure/wi"
AZURE_TOKEN_FILE: Final = "token/azure-identity-token"
AZURE_DEFAULT_AUTHORITY_HOST: Final = "https://login.microsoftonline.com/"
AZURE_TOKEN_EXPIRATION_MIN: Final = 3600
AZURE_TOKEN_EXPIRATION_MAX: Final = 86400
AZURE_TOKEN_EXPIRATION_DEFAULT: Final = 3600
AZURE_DEVOPS_SCOPE: Final = "499b84ac-1321-427f-aa17-267ca6975798/.default"

# --- workload identity: AWS -------------------------------------------------------------------
AWS_ANNOTATION_ROLE_ARN: Final = "eks.amazonaws.com/role-arn"
AWS_ANNOTATION_AUDIENCE: Final = "eks.amazonaws.com/audience"
AWS_DEFAULT_AUDIENCE: Final = "sts.amazonaws.com"
AWS_TOKEN_VOLUME: Final = "aws-iam-token"
AWS_TOKEN_MOUNT_PATH: Final = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
AWS_TOKEN_FILE: Final = "token"
AWS_TOKEN_EXPIRATION: Final = 86400
AWS_TOKEN_EXPIRATION_MIN: Final = 600  # the peer raises anything shorter to this
AWS_ANNOTATION_TOKEN_EXPIRATION: Final = "eks.amazonaws.com/token-expiration"  # ServiceAccount and Pod
AWS_ANNOTATION_STS_REGIONAL_ENDPOINTS: Final = "eks.amazonaws.com/sts-regional-endpoints"
AWS_ANNOTATION_SKIP_CONTAINERS: Final = "eks.amazonaws.com/skip-containers"  # Pod

# --- workload identity: GCP -------------------------------------------------------------------
GCP_ANNOTATION_SERVICE_ACCOUNT: Final = "iam.gke.io/gcp-service-account"
# Flux's name (object-level workload identity, outside GKE): the Workload Identity Federation provider,
# projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER
GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: Final = "gcp.auth.fluxcd.io/workload-identity-provider"
GCP_NODE_SELECTOR: Final = "iam.gke.io/gke-metadata-server-enabled"

GCP_FEDERATED_USERNAME: Final = "oauth2accesstoken"  # the username of a federated token (no service account)
GCP_DEFAULT_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"

# --- namespaces -------------------------------------------------------------------------------
ALWAYS_EXCLUDED_NAMESPACES: Final = ("kube-system",)
FLUX_NAMESPACE: Final = "flux-system"
