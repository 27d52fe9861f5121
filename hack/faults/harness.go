package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// Config is one run of the harness.
type Config struct {
	Root    string // the repository root
	WorkDir string // kubeconfig, CA, the built manager and the managers' logs
	Manager string // the manager binary; "" builds the repository's into WorkDir

	Rotation bool             // run the matrix: the manager stopped around token requests
	Trials   int              // per cell
	Orgs     int              // per trial
	Signals  []syscall.Signal // how the manager is stopped
	Delays   []time.Duration  // how long the fake takes to answer a check's calls (not logins)
	StopMax  time.Duration    // the stop comes 0..StopMax after the first token request
	// WriteWindow bounds the time one API write may take after Salesforce issued a rotated token:
	// a SIGKILL that lands within it loses the token whatever the manager does (counted apart).
	WriteWindow time.Duration
	// Settle is how long a restarted manager has to decide every org, once it may check them:
	// after a SIGKILL (or any stop that left an exchange claim behind) it gets claimWait more,
	// for the claim the stopped manager may have left (salesforce.ClaimTTL plus the skew).
	Settle time.Duration
	// Parallel bounds the trials in progress at once: a trial's stop runs alone, but its
	// verdicts (often a wait for a claim to end) overlap the next trials' stops.
	Parallel int
	Seed     uint64
	Revert   bool      // also run the revert cases
	Progress io.Writer // a line per trial; never a credential

	// LeaderElection runs the leader-election cases: the API server frozen for Outage (0: not)
	// under a leader, and the lease handed over on a graceful stop.
	LeaderElection bool
	Outage         time.Duration

	// HandOver runs the hand-over cases during rotation: the leader stopped (SIGTERM, SIGKILL)
	// with a standby running, orgs moved to another shard, and two orgs on one Secret key.
	HandOver bool
}

// Timeouts of a manager's life, generous: they bound a run that goes wrong, not a normal one.
const (
	firstTokenTimeout = 60 * time.Second // manager start, cache sync, first login
	gracefulExit      = 45 * time.Second // controller-runtime's graceful shutdown is 30s
	killExit          = 10 * time.Second
)

type harness struct {
	cfg       Config
	k8s       client.Client
	fake      *sftest.Server
	managers  *managers
	apiServer apiServer
	rng       *rand.Rand
	markers   atomic.Int64
	trials    chan struct{} // a slot per trial in progress (cfg.Parallel)
}

// Run starts a control plane and a fake Salesforce, runs the matrix, the revert cases, the
// leader-election cases and the hand-over cases as configured, and stops everything it started,
// also when ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	env, err := localenv.New(cfg.Root, false)
	if err != nil {
		return nil, err
	}
	restCfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()
	fake, err := sftest.NewStandaloneServer("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the fake Salesforce: %w", err)
	}
	defer fake.Close()

	h := &harness{cfg: cfg, fake: fake, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed)), trials: make(chan struct{}, max(cfg.Parallel, 1))}
	if h.k8s, err = client.New(restCfg, client.Options{Scheme: operator.Scheme}); err != nil {
		return nil, err
	}
	if h.apiServer, err = findAPIServer(env, restCfg.Host); err != nil {
		return nil, err
	}
	if h.managers, err = prepareManagers(ctx, cfg, env.KubeConfig, fake); err != nil {
		return nil, err
	}
	defer h.managers.killAll()

	rep := &Report{Config: cfg}
	defer func() { rep.SpentTotal = fake.SpentTokensPresented() }()
	// A phase per check delay (the fake's delay is global): that delay's cells and, with the
	// first delay, the revert and hand-over cases run alongside each other, each trial and case
	// in its own namespace with managers watching only it, so that the waits for claims to end
	// overlap. The first delay's phase runs last.
	cells := make([]*cellRun, len(cfg.Signals)*len(cfg.Delays))
	defer func() {
		for _, c := range cells {
			if c != nil {
				rep.Cells = append(rep.Cells, c.c)
			}
		}
	}()
	for k := range cfg.Delays {
		j := (k + 1) % len(cfg.Delays)
		first := j == 0
		if !cfg.Rotation && !(first && (cfg.Revert || cfg.HandOver)) {
			continue
		}
		fake.SetCheckDelay(cfg.Delays[j])
		ph := newPhase(ctx)
		if first && cfg.Revert {
			ph.run(func(ctx context.Context) (err error) {
				rep.Revert, err = h.revertCases(ctx)
				return err
			})
		}
		if first && cfg.HandOver {
			seed := h.rng.Uint64()
			ph.run(func(ctx context.Context) (err error) {
				rep.HandOvers, err = h.handOverCases(ctx, seed)
				return err
			})
		}
		if cfg.Rotation {
			for i, sig := range cfg.Signals {
				n := i*len(cfg.Delays) + j
				cells[n] = h.cell(ph, n, sig, cfg.Delays[j])
			}
		}
		if err := ph.wait(); err != nil {
			return rep, err
		}
	}
	if cfg.LeaderElection {
		fake.SetCheckDelay(cfg.Delays[0])
		if rep.Outages, rep.Handover, err = h.leaderElectionCases(ctx); err != nil {
			return rep, err
		}
	}
	h.managers.killAll()
	rep.LeakingLogs, err = leakingLogs(h.managers.logDir, fake.IssuedSecrets())
	return rep, err
}

