package certs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/localenv"
)

var k8s client.Client

// One real API server with the project's webhook configurations installed (envtest points them
// at a local URL with its own caBundle, which the certificate manager replaces).
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	env, err := localenv.New("../..", true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

const ns = "salesforce-operator-system"

func options(now func() time.Time) certs.Options {
	return certs.Options{
		Namespace:                      ns,
		SecretName:                     certs.DefaultSecretName,
		ServiceName:                    certs.DefaultServiceName,
		MutatingWebhookConfiguration:   "mutating-webhook-configuration",
		ValidatingWebhookConfiguration: "validating-webhook-configuration",
		CAValidity:                     10 * time.Hour,
		CertValidity:                   time.Hour,
		Now:                            now,
	}
}

// A walk through the certificate's life: two replicas start at once and agree on one Secret, the
// webhook configurations trust it, a restart reuses it, a certificate near expiry is renewed under
// the same CA (and picked up by the other replica), a CA near expiry is rotated with the old CA
// kept in the bundle, and a caBundle lost to a re-apply comes back.
func TestTheWebhookCertificateLifecycle(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	replicas := make([]*certs.Manager, 2)
	for i := range replicas {
		m, err := certs.New(k8s, options(nil))
		if err != nil {
			t.Fatal(err)
		}
		if m.Ready(nil) == nil {
			t.Fatal("ready before it has a certificate")
		}
		if _, err := m.GetCertificate(nil); err == nil {
			t.Fatal("serves a certificate before it has one")
		}
		replicas[i] = m
	}
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, m := range replicas {
		wg.Go(func() { errs[i] = m.Ensure(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	secret := getSecret(t)
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %s", secret.Type)
	}
	for i, m := range replicas {
		if err := m.Ready(nil); err != nil {
			t.Errorf("replica %d not ready: %v", i, err)
		}
		assertServes(t, m, secret)
	}
	assertTrusted(t, secret)
	created := secret.ResourceVersion

	// A restart reads the same Secret and writes nothing.
	restarted, _ := certs.New(k8s, options(nil))
	if err := restarted.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if secret = getSecret(t); secret.ResourceVersion != created {
		t.Errorf("a restart rewrote the Secret (resourceVersion %s, was %s)", secret.ResourceVersion, created)
	}
	assertServes(t, restarted, secret)

	// 45 minutes on, less than a third of the hour is left: a new serving certificate, same CA.
	later, _ := certs.New(k8s, options(func() time.Time { return time.Now().Add(45 * time.Minute) }))
	if err := later.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := getSecret(t)
	if bytes.Equal(renewed.Data[certs.KeyTLSCert], secret.Data[certs.KeyTLSCert]) {
		t.Fatal("a serving certificate near expiry was not renewed")
	}
	if !bytes.Equal(renewed.Data[certs.KeyCACert], secret.Data[certs.KeyCACert]) {
		t.Error("renewing the serving certificate changed the CA")
	}
	assertServes(t, later, renewed)
	assertTrusted(t, renewed)
	// The other replica picks the renewal up at its next check.
	if err := replicas[0].Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	assertServes(t, replicas[0], renewed)

	// 7 hours on, the CA has less than a third of its 10 hours: a new CA, the old one still trusted.
	rotated, _ := certs.New(k8s, options(func() time.Time { return time.Now().Add(7 * time.Hour) }))
	if err := rotated.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	secret = getSecret(t)
	bundle := parseBundle(t, secret.Data[certs.KeyCACert])
	old := parseBundle(t, renewed.Data[certs.KeyCACert])
	if len(bundle) != 2 || bundle[0].Equal(old[0]) || !bundle[1].Equal(old[0]) {
		t.Fatalf("after a CA rotation the bundle holds %d certificates; want the new CA, then the old", len(bundle))
	}
	assertServes(t, rotated, secret)
	assertTrusted(t, secret)

	// A re-applied configuration without caBundle gets it back at the next check.
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = nil
	}
	if err := k8s.Update(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	if err := rotated.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	assertTrusted(t, secret)
}

func getSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: certs.DefaultSecretName}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertServes checks m serves the Secret's certificate.
func assertServes(t *testing.T, m *certs.Manager, s *corev1.Secret) {
	t.Helper()
	c, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(s.Data[certs.KeyTLSCert])
	if block == nil || !bytes.Equal(c.Certificate[0], block.Bytes) {
		t.Error("the manager serves another certificate than the Secret's")
	}
}

// assertTrusted checks every webhook's caBundle is the Secret's CA bundle, and that the API
// server would accept the Secret's serving certificate for the webhook Service with it.
func assertTrusted(t *testing.T, s *corev1.Secret) {
	t.Helper()
	ctx := context.Background()
	var bundles [][]byte
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "mutating-webhook-configuration"}, mwc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, w := range vwc.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	if len(bundles) < 2 {
		t.Fatalf("%d webhooks installed", len(bundles))
	}
	for i, b := range bundles {
		if !bytes.Equal(b, s.Data[certs.KeyCACert]) {
			t.Errorf("webhook %d: caBundle is not the Secret's CA", i)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundles[0])
	leaf := parseBundle(t, s.Data[certs.KeyTLSCert])[0]
	for _, host := range []string{certs.DefaultServiceName + "." + ns + ".svc", certs.DefaultServiceName + "." + ns + ".svc.cluster.local"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: leaf.NotBefore.Add(2 * time.Hour)}); err != nil {
			t.Errorf("the serving certificate does not verify for %s: %v", host, err)
		}
	}
}

func parseBundle(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
