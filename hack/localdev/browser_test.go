package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sfops/salesforce-operator/internal/demo"
	"github.com/sfops/salesforce-operator/internal/plugin"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// BrowserRequired, set by `make test-browser`, makes a missing Chromium a failure, not a skip.
const browserRequired = "SFOPS_BROWSER_REQUIRED"

// chromium is Debian's Chromium (or $CHROMIUM), or "" when there is none.
func chromium() string {
	for _, c := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	return ""
}

var bannerUser = regexp.MustCompile(`log in to the fake Salesforce as (\S+), password (\S+)`)

// TestBrowserConnectsTheDemo is a person with a real browser (headless Chromium) following
// make run's banner: make run (hack/localdev, the demo on an embedded control plane), then the
// plugin, as built by make run, with the demo's kubeconfig and no flag; $BROWSER hands each URL
// to Chromium, which types the banner's demo user and password into the fake Salesforce's login
// page. login connects acme-dev; after its token is revoked (as from Salesforce's Setup), test
// fails and reconnect connects it again; open lands in the org, logged in. A screenshot of each
// final page goes to bin/browser/.
func TestBrowserConnectsTheDemo(t *testing.T) {
	chrome := chromium()
	if chrome == "" {
		if os.Getenv(browserRequired) != "" {
			t.Fatal("no Chromium (chromium on PATH, or $CHROMIUM): make test-browser installs Debian's chromium with apt-get")
		}
		t.Skip("no Chromium on PATH (Debian's chromium package): `make test-browser` installs it and runs this test")
	}
	if testing.Short() {
		t.Skip("-short: the browser test starts make run's demo")
	}
	unlock, err := demo.LockCallbackPort()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	shots := filepath.Join(root, "bin", "browser")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, b := range [][2]string{{"localdev", "./hack/localdev"}, {"kubectl-salesforce", "./cmd/kubectl-salesforce"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(tmp, b[0]), b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", b[1], err, out)
		}
	}

	// make run, with its kubeconfig (and lock) in tmp and no fixed port, so that it never
	// collides with a make run of the checkout.
	kubeconfig := filepath.Join(tmp, "demo", "kubeconfig")
	run := exec.Command(filepath.Join(tmp, "localdev"), "-kubeconfig-out", kubeconfig,
		"--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0", "--zap-log-level", "error")
	run.Dir = root
	run.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(tmp, "none"))
	runLog, err := os.Create(filepath.Join(tmp, "localdev.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer runLog.Close()
	run.Stderr = runLog
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(runLog.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("make run's log (its end):\n%s", b)
		}
	}()
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = run.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = run.Process.Kill()
			<-done
		}
	})
	user, password := readBanner(t, stdout)
	if user != demo.WaitingUser {
		t.Fatalf("the banner names the demo user %q, want %q", user, demo.WaitingUser)
	}

	// Chromium trusts the fake's certificate by its key only, as a person who accepted the
	// warning for 127.0.0.1 would have.
	spki := fakeSPKI(t, kubeconfig)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")), chromedp.WindowSize(1000, 700))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Run(browser); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}

	// $BROWSER: the plugin runs curl, which hands the URL to this loopback server.
	opened := make(chan string, 4)
	hand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { opened <- r.FormValue("url") }))
	defer hand.Close()
	env := append(os.Environ(), "KUBECONFIG="+kubeconfig, "BROWSER=curl -fsS -o /dev/null --max-time 30 --data-urlencode url=%s "+hand.URL)
	plugin := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(tmp, "kubectl-salesforce"), args...)
		cmd.Env = env
		return cmd
	}

	// login, then reconnect: Chromium fills in the form on the fake's page.
	logIn := func(shot string, approve bool, args ...string) string {
		t.Helper()
		cmd := plugin(args...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var page string
		select {
		case u := <-opened:
			ctx, cancel := context.WithTimeout(browser, time.Minute)
			steps := []chromedp.Action{
				chromedp.Navigate(u),
				chromedp.WaitVisible("#username", chromedp.ByID),
				chromedp.SendKeys("#username", user, chromedp.ByID),
				chromedp.SendKeys("#password", password, chromedp.ByID),
				chromedp.Click("#Login", chromedp.ByID),
			}
			if approve { // the first login to the app asks "Allow Access?"
				steps = append(steps,
					chromedp.WaitVisible("#oaapprove", chromedp.ByID),
					screenshot(filepath.Join(shots, "approve.png")),
					chromedp.Click("#oaapprove", chromedp.ByID))
			}
			err = chromedp.Run(ctx, append(steps,
				waitForLocation("http://localhost:1717/OauthRedirect?"),
				chromedp.WaitVisible("h1", chromedp.ByQuery),
				chromedp.Text("body", &page, chromedp.ByQuery),
				screenshot(filepath.Join(shots, shot)))...)
			cancel()
			if err != nil {
				t.Errorf("Chromium on the login page: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the plugin opened no browser")
		}
		werr := cmd.Wait()
		if werr != nil || !strings.Contains(out.String(), "salesforceorg/acme-dev: Connected, Ready") {
			t.Fatalf("kubectl salesforce %s: %v\n%s", strings.Join(args, " "), werr, out.String())
		}
		if !strings.Contains(page, "Logged in") {
			t.Fatalf("kubectl salesforce %s: the browser ended on %q", strings.Join(args, " "), page)
		}
		return out.String()
	}
	t.Logf("kubectl salesforce login acme-dev --type Sandbox:\n%s", logIn("login.png", true, "login", "acme-dev", "--type", "Sandbox"))

	revoke(t, kubeconfig)
	out, err := plugin("test", "acme-dev").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "Disconnected, not Ready") {
		t.Fatalf("test of the revoked org: exit %d, want 1 and Disconnected:\n%s", code, out)
	}
	t.Logf("kubectl salesforce reconnect acme-dev:\n%s", logIn("reconnect.png", false, "reconnect", "acme-dev"))

	// open: the frontdoor link logs Chromium in to the org.
	out, err = plugin("open", "acme-dev").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl salesforce open acme-dev: %v\n%s", err, out)
	}
	select {
	case u := <-opened:
		var landed, page string
		ctx, cancel := context.WithTimeout(browser, time.Minute)
		err = chromedp.Run(ctx, chromedp.Navigate(u), chromedp.WaitReady("body", chromedp.ByQuery),
			chromedp.Location(&landed), chromedp.Text("body", &page, chromedp.ByQuery), screenshot(filepath.Join(shots, "open.png")))
		cancel()
		if err != nil {
			t.Fatalf("Chromium on the frontdoor link: %v", err)
		}
		lu, _ := url.Parse(landed)
		if strings.Contains(landed, "frontdoor") || lu == nil || lu.Hostname() != "127.0.0.1" {
			t.Fatalf("open: Chromium landed on %s", lu.Redacted())
		}
		if !strings.Contains(page, user) {
			t.Errorf("open: the page the browser landed on does not show the demo user as logged in:\n%.300s", page)
		}
	case <-time.After(time.Minute):
		t.Fatal("open opened no browser")
	}
}

