package operator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// rbacCase is one way of installing the operator's RBAC: the kustomize tree it comes from, the
// ServiceAccount the manager runs as, and the namespaces it watches ("" for all).
type rbacCase struct {
	name, tree, saNamespace, saName, watch string
}

// The manager, authenticated as its own ServiceAccount with only the shipped RBAC, runs the whole
// flow: orgs connect, a rotated refresh token is written back (and its record created), stages
// and implementations become Ready, the admission webhooks check access and refuse an in-use
// deletion, and leader election holds its lease. Once with the ClusterRoles of config/rbac, once
// with the Roles of config/namespaced.
func TestShippedRBACIsEnough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own control plane")
	}
	for _, tc := range []rbacCase{
		{name: "cluster-wide", tree: "../../config/rbac", saNamespace: "system", saName: "controller-manager"},
		{name: "namespaced", tree: "../../config/namespaced", saNamespace: "salesforce-operator-system",
			saName: "salesforce-operator-controller-manager", watch: "salesforce-operator-system"},
	} {
		t.Run(tc.name, func(t *testing.T) { runAsServiceAccount(t, tc) })
	}
}

func runAsServiceAccount(t *testing.T, tc rbacCase) {
	env, err := localenv.New("../..", true)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(admin, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, ctx, c, tc)
	saConfig := serviceAccountConfig(t, ctx, admin, tc)
	// The control plane enforces RBAC: the ServiceAccount may do only what the shipped rules allow.
	sa, err := client.New(saConfig, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &corev1.PodList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list pods (%v): the control plane does not enforce RBAC, and this test proves nothing", err)
	}
	if tc.watch != "" {
		if err := sa.List(ctx, &corev1.SecretList{}, client.InNamespace("default")); !apierrors.IsForbidden(err) {
			t.Fatalf("namespaced: the ServiceAccount may list Secrets outside its namespace (%v)", err)
		}
	}

	fake, err := sftest.NewStandaloneServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	wh := env.WebhookInstallOptions
	metricsAddr := freeAddr(t)
	opts := operator.Options{
		MetricsAddr: metricsAddr, MetricsSecure: true, ProbeAddr: "0", AllowedHosts: []string{fake.Host()}, RootCAs: fake.CertPool(),
		EnableWebhooks: true, WebhookHost: wh.LocalServingHost, WebhookPort: wh.LocalServingPort, WebhookCertDir: wh.LocalServingCertDir,
		LeaderElect: true, LeaderElectNS: tc.saNamespace, SkipNameValidation: true, RetryBase: 300 * time.Millisecond,
	}
	if tc.watch != "" {
		opts.WatchNamespaces = []string{tc.watch}
	}
	mgr, err := operator.New(saConfig, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	ns := tc.watch
	if ns == "" {
		ns = "team-a"
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	prod := fake.AddOrg(sftest.OrgSpec{Name: tc.name + "-prod"})
	uat := fake.AddOrg(sftest.OrgSpec{Name: tc.name + "-uat", Kind: sftest.Sandbox})
	prod.SetRotateRefreshTokens(true)
	for name, fo := range map[string]*sftest.Org{"prod": prod, "uat": uat} {
		must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-auth", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: fo.AuthURL()}}))
	}
	create := func(obj client.Object) {
		t.Helper()
		waitFor(t, "creating "+obj.GetName()+" (the webhooks come up with the manager)", func() string {
			if err := c.Create(ctx, obj); err != nil {
				return strings.SplitN(err.Error(), "\n", 2)[0]
			}
			return ""
		})
	}
	create(&sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
		Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme", ProductionOrgRef: &sfv1.LocalObjectReference{Name: "prod"}}})
	create(&sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: "prod-auth"}}})
	create(&sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "uat"},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeSandbox, AuthSecretRef: sfv1.SecretKeyReference{Name: "uat-auth"}, ImplementationRef: &sfv1.LocalObjectReference{Name: "acme"}}})
	create(&sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-uat"},
		Spec: sfv1.PipelineStageSpec{Pipeline: "release", OrgRef: sfv1.LocalObjectReference{Name: "uat"}}})

	ready := func(obj client.Object, conds func() []metav1.Condition) {
		t.Helper()
		waitFor(t, obj.GetName()+" Ready", func() string {
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err.Error()
			}
			if cond := meta.FindStatusCondition(conds(), sfv1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
				return "not Ready"
			}
			return ""
		})
	}
	prodOrg, uatOrg := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"}}, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "uat"}}
	stage := &sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-uat"}}
	impl := &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"}}
	ready(prodOrg, func() []metav1.Condition { return prodOrg.Status.Conditions })
	ready(uatOrg, func() []metav1.Condition { return uatOrg.Status.Conditions })
	ready(stage, func() []metav1.Condition { return stage.Status.Conditions })
	ready(impl, func() []metav1.Condition { return impl.Status.Conditions })

	// The rotation was written back, and its record created, by the ServiceAccount.
	waitFor(t, "the rotated refresh token in the Secret and its record", func() string {
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod-auth"}, s); err != nil {
			return err.Error()
		}
		if string(s.Data[sfv1.DefaultAuthSecretKey]) != prod.AuthURL() {
			return "the Secret holds an old token"
		}
		org := &sfv1.SalesforceOrg{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, org); err != nil {
			return err.Error()
		}
		record := "prod-rotation-" + strings.ReplaceAll(string(org.UID), "-", "")[:8]
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: record}, &corev1.Secret{}); err != nil {
			return "rotation record: " + err.Error()
		}
		return ""
	})
	// The webhooks, served by the ServiceAccount's manager, refuse an in-use deletion (their
	// SubjectAccessReview and reads are allowed by the shipped RBAC).
	if err := c.Delete(ctx, uatOrg, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "cannot be deleted") {
		t.Errorf("deleting an org in use: %v", err)
	}
	scrapeMetrics(t, ctx, admin, c, tc, metricsAddr)
	lease := &coordinationv1.Lease{}
	waitFor(t, "the leader's lease", func() string {
		var leases coordinationv1.LeaseList
		if err := c.List(ctx, &leases, client.InNamespace(tc.saNamespace)); err != nil {
			return err.Error()
		}
		for _, l := range leases.Items {
			if strings.HasSuffix(l.Name, "salesforce-operator.sfops.io") && l.Spec.HolderIdentity != nil {
				*lease = l
				return ""
			}
		}
		return "no lease held"
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("the manager stopped with %v", err)
	}
}

