package plugin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/plugin"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// The suite runs one kube-apiserver (envtest) with the CRDs and webhooks, the operator, and one
// fake Salesforce; each test drives the plugin's commands as a user would, in its own namespace.
var (
	testEnv    *envtest.Environment
	k8s        client.Client
	fakeSF     *sftest.Server
	kubeconfig string
	caFile     string
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	var err error
	if testEnv, err = localenv.New("../..", true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if fakeSF, err = sftest.NewStandaloneServer("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer fakeSF.Close()
	wh := testEnv.WebhookInstallOptions
	mgr, err := operator.New(cfg, operator.Options{
		MetricsAddr: "0", ProbeAddr: "0", EnableWebhooks: true,
		WebhookHost: wh.LocalServingHost, WebhookPort: wh.LocalServingPort, WebhookCertDir: wh.LocalServingCertDir,
		AllowedHosts: []string{fakeSF.Host()}, RootCAs: fakeSF.CertPool(),
		RetryBase: 300 * time.Millisecond, SalesforceTimeout: 2 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up the operator:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		fmt.Fprintln(os.Stderr, "the manager's cache did not sync")
		return 1
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "sfops-plugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig, caFile = filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(kubeconfig, testEnv.KubeConfig, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(caFile, fakeSF.CACertPEM(), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is one run of the plugin.
type result struct {
	stdout, stderr string
	code           int
}

// kubectlSalesforce runs the plugin with the suite's kubeconfig and the fake's host and CA, and
// fails the test when any secret the fake ever issued appears in its output, unless allowed is
// a link the run was asked to print.
func kubectlSalesforce(t *testing.T, browser func(string) error, args ...string) result {
	t.Helper()
	if browser == nil {
		browser = func(string) error { return fmt.Errorf("no browser in tests") }
	}
	full := append([]string{"--kubeconfig", kubeconfig, "--salesforce-allowed-hosts", fakeSF.Host(), "--salesforce-ca-file", caFile}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runPlugin(ctx, t, browser, full...)
}

// runPlugin runs the plugin with exactly args (no flags added) and browser as its opener (nil:
// the real one, which honours $BROWSER), and fails the test as kubectlSalesforce does.
func runPlugin(ctx context.Context, t *testing.T, browser func(string) error, args ...string) result {
	t.Helper()
	return runPluginWithInput(ctx, t, "", browser, args...)
}

// runPluginWithInput is runPlugin with stdin as the plugin's standard input.
func runPluginWithInput(ctx context.Context, t *testing.T, stdin string, browser func(string) error, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	env := plugin.Env{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, OpenBrowser: browser}
	code := plugin.Run(ctx, env, args)
	r := result{stdout: out.String(), stderr: errOut.String(), code: code}
	if !(contains(args, "open") && contains(args, "--url-only")) {
		assertNoSecret(t, r.stdout+r.stderr)
	} else {
		assertNoSecret(t, r.stderr)
	}
	return r
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

func assertNoSecret(t *testing.T, text string) {
	t.Helper()
	for _, s := range fakeSF.IssuedSecrets() {
		if len(s) >= 6 && strings.Contains(text, s) {
			t.Fatalf("the plugin printed a secret the fake issued")
		}
	}
	if strings.Contains(text, "force://") {
		t.Fatalf("the plugin printed an auth URL")
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	return testkit.Namespace(t, k8s, "p")
}

// freePort is a loopback port nobody listens on, so parallel test binaries never collide on 1717.
func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(testkit.FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// browser stands in for the user's browser: it opens the authorize URL on the fake, submits the
// login form as org's user, and follows Salesforce's redirect to the plugin's local callback.
// tamper, when set, rewrites the callback URL first (a forged state). Failures go to errs.
type browser struct {
	org    *sftest.Org
	tamper func(*url.URL)
	mu     sync.Mutex
	errs   []string
	pages  []string // the callback's answers, "HTTP <status>: <body>"
	wg     sync.WaitGroup
}

func (b *browser) open(authorize string) error {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.login(authorize); err != nil {
			b.mu.Lock()
			b.errs = append(b.errs, err.Error())
			b.mu.Unlock()
		}
	}()
	return nil
}

func (b *browser) check(t *testing.T) {
	t.Helper()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Fatalf("the browser: %s", strings.Join(b.errs, "; "))
	}
}

func (b *browser) login(authorize string) error {
	u, err := url.Parse(authorize)
	if err != nil || u.Host != fakeSF.Host() {
		return fmt.Errorf("the plugin sent the browser elsewhere than the fake")
	}
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: fakeSF.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	resp, err := hc.Get(authorize)
	if err != nil {
		return err
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authorize answered HTTP %d: %s", resp.StatusCode, page)
	}
	form := url.Values{"username": {b.org.Username()}, "pw": {b.org.Password()}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	resp, err = hc.PostForm(fakeSF.URL()+"/services/oauth2/authorize", form)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		return fmt.Errorf("the login form answered HTTP %d", resp.StatusCode)
	}
	if b.tamper != nil {
		b.tamper(cb)
	}
	resp, err = (&http.Client{Timeout: 10 * time.Second}).Get(cb.String())
	if err != nil {
		return fmt.Errorf("the plugin's callback: %v", err)
	}
	page, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	b.mu.Lock()
	b.pages = append(b.pages, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, page))
	b.mu.Unlock()
	return nil
}

func callbackURL(port int) string { return fmt.Sprintf("http://localhost:%d/OauthRedirect", port) }

func getOrg(t *testing.T, ns, name string) *sfv1.SalesforceOrg {
	t.Helper()
	org := &sfv1.SalesforceOrg{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, org); err != nil {
		t.Fatalf("reading SalesforceOrg %s: %v", name, err)
	}
	return org
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("reading Secret %s: %v", name, err)
	}
	return s
}

func putSecret(t *testing.T, ns, name, authURL string) {
	t.Helper()
	testkit.PutSecret(t, k8s, ns, name, authURL)
}

// connectedOrg declares an org with a working credential and waits until it is Connected.
func connectedOrg(t *testing.T, ns, name string, o *sftest.Org, typ sfv1.OrgType) {
	t.Helper()
	putSecret(t, ns, name+"-auth", o.AuthURL())
	org := &sfv1.SalesforceOrg{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       sfv1.SalesforceOrgSpec{Type: typ, AuthSecretRef: sfv1.SecretKeyReference{Name: name + "-auth"}},
	}
	if err := k8s.Create(context.Background(), org); err != nil {
		t.Fatalf("creating SalesforceOrg %s: %v", name, err)
	}
	waitForConnection(t, ns, name, sfv1.ConnectionConnected)
}

func waitForConnection(t *testing.T, ns, name string, want sfv1.ConnectionState) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if getOrg(t, ns, name).Status.Connection == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("SalesforceOrg %s never became %s", name, want)
}
