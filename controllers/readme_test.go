package controllers_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestReadmeTourRunsAsPasted seeds the demo that `make run` shows and runs every `$ kubectl` line
// of the README's console blocks, in order, as a user pasting them would: each must succeed (or
// fail with exactly the error the README shows), print the README's table headers and one-line
// answers, and leave nothing behind at the end.
func TestReadmeTourRunsAsPasted(t *testing.T) {
	ctx := context.Background()
	if _, err := demo.Seed(ctx, k8s, fakeSF); err != nil {
		t.Fatal(err)
	}
	if err := demo.WaitReady(ctx, k8s, time.Minute); err != nil {
		t.Fatal(err)
	}
	raw, err := demo.Kubeconfig(testEnv.KubeConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	steps := readmeTour(t)
	if len(steps) < 10 {
		t.Fatalf("the README's tour has only %d kubectl lines", len(steps))
	}
	for _, s := range steps {
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		cmd := exec.CommandContext(cctx, "bash", "-c", s.command)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cfgPath)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		var wantErrs []string
		for _, o := range s.output {
			if strings.HasPrefix(o, "Error from server") {
				wantErrs = append(wantErrs, o)
			}
		}
		if len(wantErrs) == 0 && err != nil {
			t.Errorf("README line %d: %s: %v\n%s", s.line, s.command, err, stderr.String())
			continue
		}
		for _, want := range wantErrs {
			if err == nil || !strings.Contains(stderr.String(), want) {
				t.Errorf("README line %d: %s: want the README's error\n  %s\ngot %v:\n  %s", s.line, s.command, want, err, stderr.String())
			}
		}
		if len(s.output) == 0 || len(wantErrs) > 0 {
			continue
		}
		got := strings.SplitN(strings.TrimSpace(stdout.String()), "\n", 2)[0]
		want := s.output[0]
		if strings.HasPrefix(want, "NAME ") {
			got, want = strings.Join(strings.Fields(got), " "), strings.Join(strings.Fields(want), " ")
		}
		if got != want {
			t.Errorf("README line %d: %s: first line printed\n  %s\nbut the README shows\n  %s", s.line, s.command, got, want)
		}
	}
	if out := kubectl(t, "get", "salesforce", "-n", demo.Namespace, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("after the tour's clean-up these remain:\n%s", out)
	}
}
