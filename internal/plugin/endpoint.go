package plugin

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
)

// EndpointExtension is the name of the kubeconfig context extension that tells the plugin which
// Salesforce the context's cluster talks to when that is not Salesforce itself: `make run` writes
// it into its demo kubeconfig for the demo's fake Salesforce, as minikube writes its
// context_info. kubectl ignores it.
const EndpointExtension = "salesforce.sfops.io/salesforce"

// Endpoint is the extension's content: what --salesforce-allowed-hosts, --salesforce-ca-file and
// a new org's login URL default to for that context. A kubeconfig is trusted like the cluster it
// names (it can already run credential plugins), so trusting its Salesforce as well adds no new
// trust; the flags override it.
type Endpoint struct {
	// LoginURL is where a new org logs in (https://host[:port]), instead of login. or test.
	LoginURL string `json:"loginURL"`
	// AllowedHosts are hosts besides Salesforce's own that may receive a credential.
	AllowedHosts []string `json:"allowedHosts,omitempty"`
	// CAFile is a PEM bundle to trust in addition to the system roots; a relative path is
	// relative to the kubeconfig file.
	CAFile string `json:"caFile,omitempty"`
}

// EndpointObject is e as a kubeconfig extension, for clientcmdapi.Context.Extensions.
func EndpointObject(e Endpoint) (runtime.Object, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &runtime.Unknown{Raw: b, ContentType: runtime.ContentTypeJSON}, nil
}

// kubeconfigEndpoint is the Endpoint of the context the command uses (--context, else the
// current one), or nil when it has none.
func (o *options) kubeconfigEndpoint() (*Endpoint, error) {
	loader := o.kube.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, nil // no kubeconfig: the client's own error says so later
	}
	name := raw.CurrentContext
	if o.kube.Context != nil && *o.kube.Context != "" {
		name = *o.kube.Context
	}
	ctx := raw.Contexts[name]
	if ctx == nil {
		return nil, nil
	}
	ext, ok := ctx.Extensions[EndpointExtension]
	if !ok {
		return nil, nil
	}
	u, ok := ext.(*runtime.Unknown)
	if !ok {
		return nil, fmt.Errorf("kubeconfig context %q: extension %s is not a JSON object", name, EndpointExtension)
	}
	e := &Endpoint{}
	if err := json.Unmarshal(u.Raw, e); err != nil {
		return nil, fmt.Errorf("kubeconfig context %q: extension %s: %w", name, EndpointExtension, err)
	}
	if !strings.HasPrefix(e.LoginURL, "https://") {
		return nil, fmt.Errorf("kubeconfig context %q: extension %s: loginURL must be https://host[:port]", name, EndpointExtension)
	}
	if e.CAFile != "" && !filepath.IsAbs(e.CAFile) {
		if origin := ctx.LocationOfOrigin; origin != "" {
			e.CAFile = filepath.Join(filepath.Dir(origin), e.CAFile)
		}
	}
	return e, nil
}

// salesforceSettings are the allowed hosts, CA file and default login URL in effect: the flags
// when either of the first two is given, else the kubeconfig context's Endpoint, else none.
func (o *options) salesforceSettings() (allowedHosts, caFile, loginURL string, err error) {
	if o.allowedHosts != "" || o.caFile != "" {
		return o.allowedHosts, o.caFile, "", nil
	}
	e, err := o.kubeconfigEndpoint()
	if err != nil || e == nil {
		return "", "", "", err
	}
	return strings.Join(e.AllowedHosts, ","), e.CAFile, e.LoginURL, nil
}
