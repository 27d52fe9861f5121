package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/plugin"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// The checks of `kubectl salesforce exec` need what a person has: a cluster (kube-apiserver and
// etcd from bin/k8s, as the envtest suites start them, with the CRDs and webhooks), the operator
// (in this process), a Connected SalesforceOrg, and a RoleBinding of the shipped
// org-user ClusterRole. All of it listens on loopback, inside the run's network
// namespace. The plugin runs in this process too (plugin.Run), as that person (--as), and runs
// the real CLI with the hand-out in its environment.

// opsNamespace, opsOrg and opsSandbox are the namespace and SalesforceOrgs the exec checks use
// (opsSandbox authorised through opsOrg, at its own sandbox-like My Domain); opsUser is the
// person who runs them.
const (
	opsNamespace   = "acme"
	opsOrg         = "acme-ops"
	opsSandbox     = "acme-ops-uat"
	opsSandboxHost = "acme-ops--uat.sandbox.my.sftest.test"
	opsUser        = "dev@acme.example.com"
)

type cluster struct {
	env        *envtest.Environment
	k8s        client.Client
	kubeconfig string
	stop       func()
}

// clusterOnce starts the cluster at the first exec check; a failure fails every exec check.
func (h *harness) startCluster() (*cluster, error) {
	h.clusterOnce.Do(func() { h.cluster, h.clusterErr = h.newCluster() })
	return h.cluster, h.clusterErr
}

func (h *harness) newCluster() (*cluster, error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard))) // the operator's log is not this run's output
	env, err := localenv.New(h.root, true)
	if err != nil {
		return nil, err
	}
	// The namespace has no default route, from which kube-apiserver would pick the address it
	// advertises: it is loopback's.
	env.ControlPlane.GetAPIServer().Configure().Set("advertise-address", "127.0.0.1")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	c := &cluster{env: env}
	wh := env.WebhookInstallOptions
	mgr, err := operator.New(cfg, operator.Options{
		MetricsAddr: "0", ProbeAddr: "0", EnableWebhooks: true,
		WebhookHost: wh.LocalServingHost, WebhookPort: wh.LocalServingPort, WebhookCertDir: wh.LocalServingCertDir,
		AllowedHosts: []string{h.s.Host(), sandboxHost + ":" + h.port(), opsSandboxHost + ":" + h.port()}, RootCAs: h.s.CertPool(),
		SalesforceTimeout: 10 * time.Second,
	})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("setting up the operator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	c.stop = func() { cancel(); <-done; _ = env.Stop() }
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		c.stop()
		return nil, errors.New("the operator's cache did not sync")
	}
	if c.k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme}); err != nil {
		c.stop()
		return nil, err
	}
	c.kubeconfig = filepath.Join(h.dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, env.KubeConfig, 0o600); err != nil {
		c.stop()
		return nil, err
	}
	if err := h.declare(c); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) close() {
	if c != nil && c.stop != nil {
		c.stop()
	}
}

