package operator_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// With --webhook-cert-source=self the operator needs nothing but the API server: it writes its
// certificate to a Secret, injects the CA into the webhook configurations, reports ready only
// then, and the API server calls its webhooks over TLS it trusts (the mutating webhook stamps
// the creator on a new org).
func TestWebhooksServeTheirOwnCertificate(t *testing.T) {
	env, cfg := startControlPlane(t, true)
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "salesforce-operator-system"
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))

	probe := freeAddr(t)
	wh := env.WebhookInstallOptions
	mgr, err := operator.New(cfg, operator.Options{
		MetricsAddr: "0", ProbeAddr: probe, SkipNameValidation: true,
		EnableWebhooks: true, WebhookHost: wh.LocalServingHost, WebhookPort: wh.LocalServingPort,
		WebhookCertSource: operator.WebhookCertsSelf,
		WebhookCerts: certs.Options{
			Namespace: ns, SecretName: certs.DefaultSecretName, ServiceName: certs.DefaultServiceName,
			// envtest points the webhooks at a local URL rather than the Service.
			ExtraHosts:                     []string{wh.LocalServingHost},
			MutatingWebhookConfiguration:   "mutating-webhook-configuration",
			ValidatingWebhookConfiguration: "validating-webhook-configuration",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()

	waitFor(t, "/readyz 200", func() string {
		resp, err := http.Get("http://" + probe + "/readyz?verbose")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return string(body)
		}
		return ""
	})
	secret := &corev1.Secret{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: certs.DefaultSecretName}, secret))
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: "mutating-webhook-configuration"}, mwc))
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, secret.Data[certs.KeyCACert]) {
		t.Fatal("ready, but the mutating webhook's caBundle is not the Secret's CA")
	}

	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "auth", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
		StringData: map[string]string{sfv1.DefaultAuthSecretKey: "force://id:secret:token@example.my.salesforce.com"}}))
	org := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: "auth"}}}
	must(t, c.Create(ctx, org))
	if org.Annotations[sfv1.CreatedByAnnotation] == "" {
		t.Errorf("the mutating webhook did not run: annotations %v", org.Annotations)
	}
}

// startControlPlane starts a control plane of the test's own (skipped with -short), with the
// project's webhook configurations installed if webhooks, and stops it when the test ends.
func startControlPlane(t *testing.T, webhooks bool) (*envtest.Environment, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts its own control plane")
	}
	env, err := localenv.New("../..", webhooks)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, cfg
}

func freeAddr(t *testing.T) string { return testkit.FreeAddr(t) }
