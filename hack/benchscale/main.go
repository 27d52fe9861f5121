// Command benchscale measures the operator at scale, as `make bench-scale` runs it: the manager
// binary as its own process, kube-apiserver and etcd from bin/k8s, the fake Salesforce answering
// every call after a set latency, and N orgs each with its own Secret. For each N it reports the
// time until every org is Connected (against the ideal N·2L/C), a re-check sweep of every org
// (against N·L/C), the peak Salesforce call rate, the manager's RSS and heap, Salesforce calls and
// CPU per check; it writes bin/bench/scale.json, scale.csv and scale.png (RSS, and the sweep's and
// first connections' ratios to their ideals, against N). It sends traffic to loopback only and
// stops everything it started. With --replot FILE it runs nothing and redraws the PNG of a JSON.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// Result is one N's measurements.
type Result struct {
	Orgs        int   `json:"orgs"`
	LatencyMs   int64 `json:"latencyMs"`
	Concurrency int   `json:"concurrency"`
	// CheckIntervalSeconds is the orgs' spec.checkInterval.
	CheckIntervalSeconds float64 `json:"checkIntervalSeconds"`
	CreateSeconds        float64 `json:"createSeconds"`
	// ConnectedSeconds runs from the first call to Salesforce to the answer that completed the
	// last org's first connection; StartupSeconds from the manager's start to that first call;
	// ReadySeconds from the manager's start until the benchmark saw every org Ready.
	ConnectedSeconds float64 `json:"connectedSeconds"`
	StartupSeconds   float64 `json:"startupSeconds"`
	ReadySeconds     float64 `json:"readySeconds"`
	IdealConnected   float64 `json:"idealConnectedSeconds"`
	ConnectedRatio   float64 `json:"connectedRatio"`
	// SweepSeconds is a periodic re-check sweep: every org due at once, each check as the
	// interval brings it (a held access token, nothing changed in status).
	SweepSeconds float64 `json:"sweepSeconds"`
	IdealSweep   float64 `json:"idealSweepSeconds"`
	SweepRatio   float64 `json:"sweepRatio"`
	// RequestedSweepSeconds is a sweep of requested re-checks (the reconcile-request annotation
	// on every org, as `kubectl salesforce check --all` writes it): each echoes the request in
	// status, so each costs the API server a write.
	RequestedSweepSeconds float64 `json:"requestedSweepSeconds"`
	RequestedSweepRatio   float64 `json:"requestedSweepRatio"`
	// RequestedAPIRequestsPerCheck is what the manager sent the API server per requested re-check.
	RequestedAPIRequestsPerCheck float64 `json:"requestedApiRequestsPerCheck"`
	// RSSAnonMiB is the part of RSS that is the process's own memory (heap, stacks, runtime), not
	// the binary's pages mapped from its file.
	RSSAnonMiB float64 `json:"rssAnonMiB"`
	// LiveHeapMiB is what the heap holds right after a collection.
	LiveHeapMiB     float64 `json:"liveHeapMiB"`
	PeakCallsPerSec int     `json:"peakCallsPerSecond"`
	RSSMiB          float64 `json:"rssMiB"`
	HeapMiB         float64 `json:"heapInuseMiB"`
	CallsPerCheck   float64 `json:"salesforceCallsPerCheck"`
	CPUMsPerCheck   float64 `json:"cpuMsPerCheck"`
	// APIRequestsPerCheck is what the manager sent the API server per check of the periodic
	// sweep: a status write or a Secret read, when one was due.
	APIRequestsPerCheck float64 `json:"apiRequestsPerCheck"`
	RSSKiBPerOrgAbove   float64 `json:"rssKiBPerOrg"`
	// RestartPeakCallsPerSec is the busiest second of Salesforce calls in the restartWatch after
	// a failover that finds every org overdue (default courtesy buckets, 10m interval: N/600 a
	// second when spread evenly).
	RestartPeakCallsPerSec int `json:"restartPeakCallsPerSecond"`
}