// declare creates the namespace, the org with its credential Secret (the ops org's auth URL),
// the shipped org-user ClusterRole bound to opsUser with get on Secrets, and waits
// until the org is Connected.
func (h *harness) declare(c *cluster) error {
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(h.root, "config", "rbac", "org_user_role.yaml"))
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		return err
	}
	person := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: opsUser}}
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: opsNamespace, Name: name} }
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opsNamespace}},
		role,
		&rbacv1.RoleBinding{ObjectMeta: meta("dev-uses-orgs"), Subjects: person,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}},
		&rbacv1.Role{ObjectMeta: meta("reads-secrets"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: meta("dev-reads-secrets"), Subjects: person,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reads-secrets"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: opsNamespace, Name: opsOrg + "-auth", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			Data: map[string][]byte{sfv1.DefaultAuthSecretKey: []byte(h.ops.AuthURL())}},
		&sfv1.SalesforceOrg{ObjectMeta: meta(opsOrg),
			Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: opsOrg + "-auth"}}},
		&sfv1.SalesforceOrg{ObjectMeta: meta(opsSandbox),
			Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeSandbox,
				SandboxOf: &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: opsOrg}, SandboxName: "uat"}}},
	} {
		if err := c.k8s.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, name := range []string{opsOrg, opsSandbox} {
		for {
			org := &sfv1.SalesforceOrg{}
			if err := c.k8s.Get(ctx, client.ObjectKey{Namespace: opsNamespace, Name: name}, org); err == nil && org.Status.Connection == sfv1.ConnectionConnected {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("SalesforceOrg %s never became Connected", name)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// envMu serialises kubectlSalesforceExec's swap of this process's environment.
var envMu sync.Mutex

// kubectlSalesforceExec runs `kubectl salesforce exec org -- argv...` in this process as
// opsUser. The command's environment is the CLI's (h.env) with a HOME of its own where no `sf
// org login` ever ran before, plus what exec adds. It returns the command's stdout and that HOME,
// and fails when exec exits non-zero or leaves a SalesforceAccessToken behind.
func (h *harness) kubectlSalesforceExec(org string, argv ...string) (string, string, error) {
	c, err := h.startCluster()
	if err != nil {
		return "", "", fmt.Errorf("the cluster for exec: %w", err)
	}
	home, err := os.MkdirTemp(h.dir, "exec-home-")
	if err != nil {
		return "", "", err
	}
	env := []string{"HOME=" + home}
	for _, kv := range h.env {
		if !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	var out, errOut bytes.Buffer
	args := append([]string{"--kubeconfig", c.kubeconfig, "--as", opsUser, "--as-group", "system:authenticated",
		"exec", org, "-n", opsNamespace, "--lifetime", "10m", "--"}, argv...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*cliTimeout)
	defer cancel()
	envMu.Lock()
	saved := os.Environ()
	os.Clearenv()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v)
	}
	code := plugin.Run(ctx, plugin.Env{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}, args)
	os.Clearenv()
	for _, kv := range saved {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v)
	}
	envMu.Unlock()

	var left sfv1.SalesforceAccessTokenList
	if err := c.k8s.List(context.Background(), &left, client.InNamespace(opsNamespace)); err != nil {
		return "", home, err
	}
	if len(left.Items) > 0 {
		return "", home, fmt.Errorf("%d SalesforceAccessTokens left after exec", len(left.Items))
	}
	if code != 0 {
		return out.String(), home, fmt.Errorf("exec exited %d: %s", code, strings.TrimSpace(errOut.String()))
	}
	return out.String(), home, nil
}

// hasAuthFile tells whether the CLI's state directory holds an org's auth file (<username>.json).
func hasAuthFile(entries []os.DirEntry) bool {
	for _, e := range entries {
		if strings.Contains(e.Name(), "@") && strings.HasSuffix(e.Name(), ".json") {
			return true
		}
	}
	return false
}

// organizationQuery checks the JSON of `sf data query -q "SELECT Id, IsSandbox FROM Organization"
// --json`: one record, o's.
func (h *harness) organizationQuery(stdout string, o *sftest.Org) error {
	var res cliResult
	if err := json.Unmarshal([]byte(lastJSON(stdout)), &res); err != nil {
		return fmt.Errorf("no JSON answer from sf data query: %s", stdout)
	}
	if res.Status != 0 {
		return fmt.Errorf("sf data query: status %d: %s: %s", res.Status, res.Name, res.Message)
	}
	var r struct {
		TotalSize int              `json:"totalSize"`
		Records   []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(res.Result, &r); err != nil {
		return err
	}
	if err := want("totalSize", r.TotalSize, 1); err != nil {
		return err
	}
	id := fmt.Sprint(r.Records[0]["Id"])
	if len(id) < 15 || !strings.HasPrefix(o.OrgID(), id[:15]) {
		return fmt.Errorf("the Organization's Id is %s, want %s's %s", id, o.Name(), o.OrgID())
	}
	if sb, ok := r.Records[0]["IsSandbox"]; ok {
		return want("IsSandbox", sb, o.Spec().Kind == sftest.Sandbox)
	}
	return nil
}

// lastJSON is the last top-level JSON object of s: the CLI's answer when other output came first.
func lastJSON(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n{"); i >= 0 {
		return s[i+1:]
	}
	return s
}

var execChecks = []check{
	{"kubectl salesforce exec -- sf data query (SF_TARGET_ORG is a handed-out token)", func(h *harness) error {
		before := h.s.CallsFor(h.ops)
		out, home, err := h.kubectlSalesforceExec(opsOrg, h.sf, "data", "query", "-q", "SELECT Id FROM Organization", "--json")
		if err != nil {
			return fmt.Errorf("%w %s", err, out)
		}
		if h.s.CallsFor(h.ops) == before {
			return errors.New("the CLI never called the org")
		}
		if entries, _ := os.ReadDir(filepath.Join(home, ".sfdx")); hasAuthFile(entries) {
			return errors.New("the command's HOME holds an org's auth file: something logged in")
		}
		return h.organizationQuery(out, h.ops)
	}},
	{"kubectl salesforce exec -- sf data query (a sandboxOf org: the sandbox's own session)", func(h *harness) error {
		before := h.s.CallsFor(h.opsUAT)
		out, _, err := h.kubectlSalesforceExec(opsSandbox, h.sf, "data", "query", "-q", "SELECT Id, IsSandbox FROM Organization", "--json")
		if err != nil {
			return fmt.Errorf("%w %s", err, out)
		}
		if h.s.CallsFor(h.opsUAT) == before {
			return errors.New("the CLI never called the sandbox")
		}
		return h.organizationQuery(out, h.opsUAT)
	}},
	{"kubectl salesforce exec -- sf org login access-token (SF_ACCESS_TOKEN), then sf data query --target-org", func(h *harness) error {
		script := `"$0" org login access-token --instance-url "$SF_ORG_INSTANCE_URL" --no-prompt --alias x --json >"$1" || { cat "$1"; exit 1; }
exec "$0" data query -q "SELECT Id FROM Organization" --target-org x --json`
		loginOut := filepath.Join(h.dir, "login-access-token.json")
		out, _, err := h.kubectlSalesforceExec(opsOrg, "/bin/sh", "-c", script, h.sf, loginOut)
		if err != nil {
			return fmt.Errorf("%w %s", err, out)
		}
		var login struct {
			Username string `json:"username"`
			OrgID    string `json:"orgId"`
		}
		var res cliResult
		if err := json.Unmarshal(must(os.ReadFile(loginOut)), &res); err != nil || res.Status != 0 {
			return fmt.Errorf("sf org login access-token: status %d: %s: %s", res.Status, res.Name, res.Message)
		}
		if err := json.Unmarshal(res.Result, &login); err != nil {
			return err
		}
		if err := errors.Join(want("username", login.Username, h.ops.Username()), want("orgId", login.OrgID, h.ops.OrgID())); err != nil {
			return err
		}
		return h.organizationQuery(out, h.ops)
	}},
}

// opsOrgSpec is the org the exec checks use: an org of its own, so that withdrawing a hand-out
// (which revokes the chain's session) touches no other check's session.
var opsOrgSpec = sftest.OrgSpec{Name: opsOrg, Kind: sftest.Production, Username: "admin@acme-ops.example.com"}
