package plugin_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func TestLoginCreatesTheSecretAndTheOrg(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{Name: "Login UAT", Kind: sftest.Sandbox, CallbackURL: callbackURL(port)})
	b := &browser{org: o}
	r := kubectlSalesforce(t, b.open, "login", "acme-uat", "-n", ns, "--type", "Sandbox",
		"--instance-url", fakeSF.URL(), "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code != 0 {
		t.Fatalf("login exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"secret/acme-uat-auth created", "salesforceorg.salesforce.sfops.io/acme-uat created", "salesforceorg/acme-uat: Connected"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	s := getSecret(t, ns, "acme-uat-auth")
	if s.Labels[sfv1.CredentialLabel] != "true" {
		t.Error("the Secret is not labelled as a credential")
	}
	a, err := salesforce.ParseAuthURL(string(s.Data[sfv1.DefaultAuthSecretKey]))
	if err != nil || a.ClientID != "PlatformCLI" || a.Host != fakeSF.Host() {
		t.Fatalf("the Secret does not hold a PlatformCLI auth URL for the fake: %v", err)
	}
	org := getOrg(t, ns, "acme-uat")
	if org.Spec.Type != sfv1.OrgTypeSandbox || org.Spec.AuthSecretRef.Name != "acme-uat-auth" || org.Status.OrgID != o.OrgID() {
		t.Fatalf("the org is not the one logged in to: %+v", org.Spec)
	}
}

func TestLoginRefusesAForgedState(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{CallbackURL: callbackURL(port)})
	b := &browser{org: o, tamper: func(u *url.URL) {
		q := u.Query()
		q.Set("state", "forged")
		u.RawQuery = q.Encode()
	}}
	r := kubectlSalesforce(t, b.open, "login", "forged", "-n", ns, "--type", "Production",
		"--instance-url", fakeSF.URL(), "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code == 0 || !strings.Contains(r.stderr, "wrong state") {
		t.Fatalf("want a refusal naming the state, got exit %d: %s", r.code, r.stderr)
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "forged"}, &sfv1.SalesforceOrg{}); err == nil {
		t.Fatal("an org was created after a forged callback")
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "forged-auth"}, &corev1.Secret{}); err == nil {
		t.Fatal("a Secret was written after a forged callback")
	}
}

func TestLoginDryRunPrintsOnlyTheOrg(t *testing.T) {
	ns := newNamespace(t)
	opened := false
	r := kubectlSalesforce(t, func(string) error { opened = true; return nil },
		"login", "acme-qa", "-n", ns, "--type", "Sandbox", "--dry-run=client", "-o", "yaml")
	if r.code != 0 || opened {
		t.Fatalf("exit %d, browser opened %v: %s", r.code, opened, r.stderr)
	}
	for _, want := range []string{"kind: SalesforceOrg", "name: acme-qa", "type: Sandbox", "name: acme-qa-auth"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the YAML lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "kind: Secret") {
		t.Error("the dry run printed a Secret")
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "acme-qa"}, &sfv1.SalesforceOrg{}); err == nil {
		t.Error("a client dry run created the org")
	}
}