// applyRBAC applies the RBAC objects of tc.tree (kubectl kustomize), and nothing else from it.
func applyRBAC(t *testing.T, ctx context.Context, c client.Client, tc rbacCase) {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", tc.tree).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", tc.tree, err)
	}
	must(t, client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.saNamespace}})))
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	applied := 0
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		switch u.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
		default:
			continue
		}
		must(t, c.Create(ctx, u))
		applied++
	}
	if applied < 5 {
		t.Fatalf("only %d RBAC objects in %s", applied, tc.tree)
	}
}

// serviceAccountConfig is a rest.Config that authenticates with a token of the ServiceAccount.
func serviceAccountConfig(t *testing.T, ctx context.Context, admin *rest.Config, tc rbacCase) *rest.Config {
	t.Helper()
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(tc.saNamespace).CreateToken(ctx, tc.saName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for %s/%s: %v", tc.saNamespace, tc.saName, err)
	}
	return &rest.Config{Host: admin.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
}

// scrapeMetrics checks who may read the manager's metrics, served over HTTPS to callers the API
// server authenticates and authorises with the shipped RBAC: a scraper bound to the metrics reader
// role may, while no token, a made-up token or another ServiceAccount may not.
func scrapeMetrics(t *testing.T, ctx context.Context, admin *rest.Config, c client.Client, tc rbacCase, addr string) {
	t.Helper()
	var reader string
	var roles rbacv1.ClusterRoleList
	must(t, c.List(ctx, &roles))
	for _, r := range roles.Items {
		if strings.HasSuffix(r.Name, "salesforce-metrics-reader") {
			reader = r.Name
		}
	}
	if reader == "" {
		t.Fatalf("%s has no metrics reader ClusterRole", tc.tree)
	}
	for _, name := range []string{"prometheus", "nosy"} {
		must(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tc.saNamespace, Name: name}}))
	}
	must(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: tc.saNamespace, Name: "prometheus"}}}))
	token := func(sa string) string {
		return serviceAccountConfig(t, ctx, admin, rbacCase{saNamespace: tc.saNamespace, saName: sa}).BearerToken
	}
	// The server's certificate is the manager's own, self-signed: this checks who may read, not TLS.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scrape := func(token string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		must(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	waitFor(t, "the bound scraper reads the metrics", func() string {
		code, body := scrape(token("prometheus"))
		if code != http.StatusOK || !strings.Contains(body, "salesforce_") {
			return fmt.Sprintf("%d %.200s", code, body)
		}
		return ""
	})
	for what, tc := range map[string]struct {
		token string
		want  int
	}{
		"no token":                  {"", http.StatusUnauthorized},
		"a made-up token":           {"not-a-token", http.StatusUnauthorized},
		"an unbound ServiceAccount": {token("nosy"), http.StatusForbidden},
	} {
		if code, body := scrape(tc.token); code != tc.want {
			t.Errorf("scraping with %s: %d %.200s, want %d", what, code, body, tc.want)
		}
	}
}
