// Command faults is the fault-injection test of refresh-token rotation (issue 9), run by
// `make test-faults` (a short version runs in `make test`). It starts a local control plane
// (CRDs, no webhooks) and a fake Salesforce on loopback that rotates the refresh token on every
// refresh and is as strict as Salesforce (a spent token presented revokes its chain, a concurrent
// refresh of one token is refused), runs the operator's manager as its own process, stops it with
// SIGKILL or SIGTERM at a random moment 0–300 ms after its first token request, starts a fresh
// one, and counts the org credentials lost (orgs whose Secret ends with a refresh token the fake
// no longer honours, CredentialRejected or not) and the spent refresh tokens presented. A
// killed manager may leave an exchange claim on a Secret, which holds the next one off that token
// for up to salesforce.ClaimTTL plus 5 s: the next manager gets that much longer to decide, and a
// trial's verdicts overlap the next trials (--parallel). It also writes an old auth URL back to a
// Secret, as a GitOps tool would, with the manager running and across a restart.
//
// Alongside the trials (each trial and case in its own namespace, its managers watching only it)
// run the hand-overs during rotation, with every check forcing an exchange: the leader stopped
// (SIGTERM, SIGKILL) with a standby running, the orgs moved from one shard's manager to another's,
// and a second org naming the Secret key of a first (it must stall with SecretKeyInUse). None may
// present a spent refresh token.
//
// Then leader election (not in `make test`: it takes over a minute): it freezes the kube-apiserver
// (SIGSTOP, then SIGCONT) for --outage under a leading manager, with the shipped lease settings
// (which must survive it) and with controller-runtime's old, shorter ones, and it stops a leader
// with SIGTERM while a standby runs and times the hand-over (at most 20 s).
//
// It judges only from outside (org conditions, the fake's live tokens and counts), so it works on
// any build of the manager (--manager). It prints the table and the other cases' tables on
// stdout and exits 1 when a credential was lost, a spent refresh token was presented (outside a
// SIGKILL's write window), a hand-over case failed, a manager logged a token, the shipped settings
// did not survive the outage or the hand-over was slow (0 with --report-only). It never prints a
// token or an auth URL; the managers' output goes to log files, kept (binary removed) when
// something failed. Everything it starts stops when it ends, Ctrl-C included.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const module = "github.com/sfops/salesforce-operator"

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfg        = Config{Progress: os.Stderr}
		delays     = flag.String("delays", "10ms,1s", "Comma-separated delays of the fake's answers to a check's calls (logins are not delayed).")
		signals    = flag.String("signals", "SIGKILL,SIGTERM", "Comma-separated stop signals: SIGKILL, SIGTERM.")
		reportOnly = flag.Bool("report-only", false, "Print the table and exit 0 even when credentials were lost (to show the numbers before a fix).")
		timeout    = flag.Duration("timeout", time.Hour, "Give up after this long.")
		seed       = flag.Uint64("seed", 0, "Seed of the random stop moments (0: from the clock; the table prints it).")
	)
	flag.IntVar(&cfg.Trials, "trials", 40, "Trials per cell (stop signal × check delay).")
	flag.IntVar(&cfg.Orgs, "orgs", 4, "Orgs per trial.")
	flag.DurationVar(&cfg.WriteWindow, "write-window", 100*time.Millisecond, "A SIGKILL less than this long after Salesforce issued a rotated token counts as inside the unavoidable write window, not as a loss.")
	flag.DurationVar(&cfg.StopMax, "stop-within", 300*time.Millisecond, "The stop comes at a random moment between 0 and this long after the first token request.")
	flag.DurationVar(&cfg.Settle, "settle", 20*time.Second, "How long a restarted manager has to decide every org once it may check them (after a SIGKILL, or a stop that left an exchange claim, it also gets the claim's TTL plus 5 s).")
	flag.IntVar(&cfg.Parallel, "parallel", 8, "Trials in progress at once: a trial's stop runs alone, its verdicts (a wait for a killed manager's exchange claim to end, say) overlap the next trials.")
	flag.StringVar(&cfg.Manager, "manager", "", "Manager binary to test (default: build the repository's).")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "Where the kubeconfig, the fake's CA and the managers' logs go (default: a temporary directory, removed unless something failed).")
	flag.BoolVar(&cfg.Rotation, "rotation", true, "Run the matrix: the manager stopped around token requests.")
	flag.BoolVar(&cfg.Revert, "revert", true, "Run the revert cases.")
	flag.BoolVar(&cfg.LeaderElection, "leader-election", true, "Run the leader-election cases: the API-server outage and the lease hand-over.")
	flag.DurationVar(&cfg.Outage, "outage", 30*time.Second, "How long the API server is frozen under the leader (0: no outage case).")
	flag.BoolVar(&cfg.HandOver, "hand-over", true, "Run the hand-over cases during rotation: the leader stopped with a standby running, orgs moved to another shard, two orgs on one Secret key.")
	flag.Parse()

	var err error
	if cfg.Delays, err = parseDelays(*delays); err == nil {
		cfg.Signals, err = parseSignals(*signals)
	}
	if err == nil && (cfg.Trials < 1 || cfg.Orgs < 1 || cfg.Parallel < 1) {
		err = errors.New("--trials, --orgs and --parallel must be at least 1")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	}
	cfg.Seed = *seed
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if cfg.Root, err = repoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	}
	temporary := cfg.WorkDir == ""
	if temporary {
		if cfg.WorkDir, err = os.MkdirTemp("", "faults-"); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 2
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if rep != nil && !rep.Empty() {
		fmt.Print(rep.Markdown())
		fmt.Printf("\n(%s)\n", time.Since(start).Round(time.Second))
	}
	failed := rep != nil && rep.Failed()
	if cfg.Manager == "" {
		_ = os.Remove(filepath.Join(cfg.WorkDir, "manager"))
	}
	switch {
	case temporary && err == nil && !failed:
		_ = os.RemoveAll(cfg.WorkDir)
	default:
		fmt.Fprintln(os.Stderr, "faults: the managers' logs are in", filepath.Join(cfg.WorkDir, "logs"))
	}
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	case failed && !*reportOnly:
		fmt.Fprintln(os.Stderr, "faults:", strings.Join(rep.Problems(), "; "))
		return 1
	}
	return 0
}

func parseDelays(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("--delays: %q is not a duration", f)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseSignals(s string) ([]syscall.Signal, error) {
	var out []syscall.Signal
	for _, f := range strings.Split(s, ",") {
		switch strings.ToUpper(strings.TrimSpace(f)) {
		case "SIGKILL", "KILL":
			out = append(out, syscall.SIGKILL)
		case "SIGTERM", "TERM":
			out = append(out, syscall.SIGTERM)
		default:
			return nil, fmt.Errorf("--signals: %q is neither SIGKILL nor SIGTERM", f)
		}
	}
	return out, nil
}

// repoRoot is the nearest directory at or above the working directory whose go.mod is this
// module's.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			_ = f.Close()
			if strings.TrimSpace(line) == "module "+module {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s at or above the working directory", module)
		}
		dir = parent
	}
}