// restartWatch is how long the calls after a restart are watched.
const restartWatch = 30 * time.Second

func main() {
	ctrllog.SetLogger(logr.Discard()) // envtest's start logs nothing worth showing here
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		sizes   = flag.String("orgs", "500,2000,5000,10000", "Comma-separated numbers of orgs, one run each.")
		latency = flag.Duration("latency", 100*time.Millisecond, "How long the fake Salesforce takes to answer every call.")
		conc    = flag.Int("concurrency", 32, "The manager's --max-concurrent-checks.")
		every   = flag.Duration("check-interval", 0, "The orgs' spec.checkInterval, which the periodic sweep waits for (default: twice the ideal time of the first connections plus 30s, at least 1m, so that no org is re-checked before every org connected).")
		out     = flag.String("out", "bin/bench", "Where the JSON, CSV and PNG go.")
		mgrPath = flag.String("manager", "", "The manager binary (default: build the repository's).")
		replot  = flag.String("replot", "", "Run nothing: redraw the PNG from this JSON (as written by a run), beside it with the same name (scale.json: scale.png).")
		profile = flag.Bool("profile", false, "Also write, for the first connections, CPU profiles of the manager, of kube-apiserver and of this program (the fake Salesforce) as cpu-{manager,apiserver,bench}-N.pb.gz, the API requests per org (requests-N.txt) and the calls started and in flight each second (calls-N.txt).")
	)
	flag.Parse()
	if *replot != "" {
		return replotJSON(*replot)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	bin := *mgrPath
	if bin == "" {
		bin = filepath.Join(*out, "manager")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the manager: %w", err)
		}
	}
	var results []Result
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--orgs: %q is not a number of orgs", f)
		}
		r, err := measure(ctx, bin, *out, n, *latency, *conc, *every, *profile)
		if err != nil {
			return fmt.Errorf("%d orgs: %w", n, err)
		}
		results = append(results, r)
		fmt.Printf("%d orgs (created in %.1fs): first call %.1fs after start, connected in %.1fs (%.2f× ideal), all Ready %.1fs after start, sweep %.1fs (%.2f× ideal; requested %.1fs, %.2f×), peak %d calls/s (%d in the %s after a restart), RSS %.0f MiB, heap %.0f MiB, %.2f calls and %.1f ms CPU per check\n",
			n, r.CreateSeconds, r.StartupSeconds, r.ConnectedSeconds, r.ConnectedRatio, r.ReadySeconds, r.SweepSeconds, r.SweepRatio, r.RequestedSweepSeconds, r.RequestedSweepRatio, r.PeakCallsPerSec, r.RestartPeakCallsPerSec, restartWatch, r.RSSMiB, r.HeapMiB, r.CallsPerCheck, r.CPUMsPerCheck)
	}
	if err := write(*out, results); err != nil {
		return err
	}
	fmt.Print(markdown(results))
	return nil
}

