// Package demo seeds the namespace that `make run` shows on its embedded control plane, and that
// the README's tour runs against: a production org, two sandboxes (one with its own auth URL, one
// authorised through production), a Developer Edition Dev Hub, an org on JWT bearer, an
// implementation and a pipeline stage, all connected to the fake Salesforce; and one org of the
// fake, acme-dev, that waits to be connected with `kubectl salesforce login`, as its demo user.
// It writes the demo kubeconfig, whose context tells the plugin where the fake Salesforce is and
// which CA it uses. The tour test seeds the same objects, so the README stays true. It is never
// part of a deployed operator, and the only password it ever prints is the fake's demo user's.
package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/plugin"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// Namespace is where the demo lives; the demo kubeconfig makes it the current namespace.
const Namespace = "demo"

// Orgs are the demo's SalesforceOrgs: an auth URL each for the first three, JWT bearer for
// acme-ci, and acme-qa authorised through acme-prod.
var Orgs = []string{"acme-prod", "acme-uat", "acme-devhub", "acme-ci", "acme-qa"}

// Waiting is the fake's org that no SalesforceOrg declares yet: the README's "connect an org"
// logs in to it with the plugin, as its user (WaitingUser).
const Waiting = "acme-dev"

// WaitingUser is the username of Waiting's user on the fake's login page.
const WaitingUser = "admin@acme-dev.example.com"

// Seed creates the demo namespace and its objects, retrying while the webhooks come up. It
// returns the fake orgs by name (the names in Orgs, and Waiting).
func Seed(ctx context.Context, c client.Client, fake *sftest.Server) (map[string]*sftest.Org, error) {
	prod := fake.AddOrg(sftest.OrgSpec{Name: "acme-prod", Kind: sftest.Production})
	uat := fake.AddOrg(sftest.OrgSpec{Name: "acme-uat", Kind: sftest.Sandbox})
	hub := fake.AddOrg(sftest.OrgSpec{Name: "acme-devhub", Kind: sftest.DeveloperEdition, DevHub: true})
	ci := fake.AddOrg(sftest.OrgSpec{Name: "acme-ci", Kind: sftest.Production, Username: "ci@acme-ci.example.com"})
	qa := fake.AddOrg(sftest.OrgSpec{Name: "acme-qa", Kind: sftest.Sandbox, Production: prod, SandboxName: "qa"})
	// Its user has not allowed the CLI's app yet: the first login asks "Allow Access?", as
	// Salesforce does.
	dev := fake.AddOrg(sftest.OrgSpec{Name: Waiting, Kind: sftest.Sandbox, Username: WaitingUser, ApprovalRequired: true})
	fakes := map[string]*sftest.Org{"acme-prod": prod, "acme-uat": uat, "acme-devhub": hub, "acme-ci": ci, "acme-qa": qa, Waiting: dev}
	ciKey, ciUser, ciPEM := ci.JWT()
	ns := Namespace
	ref := func(n string) *sfv1.LocalObjectReference { return &sfv1.LocalObjectReference{Name: n} }
	org := func(name string, typ sfv1.OrgType, impl *sfv1.LocalObjectReference, devHub bool) *sfv1.SalesforceOrg {
		return &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: sfv1.SalesforceOrgSpec{
			Type: typ, AuthSecretRef: sfv1.SecretKeyReference{Name: name + "-auth"}, ImplementationRef: impl,
			DevHub: devHub, DefaultDevHub: devHub,
		}}
	}
	secret := func(name, authURL string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-auth", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: authURL}}
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		secret("acme-prod", prod.AuthURL()), secret("acme-uat", uat.AuthURL()), secret("acme-devhub", hub.AuthURL()),
		&sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
			Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme Sales Cloud", ProductionOrgRef: ref("acme-prod")}},
		org("acme-prod", sfv1.OrgTypeProduction, ref("acme"), false),
		org("acme-uat", sfv1.OrgTypeSandbox, ref("acme"), false),
		org("acme-devhub", sfv1.OrgTypeDeveloperEdition, nil, true),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-ci-jwt", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			Data: map[string][]byte{"tls.key": ciPEM}},
		&sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-ci"}, Spec: sfv1.SalesforceOrgSpec{
			Type: sfv1.OrgTypeProduction, JWT: &sfv1.JWTAuth{ClientID: ciKey, Username: ciUser, LoginURL: fake.URL(),
				PrivateKeySecretRef: sfv1.PrivateKeyReference{Name: "acme-ci-jwt"}}}},
		&sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-qa"}, Spec: sfv1.SalesforceOrgSpec{
			Type: sfv1.OrgTypeSandbox, ImplementationRef: ref("acme"),
			SandboxOf: &sfv1.SandboxOf{ProductionOrgRef: *ref("acme-prod"), SandboxName: "qa"}}},
		&sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-uat"},
			Spec: sfv1.PipelineStageSpec{Pipeline: "release", Order: 1, OrgRef: *ref("acme-uat"), Branch: "uat"}},
	}
	for _, o := range objs {
		for attempt := 0; ; attempt++ {
			err := c.Create(ctx, o)
			if err == nil || attempt == 60 || ctx.Err() != nil {
				if err != nil {
					return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
				}
				break
			}
			time.Sleep(500 * time.Millisecond) // the webhook server may not be up yet
		}
	}
	return fakes, nil
}

