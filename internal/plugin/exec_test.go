package plugin_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// shippedOrgUserRole installs config/rbac's org-user ClusterRole, as shipped.
var shippedOrgUserRole sync.Once

// apiServerLog is what a person's kubectl asked the API server, as seen by a proxy in front of it.
type apiServerLog struct {
	mu   sync.Mutex
	reqs []string // "GET /api/v1/namespaces/ns/secrets/x"
}

func (l *apiServerLog) asked(method, path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.reqs {
		if r == method+" "+path {
			return true
		}
	}
	return false
}

// person is a user of the cluster with the shipped org-user ClusterRole (noUse:
// the same without the verb use) and get on secrets in ns, whose requests go through a proxy that impersonates her,
// records every request, and refuses (403) a request for any of the forbidden Secrets: someone
// who cannot read an org's credential Secret. It returns her kubeconfig.
func person(t *testing.T, ns, name string, noUse bool, forbiddenSecrets ...string) (string, *apiServerLog) {
	t.Helper()
	ctx := context.Background()
	shippedOrgUserRole.Do(func() {
		raw, err := os.ReadFile("../../config/rbac/org_user_role.yaml")
		if err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.ClusterRole{}
		if err := yaml.Unmarshal(raw, role); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	})
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}}
	objs := []client.Object{
		&rbacv1.Role{ObjectMeta: objectMeta(ns, name+"-reads-secrets"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: objectMeta(ns, name+"-reads-secrets"), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name + "-reads-secrets"}},
	}
	if noUse {
		// Everything of the shipped role but the verb use: admission refuses her.
		objs = append(objs, &rbacv1.Role{ObjectMeta: objectMeta(ns, name+"-asks"),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{sfv1.GroupVersion.Group}, Resources: []string{"salesforceorgs"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{sfv1.GroupVersion.Group}, Resources: []string{"salesforceaccesstokens"}, Verbs: []string{"create", "delete", "get", "list", "watch"}}}},
			&rbacv1.RoleBinding{ObjectMeta: objectMeta(ns, name+"-asks"), Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name + "-asks"}})
	} else {
		objs = append(objs, &rbacv1.RoleBinding{ObjectMeta: objectMeta(ns, name+"-uses-orgs"), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "org-user"}})
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: []string{"system:authenticated"}}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = rt
	forbidden := map[string]bool{}
	for _, s := range forbiddenSecrets {
		forbidden["/api/v1/namespaces/"+ns+"/secrets/"+s] = true
	}
	log := &apiServerLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.mu.Lock()
		log.reqs = append(log.reqs, r.Method+" "+r.URL.Path)
		log.mu.Unlock()
		if forbidden[r.URL.Path] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"this person may not read the org's credential Secret"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: srv.URL}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name, Namespace: ns}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path, log
}

