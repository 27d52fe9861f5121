package plugin_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/plugin"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// TestTestFailsAConnectedOrgThatIsNotReady: a Connected org whose spec.type is wrong is not
// Ready, so `test`, a CI gate, fails it and says why.
func TestTestFailsAConnectedOrgThatIsNotReady(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{Kind: sftest.Sandbox})
	putSecret(t, ns, "mistyped-auth", o.AuthURL())
	if err := k8s.Create(context.Background(), &sfv1.SalesforceOrg{
		ObjectMeta: objectMeta(ns, "mistyped"),
		Spec:       sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: "mistyped-auth"}},
	}); err != nil {
		t.Fatal(err)
	}
	waitForConnection(t, ns, "mistyped", sfv1.ConnectionConnected)
	r := kubectlSalesforce(t, nil, "test", "mistyped", "-n", ns)
	if r.code != 1 || !strings.Contains(r.stdout, "salesforceorg/mistyped: Connected, not Ready") || !strings.Contains(r.stdout, "reason:  TypeMismatch") ||
		!strings.Contains(r.stdout, "set spec.type: Sandbox") {
		t.Fatalf("test of a Connected org with the wrong type: exit %d, want 1, \"Connected, not Ready\" and TypeMismatch with its fix:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestTheBrowserSaysLoggedInOnlyAfterTheExchange: the callback page waits for the code's
// exchange; a code Salesforce then refuses gets "Login not completed", never "Logged in".
func TestTheBrowserSaysLoggedInOnlyAfterTheExchange(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{CallbackURL: callbackURL(port)})

	b := &browser{org: o}
	r := kubectlSalesforce(t, b.open, "login", "good", "-n", ns, "--type", "Production",
		"--instance-url", fakeSF.URL(), "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code != 0 || len(b.pages) != 1 || !strings.HasPrefix(b.pages[0], "HTTP 200: ") || !strings.Contains(b.pages[0], "Logged in") {
		t.Fatalf("a good login: exit %d, callback pages %q:\n%s", r.code, b.pages, r.stderr)
	}

	b = &browser{org: o, tamper: func(u *url.URL) {
		q := u.Query()
		q.Set("code", "spent-or-forged")
		u.RawQuery = q.Encode()
	}}
	r = kubectlSalesforce(t, b.open, "login", "refused", "-n", ns, "--type", "Production",
		"--instance-url", fakeSF.URL(), "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code == 0 || !strings.Contains(r.stderr, "CredentialRejected") {
		t.Fatalf("a refused code: exit %d, want CredentialRejected:\n%s", r.code, r.stderr)
	}
	if len(b.pages) != 1 || strings.Contains(b.pages[0], "Logged in") || !strings.Contains(b.pages[0], "Login not completed") || !strings.Contains(b.pages[0], "CredentialRejected") {
		t.Fatalf("a refused code: the browser showed %q", b.pages)
	}
}

// TestInterruptedLoginSaysSo: Ctrl-C while the browser is open is an interruption, not a
// timeout.
func TestInterruptedLoginSaysSo(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupt := func(string) error { time.AfterFunc(100*time.Millisecond, cancel); return nil }
	r := runPlugin(ctx, t, interrupt, "--kubeconfig", kubeconfig, "--salesforce-allowed-hosts", fakeSF.Host(), "--salesforce-ca-file", caFile,
		"login", "interrupted", "-n", ns, "--type", "Production", "--instance-url", fakeSF.URL(), "--callback-port", strconv.Itoa(port))
	if r.code == 0 || !strings.Contains(r.stderr, "login interrupted") || strings.Contains(r.stderr, "no login within") {
		t.Fatalf("exit %d, want an interruption:\n%s", r.code, r.stderr)
	}
}

// demoKubeconfig is the suite's kubeconfig with the fake Salesforce in its context's
// EndpointExtension, as make run writes it, the CA file named relative to it.
func demoKubeconfig(t *testing.T) string {
	t.Helper()
	cfg, err := clientcmd.Load(testEnv.KubeConfig)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := plugin.EndpointObject(plugin.Endpoint{LoginURL: fakeSF.URL(), AllowedHosts: []string{fakeSF.Host()}, CAFile: "ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Contexts[cfg.CurrentContext].Extensions = map[string]runtime.Object{plugin.EndpointExtension: ext}
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), fakeSF.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTheKubeconfigContextNamesTheSalesforce: with make run's kubeconfig, login, reconnect and
// open find the demo's Salesforce (host, CA, login URL) without a flag; without it, a refused
// host says which flags of the plugin would allow it.
func TestTheKubeconfigContextNamesTheSalesforce(t *testing.T) {
	ns := newNamespace(t)
	port := freePort(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{Name: "Context", Kind: sftest.Sandbox, CallbackURL: callbackURL(port)})
	cfg := demoKubeconfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := &browser{org: o}
	r := runPlugin(ctx, t, b.open, "--kubeconfig", cfg, "login", "acme-dev", "-n", ns, "--type", "Sandbox", "--callback-port", strconv.Itoa(port))
	b.check(t)
	if r.code != 0 || !strings.Contains(r.stdout, "salesforceorg/acme-dev: Connected, Ready") || !strings.Contains(r.stderr, "Log in at "+fakeSF.URL()) {
		t.Fatalf("login with the context's Salesforce: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	var opened string
	r = runPlugin(ctx, t, func(u string) error { opened = u; return nil }, "--kubeconfig", cfg, "open", "acme-dev", "-n", ns)
	if r.code != 0 || !strings.HasPrefix(opened, fakeSF.URL()+"/secur/frontdoor.jsp?") {
		t.Fatalf("open with the context's Salesforce: exit %d, a frontdoor link opened: %v:\n%s", r.code, opened != "", r.stderr)
	}

	r = runPlugin(ctx, t, func(u string) error { opened = u; return nil }, "--kubeconfig", kubeconfig, "open", "acme-dev", "-n", ns)
	if r.code == 0 || !strings.Contains(r.stderr, "HostNotAllowed") || !strings.Contains(r.stderr, "for kubectl salesforce: its own --salesforce-allowed-hosts") {
		t.Fatalf("open without the context's Salesforce: exit %d, want HostNotAllowed naming the plugin's flags:\n%s", r.code, r.stderr)
	}
}

// TestBrowserVariableOpensTheBrowser: $BROWSER names the browser, the URL as its argument, as
// git and gh honour it (the browser test hands the URL to Chromium this way).
func TestBrowserVariableOpensTheBrowser(t *testing.T) {
	ns := newNamespace(t)
	o := fakeSF.AddOrg(sftest.OrgSpec{})
	connectedOrg(t, ns, "acme", o, sfv1.OrgTypeProduction)
	dir := t.TempDir()
	script := filepath.Join(dir, "browser")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s %s' \"$1\" \"$2\" > \""+dir+"/opened\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BROWSER", script+" --new-window %s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := runPlugin(ctx, t, nil, "--kubeconfig", kubeconfig, "--salesforce-allowed-hosts", fakeSF.Host(), "--salesforce-ca-file", caFile, "open", "acme", "-n", ns)
	if r.code != 0 {
		t.Fatalf("open with $BROWSER: exit %d: %s", r.code, r.stderr)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(got) == 0; time.Sleep(50 * time.Millisecond) {
		got, _ = os.ReadFile(filepath.Join(dir, "opened"))
	}
	if !strings.HasPrefix(string(got), "--new-window "+fakeSF.URL()+"/secur/frontdoor.jsp?") {
		t.Fatalf("$BROWSER was not run with the frontdoor link in place of %%s (got %d bytes)", len(got))
	}
}