// leakingLogs names the manager logs that hold a secret the fake issued. It never says which.
func leakingLogs(dir string, secrets []string) ([]string, error) {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	var leaking []string
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(secrets, func(s string) bool { return bytes.Contains(b, []byte(s)) }) {
			leaking = append(leaking, filepath.Base(l))
		}
	}
	return leaking, nil
}

// prepareManagers writes the kubeconfig and the fake's CA, builds the manager unless given one,
// and returns the launcher of manager processes.
func prepareManagers(ctx context.Context, cfg Config, kubeconfig []byte, fake *sftest.Server) (*managers, error) {
	logDir := filepath.Join(cfg.WorkDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	kc, ca := filepath.Join(cfg.WorkDir, "kubeconfig"), filepath.Join(cfg.WorkDir, "fake-salesforce-ca.pem")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ca, fake.CACertPEM(), 0o600); err != nil {
		return nil, err
	}
	bin := cfg.Manager
	if bin == "" {
		bin = filepath.Join(cfg.WorkDir, "manager")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		build.Dir = cfg.Root
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	}
	return &managers{
		binary: bin,
		args: []string{"--enable-webhooks=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--salesforce-allowed-hosts=" + fake.Host(), "--salesforce-ca-file=" + ca, "--retry-base=1s"},
		env:    append(os.Environ(), "KUBECONFIG="+kc),
		logDir: logDir,
	}, nil
}

// phase is work running alongside other work: the first error cancels the rest.
type phase struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

func newPhase(ctx context.Context) *phase {
	p := &phase{}
	p.ctx, p.cancel = context.WithCancelCause(ctx)
	return p
}

// run runs f on its own goroutine.
func (p *phase) run(f func(ctx context.Context) error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := f(p.ctx); err != nil {
			p.cancel(err)
		}
	}()
}

// wait waits for everything run and returns the first error.
func (p *phase) wait() error {
	p.wg.Wait()
	err := context.Cause(p.ctx)
	p.cancel(nil)
	return err
}

// cell runs the trials of one stop signal and one check delay on ph. A trial's stop (its orgs,
// a manager stopped around its first token request, the next one started) runs on the caller's
// goroutine, one after another; its verdicts run on ph alongside the next trials' stops, with at
// most cfg.Parallel trials in progress in all: after a SIGKILL the next manager may wait out an
// exchange claim the killed one left (up to claimWait), idle time that would otherwise add up.
// A trial's managers watch only its namespace. The cell is complete once ph is.
func (h *harness) cell(ph *phase, n int, sig syscall.Signal, delay time.Duration) *cellRun {
	run := &cellRun{c: Cell{Signal: sig, Delay: delay, Why: map[string]int{}}}
	wrap := func(i int, err error) error {
		return fmt.Errorf("%s, check delay %s, trial %d: %w", signalName(sig), delay, i+1, err)
	}
	for i := range h.cfg.Trials {
		select {
		case h.trials <- struct{}{}:
		case <-ph.ctx.Done():
			return run
		}
		t, err := h.stopTrial(ph.ctx, fmt.Sprintf("c%d-t%d", n, i), sig, run)
		if err != nil {
			ph.cancel(wrap(i, err))
			return run
		}
		ph.run(func(ctx context.Context) error {
			defer func() { <-h.trials }()
			if err := h.judgeTrial(ctx, t, run); err != nil {
				return wrap(i, err)
			}
			return nil
		})
	}
	return run
}

// cellRun is a cell whose trials' verdicts come in concurrently.
type cellRun struct {
	mu sync.Mutex
	c  Cell
}

func (r *cellRun) add(f func(c *Cell)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.c)
}

// trial is one trial between its stop and its verdicts.
type trial struct {
	ns         string
	sig        syscall.Signal
	orgs       []*org
	after      time.Duration // the stop came this long after the first token request
	stoppedAt  time.Time
	claimsLeft int    // Secrets holding the stopped manager's exchange claim after the stop
	marker     string // the check requested after the stop
	next       *manager
}

