package operator_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// One `kubectl apply -k config/default` installs a working operator on a bare cluster: on an API
// server with nothing installed (no CRDs, no cert-manager) the apply succeeds, and the manager,
// started with exactly the args config/default's Deployment gives it and as that Deployment's
// ServiceAccount (so with only the shipped RBAC), writes its certificate to the Secret its flags
// name, injects the CA into both webhook configurations config/default installs, reports ready
// only then, and the API server calls its mutating and validating webhooks over TLS it trusts.
func TestDefaultConfigWorksOnABareAPIServer(t *testing.T) {
	const tree = "../../config/default"
	objs := rendered(t, tree)
	if len(objs["Deployment"]) != 1 || len(objs["MutatingWebhookConfiguration"]) != 1 || len(objs["ValidatingWebhookConfiguration"]) != 1 {
		t.Fatalf("%s: want one Deployment and one webhook configuration of each kind", tree)
	}
	var d appsv1.Deployment
	must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(objs["Deployment"][0].Object, &d))
	mutatingName, validatingName := objs["MutatingWebhookConfiguration"][0].GetName(), objs["ValidatingWebhookConfiguration"][0].GetName()

	env, admin := startBareControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kubeconfig, env.KubeConfig, 0o600))
	apply := exec.Command("kubectl", "apply", "-k", tree)
	apply.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k %s on a bare API server: %v\n%s", tree, err, out)
	}
	c, err := client.New(admin, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: mutatingName}, mutating))
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: validatingName}, validating))
	service := mutating.Webhooks[0].ClientConfig.Service

	// The manager's options: the Deployment's args, parsed by the manager's own flags.
	var o operator.Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	finish := operator.BindFlags(fs, &o)
	(&zap.Options{}).BindFlags(fs)
	must(t, fs.Parse(d.Spec.Template.Spec.Containers[0].Args))
	must(t, finish())
	for _, check := range []struct{ flag, got, want string }{
		{"--webhook-cert-source", o.WebhookCertSource, operator.WebhookCertsSelf},
		{"--webhook-service-name", o.WebhookCerts.ServiceName, service.Name},
		{"--mutating-webhook-configuration", o.WebhookCerts.MutatingWebhookConfiguration, mutatingName},
		{"--validating-webhook-configuration", o.WebhookCerts.ValidatingWebhookConfiguration, validatingName},
	} {
		if check.got != check.want {
			t.Errorf("config/default's Deployment gives %s=%q; config/default's object is %q", check.flag, check.got, check.want)
		}
	}
	if o.WebhookCerts.SecretName == "" {
		t.Error("config/default's Deployment names no Secret for the webhook certificate")
	}
	if t.Failed() {
		t.FailNow()
	}

	// What a pod gives the manager and this process lacks. Its namespace (the Secret's and the
	// lease's, which the manager reads from the pod's service-account mount) is the Deployment's.
	// Ports are free ones. There is no cluster network, so the API server calls the webhooks on
	// loopback by URL instead of through the Service (as envtest does), and the certificate
	// covers 127.0.0.1 too.
	if o.WebhookCerts.Namespace == "" {
		o.WebhookCerts.Namespace = d.Namespace
	}
	if o.LeaderElectNS == "" {
		o.LeaderElectNS = d.Namespace
	}
	host, port, err := net.SplitHostPort(freeAddr(t))
	must(t, err)
	o.WebhookHost = host
	if o.WebhookPort, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	o.WebhookCerts.ExtraHosts = []string{host}
	o.MetricsAddr, o.ProbeAddr = "0", freeAddr(t)
	o.SkipNameValidation = true
	byURL := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := "https://" + net.JoinHostPort(host, port) + *cc.Service.Path
		cc.Service, cc.URL = nil, &url
	}
	for i := range mutating.Webhooks {
		byURL(&mutating.Webhooks[i].ClientConfig)
	}
	for i := range validating.Webhooks {
		byURL(&validating.Webhooks[i].ClientConfig)
	}
	must(t, c.Update(ctx, mutating))
	must(t, c.Update(ctx, validating))

	sa := serviceAccountConfig(t, ctx, admin, rbacCase{saNamespace: d.Namespace, saName: d.Spec.Template.Spec.ServiceAccountName})
	mgr, err := operator.New(sa, o)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = mgr.Start(ctx) }()
	defer func() { cancel(); <-stopped }() // before the control plane stops

	waitFor(t, "/readyz 200", func() string {
		resp, err := http.Get("http://" + o.ProbeAddr + "/readyz?verbose")
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

	// Ready: the Secret holds a certificate for the Service, and every webhook trusts its CA.
	secret := &corev1.Secret{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: d.Namespace, Name: o.WebhookCerts.SecretName}, secret))
	ca := secret.Data[certs.KeyCACert]
	block, _ := pem.Decode(secret.Data[certs.KeyTLSCert])
	if block == nil {
		t.Fatalf("Secret %s holds no serving certificate", secret.Name)
	}
	serving, err := x509.ParseCertificate(block.Bytes)
	must(t, err)
	if dns := fmt.Sprintf("%s.%s.svc", service.Name, service.Namespace); !slices.Contains(serving.DNSNames, dns) {
		t.Errorf("the serving certificate is for %v, not the webhook Service %s", serving.DNSNames, dns)
	}
	must(t, c.Get(ctx, client.ObjectKey{Name: mutatingName}, mutating))
	must(t, c.Get(ctx, client.ObjectKey{Name: validatingName}, validating))
	var bundles [][]byte
	for _, w := range mutating.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, w := range validating.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for i, b := range bundles {
		if len(ca) == 0 || !bytes.Equal(b, ca) {
			t.Fatalf("ready, but webhook %d of %d does not trust the Secret's CA", i+1, len(bundles))
		}
	}

	// Served: the mutating webhook stamps the creator on a new org and keeps it on an update that
	// drops it; the validating webhook refuses to delete an org a stage holds.
	const ns = "team-a"
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	org := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: "prod-auth"}}}
	must(t, c.Create(ctx, org))
	if org.Annotations[sfv1.CreatedByAnnotation] == "" {
		t.Fatalf("the mutating webhook did not run: annotations %v", org.Annotations)
	}
	changed := org.DeepCopy()
	changed.Annotations[sfv1.CreatedByAnnotation] = "someone-else"
	must(t, c.Patch(ctx, changed, client.MergeFrom(org)))
	if got, want := changed.Annotations[sfv1.CreatedByAnnotation], org.Annotations[sfv1.CreatedByAnnotation]; got != want {
		t.Errorf("the mutating webhook let the creator change from %q to %q", want, got)
	}
	must(t, c.Create(ctx, &sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-prod"},
		Spec: sfv1.PipelineStageSpec{Pipeline: "release", OrgRef: sfv1.LocalObjectReference{Name: org.Name}}}))
	waitFor(t, "the validating webhook refusing to delete an org in use", func() string {
		err := c.Delete(ctx, org, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "cannot be deleted") {
			return fmt.Sprintf("deleting the org: %v", err)
		}
		return ""
	})
}

// startControlPlane starts a control plane of the test's own (skipped with -short) with the
// project's CRDs, and its webhook configurations if webhooks, and stops it when the test ends.
func startControlPlane(t *testing.T, webhooks bool) (*envtest.Environment, *rest.Config) {
	t.Helper()
	return startEnv(t, webhooks, true)
}

// startBareControlPlane starts one with nothing installed: no CRDs, no webhook configurations.
func startBareControlPlane(t *testing.T) (*envtest.Environment, *rest.Config) {
	t.Helper()
	return startEnv(t, false, false)
}

func startEnv(t *testing.T, webhooks, crds bool) (*envtest.Environment, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts its own control plane")
	}
	env, err := localenv.New("../..", webhooks)
	if err != nil {
		t.Fatal(err)
	}
	if !crds {
		env.CRDDirectoryPaths, env.ErrorIfCRDPathMissing = nil, false
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, cfg
}

func freeAddr(t *testing.T) string { return testkit.FreeAddr(t) }
