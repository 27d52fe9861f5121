package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRotationSurvivesManagerStops is the short version of `make test-faults`: 3 trials per
// cell instead of 40, the revert cases and the hand-over cases during rotation; not the
// leader-election cases (the API-server outage alone takes over a minute).
func TestRotationSurvivesManagerStops(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the fault-injection test starts a control plane and restarts the manager a few dozen times; `make test-faults` runs the full version")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Root: root, WorkDir: t.TempDir(),
		Rotation: true, Trials: 3, Orgs: 4,
		Signals: []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM},
		Delays:  []time.Duration{10 * time.Millisecond, time.Second},
		StopMax: 300 * time.Millisecond, WriteWindow: 100 * time.Millisecond, Settle: 20 * time.Second,
		Parallel: 8,
		Seed:     uint64(time.Now().UnixNano()),
		Revert:   true,
		HandOver: true,
		Progress: testLog{t},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if rep != nil {
		t.Log("\n" + rep.Markdown())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failures() > 0 {
		t.Errorf("%s; reproduce with `go run ./hack/faults --seed %d --leader-election=false`", strings.Join(rep.Problems(), "; "), cfg.Seed)
	}
}

// testLog writes the harness's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