func TestReconnectADisconnectedOrg(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{Name: "Reconnect", CallbackURL: callbackURL(port)})
	connectedOrg(t, ns, "acme-prod", o, sfv1.OrgTypeProduction)
	o.RevokeRefreshTokens()
	o.ExpireAccessTokens()
	if r := kubectlSalesforce(t, nil, "test", "acme-prod", "-n", ns); r.code != plugin1 || !strings.Contains(r.stdout, "CredentialRejected") {
		t.Fatalf("test of a revoked org: exit %d, want 1 and CredentialRejected:\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := getSecret(t, ns, "acme-prod-auth").ResourceVersion

	b := &browser{org: o}
	// No --instance-url: the login host comes from the org's own Secret.
	r := kubectlSalesforce(t, b.open, "reconnect", "acme-prod", "-n", ns, "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code != 0 || !strings.Contains(r.stdout, "secret/acme-prod-auth configured") || !strings.Contains(r.stdout, "salesforceorg/acme-prod: Connected") {
		t.Fatalf("reconnect exited %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("reconnect:\n%s%s", r.stdout, r.stderr)
	if getSecret(t, ns, "acme-prod-auth").ResourceVersion == before {
		t.Fatal("the Secret was not updated")
	}
	if r := kubectlSalesforce(t, nil, "reconnect", "nothing", "-n", ns); r.code == 0 {
		t.Fatal("reconnect of a missing org succeeded")
	}
}

// plugin1 is the exit code of a test that the operator answered with a failure.
const plugin1 = 1

func TestTestExitCodes(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "ok", o, sfv1.OrgTypeProduction)
	r := kubectlSalesforce(t, nil, "test", "ok", "-n", ns)
	if r.code != 0 || !strings.Contains(r.stdout, "salesforceorg/ok: Connected") || !strings.Contains(r.stdout, "reason:  Connected") {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if v := getOrg(t, ns, "ok").Annotations[sfv1.ReconcileRequestedAtAnnotation]; v == "" || getOrg(t, ns, "ok").Status.LastHandledReconcileAt != v {
		t.Fatal("the request was not echoed")
	}

	putSecret(t, ns, "bad-auth", "force://PlatformCLI::undefined@"+fakeSF.Host())
	if err := k8s.Create(context.Background(), &sfv1.SalesforceOrg{
		ObjectMeta: objectMeta(ns, "bad"),
		Spec:       sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: "bad-auth"}},
	}); err != nil {
		t.Fatal(err)
	}
	r = kubectlSalesforce(t, nil, "test", "bad", "-n", ns)
	if r.code != 1 || !strings.Contains(r.stdout, "AuthURLInvalid") {
		t.Fatalf("exit %d, want 1 and AuthURLInvalid:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = kubectlSalesforce(t, nil, "test", "missing", "-n", ns)
	if r.code != 2 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("exit %d, want 2 for a missing org: %s", r.code, r.stderr)
	}
	// A namespace the operator does not answer in: an org that exists only in a dry run cannot
	// be answered; here the operator is too slow for a 1ns timeout.
	r = kubectlSalesforce(t, nil, "test", "ok", "-n", ns, "--timeout", "1ns")
	if r.code != 2 || !strings.Contains(r.stderr, "did not answer") {
		t.Fatalf("exit %d, want 2 when the operator does not answer in time: %s", r.code, r.stderr)
	}
}

func TestOpenGivesAOneTimeFrontdoorLink(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "acme", o, sfv1.OrgTypeProduction)

	r := kubectlSalesforce(t, nil, "open", "acme", "-n", ns, "--url-only")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	link := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(link, fakeSF.URL()+"/secur/frontdoor.jsp?") {
		t.Fatal("open --url-only did not print a frontdoor link of the org")
	}
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: fakeSF.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for i, want := range []int{http.StatusFound, http.StatusOK} { // a session, then the login page
		resp, err := hc.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("use %d of the link: HTTP %d, want %d", i+1, resp.StatusCode, want)
		}
	}

	var opened string
	r = kubectlSalesforce(t, func(u string) error { opened = u; return nil }, "open", "acme", "-n", ns)
	if r.code != 0 || !strings.HasPrefix(opened, fakeSF.URL()+"/secur/frontdoor.jsp?") {
		t.Fatalf("open without --url-only: exit %d, browser got a frontdoor link: %v; %s", r.code, opened != "", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, opened) {
		t.Fatal("open printed the link without --url-only")
	}
	// Without a browser, the link is not printed either.
	r = kubectlSalesforce(t, nil, "open", "acme", "-n", ns)
	if r.code == 0 || !strings.Contains(r.stderr, "--url-only") {
		t.Fatalf("open without a browser: exit %d: %s", r.code, r.stderr)
	}
}

func TestImportFromTheSalesforceCLI(t *testing.T) {
	ns := newNamespace(t)
	prod := fakeSF.AddOrg(sftest.OrgSpec{Name: "Import Prod"})
	uat := fakeSF.AddOrg(sftest.OrgSpec{Name: "Import UAT", Kind: sftest.Sandbox})
	scratch := fakeSF.AddOrg(sftest.OrgSpec{Name: "Import Scratch", Kind: sftest.Scratch})

	// A fake sf: `org list --json` from a file, `org auth show-sfdx-auth-url` per username.
	// The list carries an access token, as the real one does; it must never come out.
	dir := t.TempDir()
	list := `{"status":0,"result":{
	  "nonScratchOrgs":[
	    {"alias":"Acme.Prod","username":"` + prod.Username() + `","orgId":"` + prod.OrgID() + `","instanceUrl":"https://acme.my.salesforce.com","accessToken":"00Dsecretaccesstoken!AQ","connectedStatus":"Connected","isSandbox":false},
	    {"alias":"acme-uat","username":"` + uat.Username() + `","orgId":"` + uat.OrgID() + `","instanceUrl":"https://acme--uat.sandbox.my.salesforce.com","connectedStatus":"Connected","isSandbox":true},
	    {"alias":"stale","username":"stale@example.com","connectedStatus":"RefreshTokenAuthError"}],
	  "sandboxes":[{"alias":"acme-uat","username":"` + uat.Username() + `","isSandbox":true}],
	  "scratchOrgs":[{"alias":"feature-x","username":"` + scratch.Username() + `","isScratch":true,"status":"Active","instanceUrl":"https://x.scratch.my.salesforce.com"}]}}`
	if err := os.WriteFile(filepath.Join(dir, "list.json"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ncase \"$1 $2\" in\n\"org list\") cat " + filepath.Join(dir, "list.json") + " ;;\n\"org auth\")\n  case \"$5\" in\n"
	for _, o := range []*sftest.Org{prod, uat, scratch} {
		script += "  " + o.Username() + ") echo '{\"status\":0,\"result\":{\"sfdxAuthUrl\":\"" + o.AuthURL() + "\",\"username\":\"" + o.Username() + "\"}}' ;;\n"
	}
	script += "  *) echo '{\"status\":1,\"name\":\"NamedOrgNotFoundError\",\"message\":\"No authorization information found.\"}'; exit 1 ;;\n  esac ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(dir, "sf"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	r := kubectlSalesforce(t, nil, "import", "--from-sf", "-n", ns, "--dry-run=client", "-o", "yaml")
	if r.code != 0 || strings.Contains(r.stdout, "kind: Secret") || strings.Contains(r.stdout, "00Dsecretaccesstoken") ||
		!strings.Contains(r.stdout, "name: acme-prod") || !strings.Contains(r.stdout, "name: feature-x") || strings.Contains(r.stdout, "stale") {
		t.Fatalf("dry run: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	var orgs sfv1.SalesforceOrgList
	if err := k8s.List(context.Background(), &orgs, client.InNamespace(ns)); err != nil || len(orgs.Items) != 0 {
		t.Fatal("the dry run created orgs")
	}

	r = kubectlSalesforce(t, nil, "import", "--from-sf", "-n", ns, "--alias", "Acme.Prod", "--alias", "acme-uat", "--alias", scratch.Username())
	if r.code != 0 {
		t.Fatalf("import: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "00Dsecretaccesstoken") {
		t.Fatal("import printed the CLI's access token")
	}
	for name, want := range map[string]sfv1.OrgType{"acme-prod": sfv1.OrgTypeProduction, "acme-uat": sfv1.OrgTypeSandbox, "feature-x": sfv1.OrgTypeScratch} {
		if got := getOrg(t, ns, name).Spec.Type; got != want {
			t.Errorf("%s: type %s, want %s", name, got, want)
		}
		if getSecret(t, ns, name+"-auth").Labels[sfv1.CredentialLabel] != "true" {
			t.Errorf("%s's Secret is not labelled", name)
		}
		waitForConnection(t, ns, name, sfv1.ConnectionConnected)
	}
	r = kubectlSalesforce(t, nil, "import", "--from-sf", "-n", ns, "--alias", "nobody")
	if r.code == 0 || !strings.Contains(r.stderr, "nobody") {
		t.Fatalf("import of an unknown alias: exit %d: %s", r.code, r.stderr)
	}
}

func TestTree(t *testing.T) {
	ns := newNamespace(t)
	prod, uat := fakeSF.AddOrg(sftest.OrgSpec{}), fakeSF.AddOrg(sftest.OrgSpec{Kind: sftest.Sandbox})
	connectedOrg(t, ns, "acme-prod", prod, sfv1.OrgTypeProduction)
	connectedOrg(t, ns, "acme-uat", uat, sfv1.OrgTypeSandbox)
	ctx := context.Background()
	impl := &sfv1.SalesforceImplementation{ObjectMeta: objectMeta(ns, "acme"),
		Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme", ProductionOrgRef: &sfv1.LocalObjectReference{Name: "acme-prod"}}}
	stage := &sfv1.PipelineStage{ObjectMeta: objectMeta(ns, "release-uat"),
		Spec: sfv1.PipelineStageSpec{Pipeline: "release", Order: 1, OrgRef: sfv1.LocalObjectReference{Name: "acme-uat"}}}
	lost := &sfv1.PipelineStage{ObjectMeta: objectMeta(ns, "release-qa"),
		Spec: sfv1.PipelineStageSpec{Pipeline: "release", Order: 2, OrgRef: sfv1.LocalObjectReference{Name: "acme-qa"}}}
	for _, obj := range []client.Object{impl, stage, lost} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	r := kubectlSalesforce(t, nil, "tree", "-n", ns)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	t.Logf("tree:\n%s", r.stdout)
	lines := strings.Split(r.stdout, "\n")
	want := []string{"NAME", "SalesforceImplementation/acme", "└─SalesforceOrg/acme-prod", "SalesforceOrg/acme-uat", "└─PipelineStage/release-uat", "PipelineStage/release-qa (org acme-qa not found)"}
	if len(lines) < len(want) {
		t.Fatalf("tree:\n%s", r.stdout)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("line %d is not %q:\n%s", i, w, r.stdout)
		}
	}
	if !strings.Contains(lines[2], "Connected") || !strings.Contains(lines[2], "Production") {
		t.Fatalf("the org line lacks its connection:\n%s", r.stdout)
	}
}