// as runs the plugin with the kubeconfig of a person (see person), stdin as its input.
func as(t *testing.T, kubeconfig, stdin string, browser func(string) error, args ...string) result {
	t.Helper()
	if browser == nil {
		browser = func(string) error { return os.ErrInvalid }
	}
	full := append([]string{"--kubeconfig", kubeconfig, "--salesforce-allowed-hosts", fakeSF.Host(), "--salesforce-ca-file", caFile}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runPluginWithInput(ctx, t, stdin, browser, full...)
}

// accessTokensLeft lists the SalesforceAccessTokens of ns.
func accessTokensLeft(t *testing.T, ns string) []string {
	t.Helper()
	var list sfv1.SalesforceAccessTokenList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list.Items {
		names = append(names, a.Name)
	}
	return names
}

// envProbe is a command that shows what exec put into its environment without printing the
// token: it writes the token to $1/token, prints the rest, echoes its first line of input to
// stdout and a line to stderr, and exits 7.
const envProbe = `printf %s "$SF_ACCESS_TOKEN" >"$1/token"
[ -n "$SF_ACCESS_TOKEN" ] && [ "$SF_TARGET_ORG" = "$SF_ACCESS_TOKEN" ] && echo "target=token"
echo "instance=$SF_ORG_INSTANCE_URL"
echo "org=$SALESFORCE_ORG_ID user=$SALESFORCE_USERNAME"
[ -n "$SALESFORCE_ACCESS_EXPIRES_AT" ] && echo "expiry=set"
echo "telemetry=$SF_DISABLE_TELEMETRY autoupdate=$SF_AUTOUPDATE_DISABLE"
read -r line; echo "stdin=$line"
echo "to stderr" >&2
exit 7`

// exec hands the command the org's access in its environment, passes its input and output
// through, exits with its code, and withdraws the access when it is done: the
// SalesforceAccessToken and its Secret are gone and the token is revoked. The person can read
// Secrets, but not the org's credential Secret, and never tried to.
func TestExecRunsACommandWithAHandOut(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "acme", o, sfv1.OrgTypeProduction)
	kubeconfig, log := person(t, ns, "dana", false, "acme-auth")
	dir := t.TempDir()

	r := as(t, kubeconfig, "hello\n", nil, "exec", "acme", "--lifetime", "10m", "--", "sh", "-c", envProbe, "sh", dir)
	if r.code != 7 {
		t.Fatalf("exit %d, want the command's 7:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"target=token", "instance=" + fakeSF.URL(), "org=" + o.OrgID() + " user=" + o.Username(), "expiry=set",
		"telemetry=true autoupdate=true", "stdin=hello"} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("the command's output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "to stderr") {
		t.Errorf("the command's stderr was not passed on: %q", r.stderr)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil || !strings.Contains(string(raw), "!") {
		t.Fatalf("the command got no access token in Salesforce's shape (%v)", err)
	}
	tok := string(raw)
	if left := accessTokensLeft(t, ns); len(left) != 0 {
		t.Errorf("SalesforceAccessTokens left after the command: %v", left)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fakeSF.AccessTokenLive(tok) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if fakeSF.AccessTokenLive(tok) {
		t.Error("the handed-out token is still live after the command")
	}
	if !log.asked("POST", "/apis/salesforce.sfops.io/v1alpha1/namespaces/"+ns+"/salesforceaccesstokens") {
		t.Error("exec did not ask for access with a SalesforceAccessToken")
	}
	if log.asked("GET", "/api/v1/namespaces/"+ns+"/secrets/acme-auth") {
		t.Error("exec read the org's credential Secret")
	}
	var secrets corev1.SecretList
	if err := k8s.List(context.Background(), &secrets, client.InNamespace(ns), client.HasLabels{sfv1.AccessTokenLabel}); err != nil || len(secrets.Items) != 0 {
		t.Errorf("hand-out Secrets left: %d (%v)", len(secrets.Items), err)
	}

	// Exit code 0 is 0.
	if r := as(t, kubeconfig, "", nil, "exec", "acme", "--", "true"); r.code != 0 {
		t.Fatalf("exec -- true: exit %d: %s", r.code, r.stderr)
	}
}

// An Inactive org gets no access: exec prints the operator's reason and fix, exits 125, and never
// runs the command; a command that does not exist asks for nothing.
func TestExecRefusals(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "acme", o, sfv1.OrgTypeProduction)
	org := getOrg(t, ns, "acme")
	org.Spec.State = sfv1.StateInactive
	if err := k8s.Update(context.Background(), org); err != nil {
		t.Fatal(err)
	}
	kubeconfig, log := person(t, ns, "erin", false, "acme-auth")
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")

	r := as(t, kubeconfig, "", nil, "exec", "acme", "--", "touch", marker)
	if r.code != 125 || !strings.Contains(r.stderr, sfv1.ReasonOrgInactive) || !strings.Contains(r.stderr, "spec.state") {
		t.Fatalf("exec on an Inactive org: exit %d, want 125 and the reason OrgInactive with its fix:\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("refusal: %s", strings.TrimSpace(r.stderr))
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran without access")
	}
	if left := accessTokensLeft(t, ns); len(left) != 0 {
		t.Errorf("SalesforceAccessTokens left after the refusal: %v", left)
	}

	// open is refused the same way, with the same reason.
	if r := as(t, kubeconfig, "", nil, "open", "acme", "--url-only"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, sfv1.ReasonOrgInactive) {
		t.Fatalf("open on an Inactive org: exit %d, want 1 and OrgInactive:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Someone without the verb use is refused by admission.
	nobody, _ := person(t, ns, "frank", true)
	r = as(t, nobody, "", nil, "exec", "acme", "--", "touch", marker)
	if r.code != 125 || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, `"use"`) {
		t.Fatalf("exec without use: exit %d, want 125 and a refusal:\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("without use: %s", strings.TrimSpace(r.stderr))

	before := len(log.reqs)
	r = as(t, kubeconfig, "", nil, "exec", "acme", "--", filepath.Join(dir, "no-such-command"))
	if r.code != 127 || len(log.reqs) != before {
		t.Fatalf("exec of a missing command: exit %d (want 127), %d requests to the API server:\n%s", r.code, len(log.reqs)-before, r.stderr)
	}
	if r := as(t, kubeconfig, "", nil, "exec", "acme", "touch", marker); r.code != 125 || !strings.Contains(r.stderr, `"--"`) {
		t.Fatalf("exec without --: exit %d: %s", r.code, r.stderr)
	}
}

// open gets its one-time link from a 5-minute hand-out, as a person who may use the org but not
// read its credential Secret; for a sandbox authorised through its production org too.
func TestOpenWithAHandOutOnly(t *testing.T) {
	ns := newNamespace(t)
	prod := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "prod", prod, sfv1.OrgTypeProduction)
	sb := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox, Production: prod, SandboxName: "uat"})
	if err := k8s.Create(context.Background(), &sfv1.SalesforceOrg{ObjectMeta: objectMeta(ns, "uat"),
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeSandbox,
			SandboxOf: &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: "prod"}, SandboxName: "uat"}}}); err != nil {
		t.Fatal(err)
	}
	waitForConnection(t, ns, "uat", sfv1.ConnectionConnected)
	kubeconfig, log := person(t, ns, "gita", false, "prod-auth", "uat-sandbox-auth")
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: fakeSF.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	for _, c := range []struct {
		org string
		fo  *sftest.Org
	}{{"prod", prod}, {"uat", sb}} {
		r := as(t, kubeconfig, "", nil, "open", c.org, "--url-only")
		if r.code != 0 {
			t.Fatalf("open %s: exit %d: %s", c.org, r.code, r.stderr)
		}
		link := strings.TrimSpace(r.stdout)
		if !strings.HasPrefix(link, fakeSF.URL()+"/secur/frontdoor.jsp?") {
			t.Fatalf("open %s did not print a frontdoor link", c.org)
		}
		// The link logs in as the org's user, once.
		resp, err := hc.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		home, _ := http.NewRequest(http.MethodGet, fakeSF.URL()+resp.Header.Get("Location"), nil)
		for _, ck := range resp.Cookies() {
			home.AddCookie(ck)
		}
		resp, err = hc.Do(home)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !strings.Contains(string(page), "Logged in as "+c.fo.Username()) {
			t.Errorf("open %s: the link does not log in as %s", c.org, c.fo.Username())
		}
		if strings.Contains(r.stderr, "warning") {
			t.Errorf("open %s: %s", c.org, r.stderr)
		}
	}
	for _, s := range []string{"prod-auth", "uat-sandbox-auth"} {
		if log.asked("GET", "/api/v1/namespaces/"+ns+"/secrets/"+s) {
			t.Errorf("open read the credential Secret %s", s)
		}
	}
	if left := accessTokensLeft(t, ns); len(left) != 0 {
		t.Errorf("SalesforceAccessTokens left after open: %v", left)
	}
	// exec on the sandbox gets the sandbox's own session.
	dir := t.TempDir()
	r := as(t, kubeconfig, "", nil, "exec", "uat", "--", "sh", "-c", envProbe, "sh", dir)
	if r.code != 7 || !strings.Contains(r.stdout, "org="+sb.OrgID()+" user="+sb.Username()) {
		t.Fatalf("exec on the sandbox: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// SIGTERM (and Ctrl-C) goes to the command, and the plugin outlives it to withdraw the access.
func TestExecPassesSIGTERMOnAndCleansUp(t *testing.T) {
	ns := newNamespace(t)
	connectedOrg(t, ns, "acme", fakeSF.AddOrg(sftest.OrgSpec{}), sfv1.OrgTypeProduction)
	kubeconfig, _ := person(t, ns, "hana", false)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	// The test binary must survive the signal whatever happens: it listens for it too.
	mine := make(chan os.Signal, 1)
	signal.Notify(mine, syscall.SIGTERM)
	defer signal.Stop(mine)

	done := make(chan result, 1)
	go func() {
		done <- as(t, kubeconfig, "", nil, "exec", "acme", "--", "sh", "-c",
			`trap 'echo "got TERM"; exit 3' TERM; touch "$1"; while :; do sleep 0.1; done`, "sh", ready)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left := accessTokensLeft(t, ns); len(left) != 1 {
		t.Fatalf("while the command runs: SalesforceAccessTokens %v, want one", left)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 3 || !strings.Contains(r.stdout, "got TERM") {
		t.Fatalf("exit %d, want the command's 3 after it got SIGTERM:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if left := accessTokensLeft(t, ns); len(left) != 0 {
		t.Errorf("SalesforceAccessTokens left after SIGTERM: %v", left)
	}
}