// stopTrial creates the orgs, starts a manager, stops it with sig at a random moment after its
// first token request, requests a check of every org and starts the next manager.
func (h *harness) stopTrial(ctx context.Context, ns string, sig syscall.Signal, run *cellRun) (*trial, error) {
	t := &trial{ns: ns, sig: sig}
	if err := h.createNamespace(ctx, ns); err != nil {
		return nil, err
	}
	for i := range h.cfg.Orgs {
		o, err := h.createOrg(ctx, ns, fmt.Sprintf("org-%d", i), "")
		if err != nil {
			return nil, err
		}
		t.orgs = append(t.orgs, o)
	}

	first, err := h.managers.start(watch(ns)...)
	if err != nil {
		return nil, err
	}
	if err := h.waitFirstToken(ctx, first, t.orgs); err != nil {
		first.stop(syscall.SIGKILL, killExit)
		return nil, err
	}
	t.after = time.Duration(h.rng.Int64N(int64(h.cfg.StopMax) + 1))
	if err := sleep(ctx, t.after); err != nil {
		first.stop(syscall.SIGKILL, killExit)
		return nil, err
	}
	t.stoppedAt = time.Now()
	if !first.stop(sig, gracefulExit) {
		run.add(func(c *Cell) { c.SlowExits++ })
	}

	if t.claimsLeft, _, err = h.claimsHeld(ctx, t.orgs); err != nil {
		return nil, err
	}
	if t.marker, err = h.requestChecks(ctx, t.orgs); err != nil {
		return nil, err
	}
	if t.next, err = h.managers.start(watch(ns)...); err != nil {
		return nil, err
	}
	return t, nil
}

// judgeTrial waits for the next manager's verdict on every org and counts the trial into the
// cell: credentials lost, and spent refresh tokens presented, each inside or outside the write
// window.
func (h *harness) judgeTrial(ctx context.Context, t *trial, run *cellRun) error {
	timeout := h.cfg.Settle
	if t.sig == syscall.SIGKILL || t.claimsLeft > 0 {
		timeout += claimWait
	}
	verdicts, err := h.judge(ctx, t.next, t.orgs, t.marker, timeout)
	if err != nil {
		return err
	}
	decided := time.Since(t.stoppedAt)
	lost, spent := 0, 0
	run.add(func(c *Cell) {
		c.Trials++
		c.ClaimsLeft += t.claimsLeft
		for _, o := range t.orgs {
			c.Orgs++
			v, s := verdicts[o], o.fake.SpentTokensPresented()
			spent += s
			if v == ok {
				c.Spent += s
				if s > 0 {
					c.Why[fmt.Sprintf("kept, but a spent refresh token was presented (%s)", t.ns)] += s
				}
				continue
			}
			// A SIGKILL between Salesforce issuing a rotated token and the API server storing it
			// loses it whatever the manager does: the old token died at issue, the new one lived
			// only in the killed process. So does one that lands while the token request is in
			// flight (the token issued just after the kill, to a request the process sent before
			// it): the answer has nobody to reach. Such losses are counted apart; any other is a
			// failure. The next manager then presents the token the Secret still holds, which
			// that lost rotation spent: those spent tokens are counted apart too.
			gap := t.stoppedAt.Sub(o.fake.RefreshIssuedAt())
			if t.sig == syscall.SIGKILL && gap >= 0 && gap < h.cfg.WriteWindow {
				c.InWindow++
				c.SpentInWindow += s
				c.Why[v+fmt.Sprintf(" (killed %s after the token was issued: inside the write window)", gap.Round(time.Millisecond))]++
				continue
			}
			if t.sig == syscall.SIGKILL && gap < 0 && -gap < h.cfg.WriteWindow {
				c.InWindow++
				c.SpentInWindow += s
				c.Why[v+fmt.Sprintf(" (the token was issued %s after the kill: its request was in flight)", (-gap).Round(time.Millisecond))]++
				continue
			}
			lost++
			c.Lost++
			c.Spent += s
			c.Why[v]++
		}
		if lost > 0 {
			c.TrialsLosing++
		}
	})
	claims := ""
	if t.claimsLeft > 0 {
		claims = fmt.Sprintf(" %d exchange claims left behind;", t.claimsLeft)
	}
	h.progress("%s, check delay %s, %s: stopped %s after the first token request;%s decided %s after the stop; %d of %d credentials lost; %d spent tokens presented",
		signalName(t.sig), run.c.Delay, t.ns, t.after.Round(time.Millisecond), claims, seconds(decided), lost, len(t.orgs), spent)
	return h.deleteOrgs(ctx, t.orgs)
}

