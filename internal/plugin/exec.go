package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes of `exec` when the command did not run, as env(1), timeout(1) and docker run have
// them; otherwise exec exits with the command's own code (128+N when signal N ended it).
const (
	// ExitExecFailed: no access was handed out (refused, no answer), or another failure before
	// the command could start.
	ExitExecFailed = 125
	// ExitCannotRun: the command was found but could not be started.
	ExitCannotRun = 126
	// ExitNotFound: the command was not found.
	ExitNotFound = 127
)

// execEnv is what exec adds to the command's environment besides the hand-out's keys: the
// Salesforce CLI must neither send telemetry nor update itself inside someone's pipeline.
var execEnv = []string{"SF_DISABLE_TELEMETRY=true", "SF_AUTOUPDATE_DISABLE=true"}

// envName is what a Secret key must look like to become an environment variable.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o *options) execCommand() *cobra.Command {
	var (
		stage             string
		lifetime, timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "exec ORG [--stage STAGE] [--lifetime DURATION] -- COMMAND [ARGS...]",
		Short: "Run a command with short-lived access to an org in its environment (SF_TARGET_ORG, ...)",
		Long: `Run COMMAND with short-lived access to a SalesforceOrg, handed out by the operator: the
plugin creates a SalesforceAccessToken (you need the RBAC verb use on the org, e.g. through the
salesforce-operator-org-user ClusterRole, and get on secrets in its namespace), waits until the operator
issues access, and runs COMMAND with the hand-out Secret's keys added to its environment:
SF_TARGET_ORG and SF_ACCESS_TOKEN (the access token), SF_ORG_INSTANCE_URL, SALESFORCE_ORG_ID,
SALESFORCE_USERNAME, SALESFORCE_ACCESS_EXPIRES_AT, and SF_DISABLE_TELEMETRY=true and
SF_AUTOUPDATE_DISABLE=true (and NODE_EXTRA_CA_CERTS, when the plugin trusts a CA of its own for
Salesforce, as with make run's demo). The Salesforce CLI uses SF_TARGET_ORG as it is: "sf"
commands run against the org with no login. No refresh token ever reaches your machine.

When COMMAND exits (or on Ctrl-C or SIGTERM, which are passed on to it first), the
SalesforceAccessToken is deleted, which deletes its Secret and revokes the token. exec exits with
COMMAND's exit code; 125 when no access was handed out (the reason and its fix are printed), 126
when COMMAND could not be started, 127 when it was not found. The token is never printed by exec
(what COMMAND prints is its own business).`,
		Example: `  kubectl salesforce exec acme-uat -- sf data query -q "SELECT Id FROM Organization"
  kubectl salesforce exec acme-uat --stage release-uat --lifetime 30m -- sf project deploy start
  kubectl salesforce exec acme-uat -- sh -c 'sf org login access-token --instance-url "$SF_ORG_INSTANCE_URL" --no-prompt --alias uat && sf org list limits --target-org uat'`,
		DisableFlagsInUseLine: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return &ExitError{Code: ExitExecFailed, Err: errors.New(`want one org, then "--", then the command: kubectl salesforce exec ORG -- COMMAND [ARGS...]`)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.exec(cmd, args[0], stage, lifetime, timeout, args[1:])
		},
	}
	cmd.Flags().StringVar(&stage, "stage", "", "The PipelineStage the access is for: it must be Active and map to ORG (spec.stageRef of the SalesforceAccessToken).")
	cmd.Flags().DurationVar(&lifetime, "lifetime", time.Hour, "How long the access may live at most, from 5m to 12h: it ends earlier, when COMMAND exits.")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "How long to wait for the operator to hand out access.")
	return cmd
}

