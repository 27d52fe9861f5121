package controllers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfops/salesforce-operator/internal/demo"
)

// tourStep is one `$ kubectl ...` line of a console block in the README, with what the README
// shows it printing.
type tourStep struct {
	line    int
	command string
	output  []string
}

func readmeTour(t *testing.T) []tourStep {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []tourStep
	inConsole := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```console"):
			inConsole = true
		case strings.HasPrefix(line, "```"):
			inConsole = false
		case inConsole && strings.HasPrefix(line, "$ kubectl "):
			steps = append(steps, tourStep{line: n, command: strings.TrimPrefix(line, "$ ")})
		case inConsole && len(steps) > 0 && line != "":
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, line)
		}
	}
	return steps
}

// tourMasks replace what differs from run to run in a tour step's output: org and user ids, the
// fake Salesforce's port.
var tourMasks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\b00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?\b`), "<org id>"},
	{regexp.MustCompile(`\b005[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?\b`), "<user id>"},
	{regexp.MustCompile(`127\.0\.0\.1:[0-9]+`), "127.0.0.1:<port>"},
}

// age is a kubectl AGE column's value.
var age = regexp.MustCompile(`^[0-9]+[smhd]([0-9]+[smh])?$`)

// masked is out's lines with spaces collapsed, masks applied, and a table's last column (AGE)
// replaced, so that a whole table compares with the README's.
func masked(lines []string) []string {
	table := len(lines) > 0 && strings.HasPrefix(lines[0], "NAME ")
	var m []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if table && len(f) > 1 && age.MatchString(f[len(f)-1]) {
			f[len(f)-1] = "<age>"
		}
		l = strings.Join(f, " ")
		for _, r := range tourMasks {
			l = r.re.ReplaceAllString(l, r.with)
		}
		m = append(m, l)
	}
	return m
}

// tourBrowser is the browser of the tour's `kubectl salesforce` lines, the README's $BROWSER: a
// person who logs in on the fake's page as the demo user, or follows a frontdoor link. The
// plugin runs it as `curl ... url=<the URL>`, which hands the URL to this loopback server.
type tourBrowser struct {
	user, password string
	mu             sync.Mutex
	opened         []string // what the browser ended on, one line each
	errs           []string
}

func (b *tourBrowser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u := r.FormValue("url")
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: fakeSF.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	var line string
	var err error
	switch {
	case strings.Contains(u, "/services/oauth2/authorize?"):
		var page string
		if page, err = demo.LogIn(r.Context(), hc, u, b.user, b.password); err == nil {
			line = "login: " + page
		}
	case strings.Contains(u, "/secur/frontdoor.jsp?"):
		var resp *http.Response
		if resp, err = hc.Get(u); err == nil {
			_ = resp.Body.Close()
			line = fmt.Sprintf("frontdoor: HTTP %d, a session cookie: %v", resp.StatusCode, strings.HasPrefix(resp.Header.Get("Set-Cookie"), "sid="))
		}
	default:
		err = fmt.Errorf("the plugin opened neither a login page nor a frontdoor link")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.errs = append(b.errs, err.Error())
		return
	}
	b.opened = append(b.opened, line)
}

// lockedBuffer is the terminal of a step: stdout and stderr, in the order they were written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildPlugin builds kubectl-salesforce into a directory for PATH, as `make build` does.
func buildPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-salesforce"), "../cmd/kubectl-salesforce")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	return dir
}

// TestReadmeTourRunsAsPasted seeds the demo that `make run` shows and runs every `$ kubectl` line
// of the README's console blocks, in order, as a user pasting them would, with the demo's
// kubeconfig and the plugin on PATH: each must succeed (or fail with exactly the error the README
// shows) and print what the README shows, whole tables and every line (ids, ports and ages
// masked); the plugin's browser logs in as the demo user; nothing may be left at the end.
func TestReadmeTourRunsAsPasted(t *testing.T) {
	ctx := context.Background()
	unlock, err := demo.LockCallbackPort()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	orgs, err := demo.Seed(ctx, k8s, fakeSF)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.WaitReady(ctx, k8s, time.Minute); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := demo.WriteKubeconfig(cfgPath, testEnv.KubeConfig, fakeSF); err != nil {
		t.Fatal(err)
	}
	b := &tourBrowser{user: demo.WaitingUser, password: orgs[demo.Waiting].Password()}
	browserSrv := httptest.NewServer(b)
	defer browserSrv.Close()
	env := append(os.Environ(), "KUBECONFIG="+cfgPath, "PATH="+buildPlugin(t)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"BROWSER=curl -fsS -o /dev/null --max-time 60 --data-urlencode url=%s "+browserSrv.URL)

	steps := readmeTour(t)
	if len(steps) < 10 {
		t.Fatalf("the README's tour has only %d kubectl lines", len(steps))
	}
	plugin := 0
	for _, s := range steps {
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		cmd := exec.CommandContext(cctx, "bash", "-c", s.command)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		both := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, both), io.MultiWriter(&stderr, both)
		err := cmd.Run()
		cancel()
		var wantErrs []string
		for _, o := range s.output {
			if strings.HasPrefix(o, "Error from server") {
				wantErrs = append(wantErrs, o)
			}
		}
		if len(wantErrs) == 0 && err != nil {
			t.Errorf("README line %d: %s: %v\n%s", s.line, s.command, err, both.String())
			continue
		}
		for _, want := range wantErrs {
			if err == nil || !strings.Contains(stderr.String(), want) {
				t.Errorf("README line %d: %s: want the README's error\n  %s\ngot %v:\n  %s", s.line, s.command, want, err, stderr.String())
			}
		}
		if strings.HasPrefix(s.command, "kubectl salesforce ") {
			plugin++
		}
		if len(s.output) == 0 || len(wantErrs) > 0 {
			continue
		}
		// What the terminal shows: the plugin's progress (stderr) and results (stdout), in order.
		got, want := masked(strings.Split(strings.TrimSpace(both.String()), "\n")), masked(s.output)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("README line %d: %s: printed\n  %s\nbut the README shows\n  %s", s.line, s.command, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	if plugin < 4 {
		t.Errorf("the tour runs %d kubectl salesforce lines, want login, open, reconnect and test", plugin)
	}
	b.mu.Lock()
	if len(b.errs) > 0 {
		t.Errorf("the tour's browser: %s", strings.Join(b.errs, "; "))
	}
	for _, o := range b.opened {
		if !strings.HasPrefix(o, "login: HTTP 200: ") && !strings.HasPrefix(o, "frontdoor: HTTP 302, a session cookie: true") {
			t.Errorf("the tour's browser ended on %.200s", o)
		}
	}
	b.mu.Unlock()
	if out := kubectl(t, "get", "salesforce", "-n", demo.Namespace, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("after the tour's clean-up these remain:\n%s", out)
	}
}