func measure(ctx context.Context, bin, out string, n int, latency time.Duration, conc int, every time.Duration, profile bool) (Result, error) {
	r := Result{Orgs: n, LatencyMs: latency.Milliseconds(), Concurrency: conc}
	if every == 0 {
		ideal := time.Duration(n) * 2 * latency / time.Duration(conc)
		every = max(time.Minute, (2*ideal + 30*time.Second).Round(time.Second))
	}
	r.CheckIntervalSeconds = every.Seconds()
	root, _ := os.Getwd()
	env, err := localenv.New(root, false)
	if err != nil {
		return r, err
	}
	cfg, err := env.Start()
	if err != nil {
		return r, err
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 2000, 4000
	fake, err := sftest.NewStandaloneServer("127.0.0.1:0")
	if err != nil {
		return r, err
	}
	defer fake.Close()
	fake.SetLatency(latency)

	dir, err := os.MkdirTemp("", "benchscale-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	kubeconfig, ca := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return r, err
	}
	if err := os.WriteFile(ca, fake.CACertPEM(), 0o600); err != nil {
		return r, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	pprofAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(out, fmt.Sprintf("manager-%d.log", n)))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		return r, err
	}
	peak := watchRate(ctx, fake)
	const ns = "scale"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return r, err
	}
	start := time.Now()
	err = parallel(ctx, n, 64, func(i int) error {
		name := fmt.Sprintf("org-%05d", i)
		fo := fake.AddOrg(sftest.OrgSpec{Name: name})
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: fo.AuthURL()}}); err != nil {
			return err
		}
		return c.Create(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: name},
				CheckInterval: &metav1.Duration{Duration: every}}})
	})
	if err != nil {
		return r, err
	}
	r.CreateSeconds = time.Since(start).Seconds()
	// Let the API server finish what a start and a burst of creations leave it doing (the CRDs'
	// OpenAPI, etcd compaction), which would otherwise fall into a small round's few seconds.
	time.Sleep(10 * time.Second)

	// The manager starts once every org exists, so the time to Connected is the operator's, not
	// the API server's rate of creating objects.
	newManager := func(extra ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--enable-webhooks=false", "--health-probe-bind-address=0",
			"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false", "--pprof-bind-address=" + pprofAddr,
			"--salesforce-allowed-hosts=" + fake.Host(), "--salesforce-ca-file=" + ca,
			"--max-concurrent-checks=" + strconv.Itoa(conc)}, extra...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd
	}
	// Without the courtesy buckets: every org shares the fake's one host, whose bucket would bind.
	mgr := newManager("--salesforce-host-qps=0", "--salesforce-org-qps=0")
	var requestsBefore map[string]float64
	if profile {
		requestsBefore = apiRequests(cfg)
	}
	start = time.Now()
	fake.StartCallLog()
	if err := mgr.Start(); err != nil {
		return r, err
	}
	defer func() { _ = mgr.Process.Signal(syscall.SIGTERM); _ = mgr.Wait() }()
	var profiled sync.WaitGroup
	if profile {
		profiled.Go(func() { profileFirstConnections(ctx, cfg, pprofAddr, out, n, latency, conc) })
	}

	if err := waitConnected(ctx, c, fake, ns, n, 30*time.Minute); err != nil {
		return r, err
	}
	r.ReadySeconds = time.Since(start).Seconds()
	// The first connections, timed by the fake's call log as the sweep is: from the first call
	// to the answer that completed the last org's (a token request and a check, 2 calls).
	calls := fake.CallLog()
	r.StartupSeconds = calls[0].Start.Sub(start).Seconds()
	r.ConnectedSeconds = timeUntilEach(calls, 2).Seconds()
	r.IdealConnected = float64(n) * 2 * latency.Seconds() / float64(conc)
	r.ConnectedRatio = r.ConnectedSeconds / r.IdealConnected
	if profile {
		writeRequestsPerOrg(requestsBefore, apiRequests(cfg), n, filepath.Join(out, fmt.Sprintf("requests-%d.txt", n)))
		writeCallsPerSecond(calls, filepath.Join(out, fmt.Sprintf("calls-%d.txt", n)))
	}
	profiled.Wait()

	time.Sleep(10 * time.Second) // settle: caches full, first-check garbage collected
	r.RSSMiB = procStatusMiB(mgr.Process.Pid, "VmRSS")
	r.RSSAnonMiB = procStatusMiB(mgr.Process.Pid, "RssAnon") // the rest is the binary's pages
	r.HeapMiB = scrape(metricsAddr, "go_memstats_heap_inuse_bytes") / (1 << 20)
	r.RSSKiBPerOrgAbove = r.RSSMiB * 1024 / float64(n)
	if smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", mgr.Process.Pid)); err == nil { // which mapping holds the RSS
		_ = os.WriteFile(filepath.Join(out, fmt.Sprintf("smaps-%d.txt", n)), smaps, 0o644)
	}
	if err := fetch(pprofAddr, "heap?gc=1", filepath.Join(out, fmt.Sprintf("heap-%d.pb.gz", n))); err != nil {
		return r, err
	}
	r.LiveHeapMiB = scrape(metricsAddr, "go_memstats_heap_inuse_bytes") / (1 << 20) // right after that collection

	// A periodic sweep: every org due at once. The manager is paused (SIGSTOP) until every org's
	// next check (the interval after its first, plus a jitter of up to a tenth) has come; resumed,
	// it finds them all due. Timed by the fake's call log, from the first call of the sweep to the
	// answer that completed the last org's check; a CPU profile of the manager covers it.
	r.IdealSweep = float64(n) * latency.Seconds() / float64(conc)
	due := calls[len(calls)-1].End.Add(every + every/10 + 2*time.Second)
	// pause stops the manager, and takes the counters the sweep after it is measured from (a
	// paused manager cannot answer a scrape).
	var cpu0, api0 float64
	pause := func() error {
		cpu0, api0 = cpuSeconds(mgr.Process.Pid), scrape(metricsAddr, "rest_client_requests_total")
		return mgr.Process.Signal(syscall.SIGSTOP)
	}
	if err := pause(); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "%d orgs: the manager paused until every org is due (%s)\n", n, time.Until(due).Round(time.Second))
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(time.Until(due)):
	}
	// sweep resumes the manager and measures the checks it makes until every org had one.
	type sweepResult struct{ secs, apiPerCheck, callsPerCheck, cpuMsPerCheck float64 }
	sweep := func(profile string) (sw sweepResult, err error) {
		fake.StartCallLog()
		if err := mgr.Process.Signal(syscall.SIGCONT); err != nil {
			return sw, err
		}
		profiled := make(chan error, 1)
		go func() {
			secs := int(max(5, 1.5*r.IdealSweep+3))
			profiled <- fetch(pprofAddr, fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(out, fmt.Sprintf("cpu-%s-%d.pb.gz", profile, n)))
		}()
		var calls []sftest.Call
		for {
			if ctx.Err() != nil {
				return sw, ctx.Err()
			}
			calls = fake.CallLog()
			if checkedOrgs(calls) >= n {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sw.secs = calls[len(calls)-1].End.Sub(calls[0].Start).Seconds()
		sw.callsPerCheck = float64(len(calls)) / float64(n)
		time.Sleep(2 * time.Second)
		sw.cpuMsPerCheck = (cpuSeconds(mgr.Process.Pid) - cpu0) * 1000 / float64(n)
		sw.apiPerCheck = (scrape(metricsAddr, "rest_client_requests_total") - api0) / float64(n)
		return sw, <-profiled
	}
	periodic, err := sweep("sweep")
	if err != nil {
		return r, err
	}
	r.SweepSeconds, r.APIRequestsPerCheck = periodic.secs, periodic.apiPerCheck
	r.CallsPerCheck, r.CPUMsPerCheck = periodic.callsPerCheck, periodic.cpuMsPerCheck
	r.SweepRatio = r.SweepSeconds / r.IdealSweep

	// A sweep of requested re-checks: every org asked at once. The requests are written while
	// the manager is paused, so that the sweep measures the manager's re-checks, not how fast the
	// API server accepts N requests; resumed, the manager finds them all (its watch may have to
	// re-list).
	if err := pause(); err != nil {
		return r, err
	}
	err = parallel(ctx, n, 64, func(i int) error {
		patch := client.RawPatch("application/merge-patch+json",
			[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"sweep"}}}`, sfv1.ReconcileRequestedAtAnnotation)))
		return c.Patch(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("org-%05d", i)}}, patch)
	})
	if err != nil {
		_ = mgr.Process.Signal(syscall.SIGCONT)
		return r, err
	}
	requested, err := sweep("requested")
	if err != nil {
		return r, err
	}
	r.RequestedSweepSeconds, r.RequestedAPIRequestsPerCheck = requested.secs, requested.apiPerCheck
	r.RequestedSweepRatio = r.RequestedSweepSeconds / r.IdealSweep
	for _, p := range []string{"mutex", "block"} {
		if err := fetch(pprofAddr, p, filepath.Join(out, fmt.Sprintf("%s-%d.pb.gz", p, n))); err != nil {
			return r, err
		}
	}

	// A failover after a long outage: every org's last check an hour old, so every one is overdue
	// when the new manager (with the default courtesy buckets) starts. It spreads those first
	// checks over the interval (10m) instead of sending them at once; its busiest second is
	// measured from the call log.
	_ = mgr.Process.Signal(syscall.SIGTERM)
	_ = mgr.Wait()
	hourAgo := metav1.NewTime(time.Now().Add(-time.Hour)).UTC().Format(time.RFC3339)
	err = parallel(ctx, n, 64, func(i int) error {
		patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(`{"status":{"lastCheckTime":%q}}`, hourAgo)))
		return c.Status().Patch(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("org-%05d", i)}}, patch)
	})
	if err != nil {
		return r, err
	}
	fake.StartCallLog()
	mgr = newManager()
	if err := mgr.Start(); err != nil {
		return r, err
	}
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(restartWatch):
	}
	r.RestartPeakCallsPerSec = peakPerSecond(fake.CallLog())
	r.PeakCallsPerSec = int(peak.Load())
	return r, nil
}

// parallel runs f(0..n-1) on w workers and returns the first error.
func parallel(ctx context.Context, n, w int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, w)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs, ctx.Err())
}

// It waits on the fake's call log (every org's token request and check answered) before it lists
// the orgs: a list of 10,000 orgs costs the API server a second of CPU, which polling it would take
// from the manager's first connections.
func waitConnected(ctx context.Context, c client.Client, fake *sftest.Server, ns string, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && callsEach(fake.CallLog(), 2) < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	for time.Now().Before(deadline) {
		var list sfv1.SalesforceOrgList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		connected := 0
		for _, o := range list.Items {
			if cond := meta.FindStatusCondition(o.Status.Conditions, sfv1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
				connected++
			}
		}
		if connected == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return fmt.Errorf("not every org Connected within %s", limit)
}

// callsEach counts the orgs with at least k answered calls in the log.
func callsEach(calls []sftest.Call, k int) int {
	seen, done := map[string]int{}, 0
	for _, c := range calls {
		if c.Org == "" {
			continue
		}
		if seen[c.Org]++; seen[c.Org] == k {
			done++
		}
	}
	return done
}

// watchRate samples the fake's call count and keeps the highest count in any one-second window.
func watchRate(ctx context.Context, fake *sftest.Server) *atomic.Int64 {
	peak := &atomic.Int64{}
	go func() {
		var window []int
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			window = append(window, fake.TotalCalls())
			if len(window) > 11 {
				window = window[1:]
			}
			if d := int64(window[len(window)-1] - window[0]); d > peak.Load() {
				peak.Store(d)
			}
		}
	}()
	return peak
}

// peakPerSecond is the most calls that reached the fake within any one second of the log (by
// arrival, the rate the operator sent them at: answers can bunch behind a slow one).
func peakPerSecond(calls []sftest.Call) int {
	starts := make([]time.Time, 0, len(calls))
	for _, c := range calls {
		starts = append(starts, c.Start)
	}
	slices.SortFunc(starts, time.Time.Compare)
	peak, j := 0, 0
	for i := range starts {
		for starts[i].Sub(starts[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	return peak
}

// timeUntilEach is how long from the first call in the log until every org that appears in it
// had k calls answered.
func timeUntilEach(calls []sftest.Call, k int) time.Duration {
	seen := map[string]int{}
	var last time.Time
	for _, c := range calls {
		if c.Org == "" {
			continue
		}
		if seen[c.Org]++; seen[c.Org] == k && c.End.After(last) {
			last = c.End
		}
	}
	return last.Sub(calls[0].Start)
}

// checkedOrgs counts the orgs with an answered call in the log.
func checkedOrgs(calls []sftest.Call) int {
	seen := map[string]bool{}
	for _, c := range calls {
		if c.Org != "" {
			seen[c.Org] = true
		}
	}
	return len(seen)
}

// apiserverGet reads a path of kube-apiserver's (as the admin the benchmark runs as).
func apiserverGet(cfg *rest.Config, path string) ([]byte, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

// apiRequests is kube-apiserver's apiserver_request_total by verb, resource, subresource and
// dry run, summed over the other labels (nil when it cannot be read).
func apiRequests(cfg *rest.Config) map[string]float64 {
	b, err := apiserverGet(cfg, "/metrics")
	if err != nil {
		return nil
	}
	counts := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		line, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(line, "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		var key []string
		for _, l := range strings.Split(labels, ",") {
			k, val, _ := strings.Cut(l, "=")
			switch k {
			case "verb", "resource", "subresource", "dry_run":
				if val != `""` {
					key = append(key, k+"="+val)
				}
			}
		}
		counts[strings.Join(key, " ")] += v
	}
	return counts
}

// writeRequestsPerOrg writes the API requests made between two readings, per org, largest first.
func writeRequestsPerOrg(before, after map[string]float64, n int, file string) {
	type row struct {
		key string
		per float64
	}
	var rows []row
	total := 0.0
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			rows = append(rows, row{k, d / float64(n)})
			total += d / float64(n)
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(b.per, a.per) })
	var b strings.Builder
	fmt.Fprintf(&b, "%.2f API requests per org over the first connections of %d orgs\n", total, n)
	for _, r := range rows {
		fmt.Fprintf(&b, "%6.3f %s\n", r.per, r.key)
	}
	_ = os.WriteFile(file, []byte(b.String()), 0o644)
}

// writeCallsPerSecond writes how many calls reached the fake in each second of the log, and
// how many were in flight at that second's start: slots that sat idle show as dips.
func writeCallsPerSecond(calls []sftest.Call, file string) {
	if len(calls) == 0 {
		return
	}
	t0 := calls[0].Start
	for _, c := range calls {
		if c.Start.Before(t0) {
			t0 = c.Start
		}
	}
	var started, busy []int
	for _, c := range calls {
		s := int(c.Start.Sub(t0) / time.Second)
		for len(started) <= s {
			started = append(started, 0)
		}
		started[s]++
	}
	busy = make([]int, len(started))
	for _, c := range calls { // in flight at each whole second
		for s := int(c.Start.Sub(t0)/time.Second) + 1; s < len(busy) && t0.Add(time.Duration(s)*time.Second).Before(c.End); s++ {
			busy[s]++
		}
	}
	var b strings.Builder
	b.WriteString("second calls-started in-flight\n")
	for i := range started {
		fmt.Fprintf(&b, "%d %d %d\n", i, started[i], busy[i])
	}
	_ = os.WriteFile(file, []byte(b.String()), 0o644)
}

// profileFirstConnections takes CPU profiles of the manager, kube-apiserver and this program
// together, over the middle of the first connections (from 3s after the start, for half the
// ideal time, at most 30s).
func profileFirstConnections(ctx context.Context, cfg *rest.Config, pprofAddr, out string, n int, latency time.Duration, conc int) {
	window := min(30*time.Second, time.Duration(n)*latency/time.Duration(conc))
	select {
	case <-ctx.Done():
		return
	case <-time.After(3 * time.Second):
	}
	secs := strconv.Itoa(int(window.Seconds()))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := fetch(pprofAddr, "profile?seconds="+secs, filepath.Join(out, fmt.Sprintf("cpu-manager-%d.pb.gz", n))); err != nil {
			fmt.Fprintln(os.Stderr, "benchscale: profiling the manager:", err)
		}
	})
	wg.Go(func() {
		b, err := apiserverGet(cfg, "/debug/pprof/profile?seconds="+secs)
		if err == nil {
			err = os.WriteFile(filepath.Join(out, fmt.Sprintf("cpu-apiserver-%d.pb.gz", n)), b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchscale: profiling kube-apiserver:", err)
		}
	})
	f, err := os.Create(filepath.Join(out, fmt.Sprintf("cpu-bench-%d.pb.gz", n)))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err == nil {
			time.Sleep(window)
			pprof.StopCPUProfile()
		}
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchscale: profiling this program:", err)
	}
	wg.Wait()
}

// fetch saves one of the manager's pprof profiles (path below /debug/pprof/) to file.
func fetch(addr, path, file string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", path, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procStatusMiB is one memory field of /proc/PID/status (VmRSS, RssAnon), in MiB.
func procStatusMiB(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == field+":" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ is 100 on Linux)
}

// scrape reads one metric from the manager's plain-HTTP metrics endpoint: the sum of its series.
func scrape(addr, name string) float64 {
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	// Read it all: a scrape cut short leaves the manager holding the gathered series until its
	// write fails, which a heap profile taken next would count.
	defer func() { _, _ = io.Copy(io.Discard, resp.Body) }()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

func write(out string, results []Result) error {
	j, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "scale.json"), j, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "scale.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"orgs", "connected_s", "connected_ratio", "sweep_s", "sweep_ratio", "requested_sweep_s", "requested_sweep_ratio",
		"peak_calls_per_s", "restart_peak_calls_per_s", "rss_mib", "rss_anon_mib", "heap_mib", "live_heap_mib", "calls_per_check",
		"api_requests_per_check", "api_requests_per_requested_check", "cpu_ms_per_check"})
	for _, r := range results {
		_ = w.Write([]string{strconv.Itoa(r.Orgs), ff(r.ConnectedSeconds), ff(r.ConnectedRatio), ff(r.SweepSeconds), ff(r.SweepRatio),
			ff(r.RequestedSweepSeconds), ff(r.RequestedSweepRatio), strconv.Itoa(r.PeakCallsPerSec), strconv.Itoa(r.RestartPeakCallsPerSec),
			ff(r.RSSMiB), ff(r.RSSAnonMiB), ff(r.HeapMiB), ff(r.LiveHeapMiB), ff(r.CallsPerCheck), ff(r.APIRequestsPerCheck),
			ff(r.RequestedAPIRequestsPerCheck), ff(r.CPUMsPerCheck)})
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		return err
	}
	return plot(filepath.Join(out, "scale.png"), results)
}

// replotJSON draws the PNG of the results a run wrote to file, beside it.
func replotJSON(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var results []Result
	if err := json.Unmarshal(b, &results); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(results) == 0 {
		return fmt.Errorf("%s: no results", file)
	}
	png := strings.TrimSuffix(file, filepath.Ext(file)) + ".png"
	if err := plot(png, results); err != nil {
		return err
	}
	fmt.Println("wrote", png)
	return nil
}

func ff(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func markdown(results []Result) string {
	var b strings.Builder
	b.WriteString("| orgs | first connections (ideal N·2L/C) | ratio | re-check sweep (ideal N·L/C) | ratio | requested re-checks | ratio | peak calls/s | peak calls/s after a failover | manager RSS (anonymous) | heap in use after a collection | calls per check | API requests per check (requested) | CPU per check |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %d | %.1f s (%.1f s) | %.2f | %.1f s (%.1f s) | %.2f | %.1f s | %.2f | %d | %d | %.0f MiB (%.0f MiB) | %.0f MiB | %.2f | %.2f (%.2f) | %.1f ms |\n",
			r.Orgs, r.ConnectedSeconds, r.IdealConnected, r.ConnectedRatio, r.SweepSeconds, r.IdealSweep, r.SweepRatio,
			r.RequestedSweepSeconds, r.RequestedSweepRatio, r.PeakCallsPerSec, r.RestartPeakCallsPerSec, r.RSSMiB, r.RSSAnonMiB,
			r.LiveHeapMiB, r.CallsPerCheck, r.APIRequestsPerCheck, r.RequestedAPIRequestsPerCheck, r.CPUMsPerCheck)
	}
	return b.String()
}