func (o *options) exec(cmd *cobra.Command, org, stage string, lifetime, timeout time.Duration, argv []string) error {
	ctx := cmd.Context()
	// No access is asked for a command that cannot run.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("command %q: %w", argv[0], errors.Unwrap(err))}
	}
	ns, err := o.namespace()
	if err != nil {
		return &ExitError{Code: ExitExecFailed, Err: err}
	}
	kc, err := o.client()
	if err != nil {
		return &ExitError{Code: ExitExecFailed, Err: err}
	}
	h, err := requestAccess(ctx, kc, accessRequest{namespace: ns, org: org, stage: stage, purpose: "exec", lifetime: lifetime, timeout: timeout})
	if h != nil {
		defer h.release(ctx, errOut(cmd))
	}
	if err != nil {
		return &ExitError{Code: ExitExecFailed, Err: err}
	}
	env := os.Environ()
	keys := make([]string, 0, len(h.data))
	for k := range h.data {
		if envName.MatchString(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+string(h.data[k]))
	}
	env = append(env, execEnv...)
	// The CA the plugin trusts for Salesforce (--salesforce-ca-file, or the kubeconfig context's
	// extension: make run's fake Salesforce) is the Salesforce CLI's to trust too, besides any
	// NODE_EXTRA_CA_CERTS the environment names already (Node reads one file: both go into one).
	if _, caFile, _, err := o.salesforceSettings(); err == nil && caFile != "" {
		bundle, cleanup, err := extraCABundle(caFile, os.Getenv("NODE_EXTRA_CA_CERTS"))
		if err != nil {
			return &ExitError{Code: ExitExecFailed, Err: err}
		}
		defer cleanup()
		env = append(env, "NODE_EXTRA_CA_CERTS="+bundle)
	}

	child := exec.Command(path, argv[1:]...)
	child.Args[0] = argv[0]
	child.Env = env
	child.Stdin, child.Stdout, child.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	child.WaitDelay = 2 * time.Second // for copies to non-file outputs held open by the command's own children
	return runForwardingSignals(ctx, child)
}

// runForwardingSignals runs child to its end and returns an ExitError with its exit code. Ctrl-C,
// SIGTERM, SIGHUP and SIGQUIT are passed on to it rather than ending the plugin, so that the
// plugin outlives it and cleans up. When ctx ends without such a signal (a caller that runs the
// plugin in-process gave up), the child gets SIGTERM.
func runForwardingSignals(ctx context.Context, child *exec.Cmd) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := child.Start(); err != nil {
		return &ExitError{Code: ExitCannotRun, Err: fmt.Errorf("starting %q: %w", child.Args[0], errors.Unwrap(err))}
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	forwarded := false
	ctxDone := ctx.Done()
	var grace <-chan time.Time
	for {
		select {
		case s := <-sigs:
			forwarded = true
			_ = child.Process.Signal(s)
		case <-ctxDone:
			// A signal also ends the context (main's signal.NotifyContext): give it the time to
			// arrive here, so that the child gets it once, not SIGTERM as well.
			ctxDone, grace = nil, time.After(250*time.Millisecond)
		case <-grace:
			if !forwarded {
				_ = child.Process.Signal(syscall.SIGTERM)
			}
		case err := <-done:
			return exitOf(child, err)
		}
	}
}

// exitOf is the command's exit status as the plugin's: its code, or 128+N for signal N, as a
// shell reports it.
func exitOf(child *exec.Cmd, err error) error {
	st := child.ProcessState
	if st == nil {
		return &ExitError{Code: ExitCannotRun, Err: err}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &ExitError{Code: 128 + int(ws.Signal())}
	}
	if code := st.ExitCode(); code != 0 {
		return &ExitError{Code: code}
	}
	if err != nil && !errors.As(err, new(*exec.ExitError)) {
		// Exited 0, but its output could not be copied in time (exec.ErrWaitDelay).
		return &ExitError{Code: ExitExecFailed, Err: fmt.Errorf("%q exited, but its output was not all passed on: %w", child.Args[0], err)}
	}
	return nil
}

// extraCABundle is the file to name in NODE_EXTRA_CA_CERTS: caFile itself, or, when the
// environment names another file already, a temporary file holding both (removed by cleanup).
func extraCABundle(caFile, existing string) (string, func(), error) {
	if existing == "" || existing == caFile {
		return caFile, func() {}, nil
	}
	ours, err := os.ReadFile(caFile)
	if err != nil {
		return "", nil, fmt.Errorf("reading the Salesforce CA file: %w", err)
	}
	theirs, err := os.ReadFile(existing)
	if err != nil {
		return caFile, func() {}, nil // NODE_EXTRA_CA_CERTS names no readable file: Node ignores it too
	}
	f, err := os.CreateTemp("", "kubectl-salesforce-ca-*.pem")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.Remove(f.Name()) }
	_, err = f.Write(append(append(append([]byte{}, theirs...), '\n'), ours...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}
