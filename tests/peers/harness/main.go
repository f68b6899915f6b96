// Command harness runs the pod mutation of the real webhooks flux-passwordless stands in for, from their
// published Go modules: the Azure Workload Identity webhook (pkg/webhook, v1.6.0) and the EKS pod identity
// webhook (pkg/handler, v0.6.17). It reads one case per line on stdin (JSON) and writes one answer per line:
// {"patch": [...]} (RFC 6902, to the pod as sent) or {"denied": "message"}.
//
// A case: {"peer": "azure" | "aws", "namespace": ..., "pod": {...}, "serviceAccount": {"name", "annotations"},
// "config": {"tenantID", "region", "stsRegionalEndpoints"}}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"

	azwi "github.com/Azure/azure-workload-identity/pkg/webhook"
	"github.com/aws/amazon-eks-pod-identity-webhook/pkg/cache"
	"github.com/aws/amazon-eks-pod-identity-webhook/pkg/containercredentials"
	eks "github.com/aws/amazon-eks-pod-identity-webhook/pkg/handler"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/api/admission/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

type serviceAccount struct {
	Name        string            `json:"name"`
	Annotations map[string]string `json:"annotations"`
}

type config struct {
	TenantID             string `json:"tenantID"`
	Region               string `json:"region"`
	StsRegionalEndpoints bool   `json:"stsRegionalEndpoints"`
	// EKS Pod Identity (container credentials) for this ServiceAccount, as the peer's config file gives it
	ContainerCredentials *struct {
		URI        string `json:"uri"`
		Audience   string `json:"audience"`
		MountPath  string `json:"mountPath"`
		VolumeName string `json:"volumeName"`
		TokenPath  string `json:"tokenPath"`
	} `json:"containerCredentials"`
}

type request struct {
	Peer           string          `json:"peer"`
	Namespace      string          `json:"namespace"`
	Pod            json.RawMessage `json:"pod"`
	ServiceAccount serviceAccount  `json:"serviceAccount"`
	Config         config          `json:"config"`
}

type answer struct {
	Patch  json.RawMessage `json:"patch,omitempty"`
	Denied string          `json:"denied,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func main() {
	// The Azure webhook asks the apiserver's version (native sidecars from 1.32): a stand-in answers 1.35.
	version := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"major":"1","minor":"35","gitVersion":"v1.35.4"}`))
	}))
	defer version.Close()
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var req request
		var got answer
		if err := json.Unmarshal(scanner.Bytes(), &req); err != nil {
			got.Error = err.Error()
		} else if req.Peer == "azure" {
			got = azure(req, version.URL)
		} else if req.Peer == "aws" {
			got = aws(req)
		} else {
			got.Error = fmt.Sprintf("unknown peer %q", req.Peer)
		}
		if err := out.Encode(got); err != nil {
			panic(err)
		}
	}
}

func serviceAccountObject(req request) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{
			Name: req.ServiceAccount.Name, Namespace: req.Namespace, Annotations: req.ServiceAccount.Annotations,
		},
	}
}

func azure(req request, apiserver string) answer {
	tenant := req.Config.TenantID
	if tenant == "" {
		tenant = "tenant-of-the-webhook" // the peer refuses to start without one
	}
	if err := os.Setenv("AZURE_TENANT_ID", tenant); err != nil {
		return answer{Error: err.Error()}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return answer{Error: err.Error()}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(serviceAccountObject(req)).Build()
	handler, err := azwi.NewPodMutator(c, c, "", scheme, &rest.Config{Host: apiserver}, "", "")
	if err != nil {
		return answer{Error: err.Error()}
	}
	resp := handler.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create,
		Namespace: req.Namespace,
		Object:    runtime.RawExtension{Raw: req.Pod},
	}})
	if !resp.Allowed {
		return answer{Denied: resp.Result.Message}
	}
	patch, err := json.Marshal(resp.Patches)
	if err != nil {
		return answer{Error: err.Error()}
	}
	return answer{Patch: patch}
}

func aws(req request) answer {
	sa := serviceAccountObject(req)
	if _, set := sa.Annotations["eks.amazonaws.com/sts-regional-endpoints"]; req.Config.StsRegionalEndpoints && !set {
		// the peer's --sts-regional-endpoint flag: the default for ServiceAccounts that do not say
		annotations := map[string]string{"eks.amazonaws.com/sts-regional-endpoints": "true"}
		for k, v := range sa.Annotations {
			annotations[k] = v
		}
		sa.Annotations = annotations
	}
	opts := []eks.ModifierOpt{
		eks.WithServiceAccountCache(cache.NewFakeServiceAccountCache(sa)),
	}
	if cc := req.Config.ContainerCredentials; cc != nil {
		identity := containercredentials.Identity{Namespace: req.Namespace, ServiceAccount: req.ServiceAccount.Name}
		opts = append(opts, eks.WithContainerCredentialsConfig(&containercredentials.FakeConfig{
			Audience: cc.Audience, MountPath: cc.MountPath, VolumeName: cc.VolumeName, TokenPath: cc.TokenPath,
			FullUri: cc.URI, Identities: map[containercredentials.Identity]bool{identity: true},
		}))
	} else {
		opts = append(opts, eks.WithContainerCredentialsConfig(&containercredentials.FakeConfig{}))
	}
	if req.Config.Region != "" {
		opts = append(opts, eks.WithRegion(req.Config.Region))
	}
	modifier := eks.NewModifier(rand.New(zeroSource{}), opts...)
	resp := modifier.MutatePod(&v1beta1.AdmissionReview{Request: &v1beta1.AdmissionRequest{
		Namespace: req.Namespace,
		Object:    runtime.RawExtension{Raw: req.Pod},
	}})
	if resp.Result != nil && resp.Result.Message != "" {
		return answer{Denied: resp.Result.Message}
	}
	if len(resp.Patch) == 0 {
		return answer{Patch: json.RawMessage("[]")}
	}
	return answer{Patch: resp.Patch}
}

// zeroSource draws 0, as the peer's own tests do (getAlwaysZeroRand): the jitter it adds to a container-credentials
// token's default expiration is then the same on every run.
type zeroSource struct{}

func (zeroSource) Int63() int64 { return 0 }
func (zeroSource) Seed(int64)   {}