// WaitReady waits until every demo org, the stage and the implementation are Ready.
func WaitReady(ctx context.Context, c client.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	objs := []client.Object{&sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "release-uat"}},
		&sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "acme"}}}
	for _, name := range Orgs {
		objs = append(objs, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}})
	}
	for _, o := range objs {
		for {
			err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
			if err == nil && ready(o) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%T %s is not Ready: %w", o, o.GetName(), ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func ready(o client.Object) bool {
	type conditioned interface {
		GetConditions() []metav1.Condition
	}
	c := meta.FindStatusCondition(o.(conditioned).GetConditions(), sfv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == o.GetGeneration()
}

// CAFile is the name of the fake Salesforce's CA certificate (PEM) that WriteKubeconfig writes
// beside the kubeconfig: for the plugin (the kubeconfig's context names it), curl or the
// Salesforce CLI.
const CAFile = "salesforce-ca.pem"

// Kubeconfig is raw with the demo namespace as its current context's namespace, so that the
// README's commands work as pasted, without -n, and with the fake Salesforce in the context's
// plugin.EndpointExtension, so that `kubectl salesforce` finds its host, login URL and CA
// (CAFile, beside the kubeconfig) without a flag.
func Kubeconfig(raw []byte, fake *sftest.Server) ([]byte, error) {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return nil, fmt.Errorf("the kubeconfig has no current context")
	}
	ctx.Namespace = Namespace
	ext, err := plugin.EndpointObject(plugin.Endpoint{LoginURL: fake.URL(), AllowedHosts: []string{fake.Host()}, CAFile: CAFile})
	if err != nil {
		return nil, err
	}
	if ctx.Extensions == nil {
		ctx.Extensions = map[string]runtime.Object{}
	}
	ctx.Extensions[plugin.EndpointExtension] = ext
	return clientcmd.Write(*cfg)
}

// WriteKubeconfig writes Kubeconfig(raw, fake) to path (0600) and the fake's CA beside it.
func WriteKubeconfig(path string, raw []byte, fake *sftest.Server) error {
	b, err := Kubeconfig(raw, fake)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), CAFile), fake.CACertPEM(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// IsDemo says whether the kubeconfig context is a demo's: it names a Salesforce for the plugin.
func IsDemo(ctx *clientcmdapi.Context) bool {
	_, ok := ctx.Extensions[plugin.EndpointExtension]
	return ok
}

// Banner is what `make run` prints once the demo is up; the README's "Start here" shows it.
// kubeconfig is the path as the user should export it; password is the demo user's on the fake's
// login page (a fake's, never a Salesforce credential: it is printed here and nowhere else).
func Banner(kubeconfig, fakeURL, password string) string {
	dir := filepath.Dir(kubeconfig)
	return fmt.Sprintf(`The demo is up: namespace demo, five orgs Connected. In another terminal:

  export KUBECONFIG=%s
  kubectl get salesforce

The org %s waits to be connected. make run built the kubectl plugin into bin/:

  export PATH=$PWD/bin:$PATH
  kubectl salesforce login %s --type Sandbox

In the browser, log in to the fake Salesforce as %s, password %s
(the fake's demo user; it exists only in this demo), and allow the app when it asks (the first
time, as Salesforce does). The plugin finds the fake (%s) and its CA
(%s/%s) in that kubeconfig's context; your browser does not know that CA: accept its warning
for 127.0.0.1, or trust the file.

Ctrl-C stops everything.
`, kubeconfig, Waiting, Waiting, WaitingUser, password, fakeURL, dir, CAFile)
}