// readBanner reads make run's output until its banner, and returns the demo user and password.
func readBanner(t *testing.T, r io.Reader) (user, password string) {
	t.Helper()
	type found struct{ user, password string }
	got := make(chan found, 1)
	go func() {
		sc := bufio.NewScanner(r)
		var f found
		for sc.Scan() {
			if m := bannerUser.FindStringSubmatch(sc.Text()); m != nil {
				f = found{m[1], m[2]}
			}
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops everything") {
				break
			}
		}
		got <- f
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case f := <-got:
		if f.user == "" {
			t.Fatal("make run ended, or printed a banner without a demo user")
		}
		return f.user, f.password
	case <-time.After(3 * time.Minute):
		t.Fatal("make run printed no banner within 3m")
	}
	return "", ""
}

// fakeSPKI is the base64 SHA-256 of the public key the demo's fake Salesforce serves, reached and
// verified as the plugin does: the kubeconfig context's login URL and CA.
func fakeSPKI(t *testing.T, kubeconfig string) string {
	t.Helper()
	host, pool := fakeOf(t, kubeconfig)
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("the fake's certificate is not signed by the CA beside the kubeconfig: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func fakeOf(t *testing.T, kubeconfig string) (host string, pool *x509.CertPool) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !demo.IsDemo(cfg.Contexts[cfg.CurrentContext]) {
		t.Fatal("make run's kubeconfig names no Salesforce for the plugin")
	}
	var e plugin.Endpoint
	if u, ok := cfg.Contexts[cfg.CurrentContext].Extensions[plugin.EndpointExtension].(*runtime.Unknown); !ok || json.Unmarshal(u.Raw, &e) != nil || len(e.AllowedHosts) != 1 {
		t.Fatal("make run's kubeconfig names no Salesforce host")
	}
	pem, err := os.ReadFile(filepath.Join(filepath.Dir(kubeconfig), e.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return e.AllowedHosts[0], pool
}

// revoke revokes acme-dev's refresh token at the fake, as an admin would in Salesforce's Setup,
// reading it from the org's Secret with kubectl (never printed).
func revoke(t *testing.T, kubeconfig string) {
	t.Helper()
	cmd := exec.Command("kubectl", "get", "secret", "acme-dev-auth", "-o", "jsonpath={.data.sfdxAuthUrl}")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	b64, err := cmd.Output()
	if err != nil {
		t.Fatalf("reading Secret acme-dev-auth: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil {
		t.Fatal("Secret acme-dev-auth holds no base64 data")
	}
	a, err := salesforce.ParseAuthURL(string(raw))
	if err != nil {
		t.Fatal("Secret acme-dev-auth holds no auth URL")
	}
	_, pool := fakeOf(t, kubeconfig)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := hc.PostForm(a.InstanceURL()+"/services/oauth2/revoke", url.Values{"token": {a.RefreshToken}})
	if err != nil {
		t.Fatalf("revoking acme-dev's token: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking acme-dev's token: HTTP %d", resp.StatusCode)
	}
}

// waitForLocation waits until the tab is at a URL that starts with prefix (the form's submission
// has navigated away from the login page, through Salesforce's redirect, to the callback).
func waitForLocation(prefix string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var at string
			if err := chromedp.Location(&at).Do(ctx); err != nil {
				return err
			}
			if strings.HasPrefix(at, prefix) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the browser never reached the callback; it is at %s%s", strings.SplitN(at, "?", 2)[0], ": "+ctx.Err().Error())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

func screenshot(path string) chromedp.Action {
	var png []byte
	return chromedp.Tasks{
		chromedp.FullScreenshot(&png, 100),
		chromedp.ActionFunc(func(context.Context) error { return os.WriteFile(path, png, 0o644) }),
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}
