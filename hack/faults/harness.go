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
	Settle      time.Duration // how long a restarted manager has to decide every org
	Seed        uint64
	Revert      bool      // also run the revert cases
	Progress    io.Writer // a line per trial; never a credential

	// LeaderElection runs the leader-election cases: the API server frozen for Outage (0: not)
	// under a leader, and the lease handed over on a graceful stop.
	LeaderElection bool
	Outage         time.Duration
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
	markers   int
}

// Run starts a control plane and a fake Salesforce, runs the matrix, the revert cases and the
// leader-election cases as configured, and stops everything it started, also when ctx ends.
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

	h := &harness{cfg: cfg, fake: fake, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))}
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
	if cfg.Rotation {
		for _, sig := range cfg.Signals {
			for _, d := range cfg.Delays {
				fake.SetCheckDelay(d)
				c, err := h.cell(ctx, len(rep.Cells), sig, d)
				if err != nil {
					return rep, err
				}
				rep.Cells = append(rep.Cells, c)
			}
		}
	}
	if cfg.Revert {
		fake.SetCheckDelay(cfg.Delays[0])
		if rep.Revert, err = h.revertCases(ctx); err != nil {
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

// cell runs the trials of one stop signal and one check delay.
func (h *harness) cell(ctx context.Context, n int, sig syscall.Signal, delay time.Duration) (Cell, error) {
	c := Cell{Signal: sig, Delay: delay, Why: map[string]int{}}
	for i := range h.cfg.Trials {
		lost, err := h.trial(ctx, fmt.Sprintf("c%d-t%d", n, i), sig, &c)
		if err != nil {
			return c, fmt.Errorf("%s, check delay %s, trial %d: %w", signalName(sig), delay, i+1, err)
		}
		c.Trials++
		if lost > 0 {
			c.TrialsLosing++
		}
	}
	return c, nil
}

// trial creates the orgs, starts a manager, stops it with sig at a random moment after its first
// token request, starts another and judges every org. It returns how many credentials were lost.
func (h *harness) trial(ctx context.Context, ns string, sig syscall.Signal, c *Cell) (int, error) {
	if err := h.createNamespace(ctx, ns); err != nil {
		return 0, err
	}
	var orgs []*org
	for i := range h.cfg.Orgs {
		o, err := h.createOrg(ctx, ns, fmt.Sprintf("org-%d", i), "")
		if err != nil {
			return 0, err
		}
		orgs = append(orgs, o)
	}

	first, err := h.managers.start()
	if err != nil {
		return 0, err
	}
	if err := h.waitFirstToken(ctx, first, orgs); err != nil {
		first.stop(syscall.SIGKILL, killExit)
		return 0, err
	}
	after := time.Duration(h.rng.Int64N(int64(h.cfg.StopMax) + 1))
	if err := sleep(ctx, after); err != nil {
		return 0, err
	}
	stoppedAt := time.Now()
	if !first.stop(sig, gracefulExit) {
		c.SlowExits++
	}

	marker, err := h.requestChecks(ctx, orgs)
	if err != nil {
		return 0, err
	}
	second, err := h.managers.start()
	if err != nil {
		return 0, err
	}
	verdicts, err := h.judge(ctx, second, orgs, marker)
	if err != nil {
		return 0, err
	}
	lost := 0
	for _, o := range orgs {
		c.Orgs++
		v := verdicts[o]
		if v == ok {
			continue
		}
		// A SIGKILL between Salesforce issuing a rotated token and the API server storing it
		// loses it whatever the manager does: the old token died at issue, the new one lived only
		// in the killed process. So does one that lands while the token request is in flight
		// (the token issued just after the kill, to a request the process sent before it): the
		// answer has nobody to reach. Such losses are counted apart; any other is a failure.
		gap := stoppedAt.Sub(o.fake.RefreshIssuedAt())
		if sig == syscall.SIGKILL && gap >= 0 && gap < h.cfg.WriteWindow {
			c.InWindow++
			c.Why[v+fmt.Sprintf(" (killed %s after the token was issued: inside the write window)", gap.Round(time.Millisecond))]++
			continue
		}
		if sig == syscall.SIGKILL && gap < 0 && -gap < h.cfg.WriteWindow {
			c.InWindow++
			c.Why[v+fmt.Sprintf(" (the token was issued %s after the kill: its request was in flight)", (-gap).Round(time.Millisecond))]++
			continue
		}
		lost++
		c.Lost++
		c.Why[v]++
	}
	h.progress("%s, check delay %s, %s: stopped %s after the first token request; %d of %d credentials lost",
		signalName(sig), c.Delay, ns, after.Round(time.Millisecond), lost, len(orgs))
	return lost, h.deleteOrgs(ctx, orgs)
}

// judge waits for m's verdict on every org (marker handled), stops m gracefully, and then also
// requires each Secret to hold a live refresh token.
func (h *harness) judge(ctx context.Context, m *manager, orgs []*org, marker string) (map[*org]string, error) {
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
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
		v, err := h.revert(ctx, restart)
		if err != nil {
			return out, fmt.Errorf("revert case (restart=%v): %w", restart, err)
		}
		out = append(out, RevertResult{AcrossRestart: restart, Verdict: v})
	}
	return out, nil
}

func (h *harness) revert(ctx context.Context, restart bool) (string, error) {
	ns := "revert-" + revertSlug(restart)
	if err := h.createNamespace(ctx, ns); err != nil {
		return "", err
	}
	marker := h.newMarker()
	o, err := h.createOrg(ctx, ns, "org", marker)
	if err != nil {
		return "", err
	}
	orgs := []*org{o}
	m, err := h.managers.start()
	if err != nil {
		return "", err
	}
	defer func() { m.stop(syscall.SIGKILL, killExit) }() // on the error paths

	// Connected, the rotation written back: the original auth URL is now dead.
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err != nil {
		return "", err
	}
	if v := verdicts[o]; v != ok {
		return "before the revert: " + v, h.deleteOrgs(ctx, orgs)
	}
	original, err := salesforce.ParseAuthURL(o.original)
	if err != nil {
		return "", err
	}
	if h.fake.RefreshTokenLive(original.RefreshToken) {
		return "", errors.New("the org connected without a rotation: the revert would test nothing")
	}

	if restart {
		m.stop(syscall.SIGTERM, gracefulExit)
	}
	if err := h.writeSecret(ctx, o, o.original); err != nil {
		return "", err
	}
	if marker, err = h.requestChecks(ctx, orgs); err != nil {
		return "", err
	}
	if restart {
		if m, err = h.managers.start(); err != nil {
			return "", err
		}
	}
	if verdicts, err = h.judge(ctx, m, orgs, marker); err != nil {
		return "", err
	}
	h.progress("revert case, %s: %s", revertName(restart), orElse(verdicts[o], "kept"))
	return verdicts[o], h.deleteOrgs(ctx, orgs)
}

// newMarker is a fresh "Test connection" value.
func (h *harness) newMarker() string {
	h.markers++
	return fmt.Sprintf("%s-%d", time.Now().UTC().Format(time.RFC3339Nano), h.markers)
}

func (h *harness) progress(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
	}
}