// watch is the flag that makes a manager watch only ns.
func watch(ns string) []string { return []string{"--watch-namespaces=" + ns} }

// judge waits (up to timeout) for m's verdict on every org (marker handled), stops m gracefully,
// and then also requires each Secret to hold a live refresh token.
func (h *harness) judge(ctx context.Context, m *manager, orgs []*org, marker string, timeout time.Duration) (map[*org]string, error) {
	verdicts, err := h.settle(ctx, orgs, marker, timeout)
	m.stop(syscall.SIGTERM, gracefulExit)
	if err != nil {
		return nil, err
	}
	return verdicts, h.recheckSecrets(ctx, verdicts)
}

// recheckSecrets turns an ok into a loss when, with no manager running, the Secret's refresh token
// is dead: the next manager would be refused.
func (h *harness) recheckSecrets(ctx context.Context, verdicts map[*org]string) error {
	for o, v := range verdicts {
		if v != ok {
			continue
		}
		live, err := h.secretLive(ctx, o)
		if err != nil {
			return err
		}
		if !live {
			verdicts[o] = lostDeadSecret
		}
	}
	return nil
}

// waitFirstToken returns as soon as the fake has seen a request for any of the orgs: a fresh
// manager has no session, so its first request for an org is a token request.
func (h *harness) waitFirstToken(ctx context.Context, m *manager, orgs []*org) error {
	deadline := time.Now().Add(firstTokenTimeout)
	for {
		for _, o := range orgs {
			if h.fake.CallsFor(o.fake) > 0 {
				return nil
			}
		}
		switch {
		case m.exited():
			return fmt.Errorf("the manager exited before calling Salesforce; its log: %s", m.log)
		case time.Now().After(deadline):
			return fmt.Errorf("the manager made no token request in %s; its log: %s", firstTokenTimeout, m.log)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// revertCases checks that an old auth URL written back to the Secret (by a GitOps tool, say)
// does not cost the credential, with the manager running and across a restart.
func (h *harness) revertCases(ctx context.Context) ([]RevertResult, error) {
	var out []RevertResult
	for _, restart := range []bool{false, true} {
		v, spent, err := h.revert(ctx, restart)
		if err != nil {
			return out, fmt.Errorf("revert case (restart=%v): %w", restart, err)
		}
		out = append(out, RevertResult{AcrossRestart: restart, Verdict: v, Spent: spent})
	}
	return out, nil
}

// revert returns the verdict and the spent refresh tokens presented for the org.
func (h *harness) revert(ctx context.Context, restart bool) (string, int, error) {
	ns := "revert-" + revertSlug(restart)
	if err := h.createNamespace(ctx, ns); err != nil {
		return "", 0, err
	}
	marker := h.newMarker()
	o, err := h.createOrg(ctx, ns, "org", marker)
	if err != nil {
		return "", 0, err
	}
	orgs := []*org{o}
	m, err := h.managers.start(watch(ns)...)
	if err != nil {
		return "", 0, err
	}
	defer func() { m.stop(syscall.SIGKILL, killExit) }() // on the error paths

	// Connected, the rotation written back: the original auth URL is now dead.
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err != nil {
		return "", 0, err
	}
	if v := verdicts[o]; v != ok {
		return "before the revert: " + v, o.fake.SpentTokensPresented(), h.deleteOrgs(ctx, orgs)
	}
	original, err := salesforce.ParseAuthURL(o.original)
	if err != nil {
		return "", 0, err
	}
	if h.fake.RefreshTokenLive(original.RefreshToken) {
		return "", 0, errors.New("the org connected without a rotation: the revert would test nothing")
	}

	if restart {
		m.stop(syscall.SIGTERM, gracefulExit)
	}
	if err := h.writeSecret(ctx, o, o.original); err != nil {
		return "", 0, err
	}
	if marker, err = h.requestChecks(ctx, orgs); err != nil {
		return "", 0, err
	}
	if restart {
		if m, err = h.managers.start(watch(ns)...); err != nil {
			return "", 0, err
		}
	}
	if verdicts, err = h.judge(ctx, m, orgs, marker, h.cfg.Settle); err != nil {
		return "", 0, err
	}
	spent := o.fake.SpentTokensPresented()
	h.progress("revert case, %s: %s; %d spent tokens presented", revertName(restart), orElse(verdicts[o], "kept"), spent)
	return verdicts[o], spent, h.deleteOrgs(ctx, orgs)
}

// newMarker is a fresh "Test connection" value.
func (h *harness) newMarker() string {
	return fmt.Sprintf("%s-%d", time.Now().UTC().Format(time.RFC3339Nano), h.markers.Add(1))
}

func (h *harness) progress(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
	}
}
