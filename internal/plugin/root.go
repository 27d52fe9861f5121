// Package plugin is kubectl-salesforce, the kubectl plugin that connects, reconnects, opens and
// tests SalesforceOrgs, and runs commands with short-lived access to them, as the person running
// it: her kubeconfig, her RBAC, the operator's own Salesforce client and host allow-list
// (internal/salesforce), no HTTP stack of its own. Access to an org (exec, open) is always handed
// out by the operator (a SalesforceAccessToken): the plugin never exchanges a refresh token.
//
// What it must never do: print, log or put into an error a refresh token, an access token, an
// auth URL, an authorization code or a login link (the one exception is `open --url-only`, which
// prints the link its user asked for; exec puts a handed-out access token into its command's
// environment, nowhere else); listen anywhere but loopback; write a Secret it was not
// asked to write (the org's own auth Secret, always labelled as a credential); print a Secret.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Scheme knows the kinds the plugin reads and writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(Scheme))
	utilruntime.Must(sfv1.AddToScheme(Scheme))
}

// Env is what the commands take from their surroundings; tests replace parts of it.
type Env struct {
	genericiooptions.IOStreams
	// OpenBrowser opens url in the user's browser; nil means the system's opener
	// (xdg-open, open, rundll32). It must never print url.
	OpenBrowser func(url string) error
	// SF is the Salesforce CLI's executable, "sf" (looked up on PATH) when empty.
	SF string
}

// ExitError ends the program with Code after printing Err (when set).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes of `test`, `reconnect` and `login`, for CI.
const (
	// ExitNotReady: the operator answered, and the org is not Ready (not Connected, or Connected
	// but misconfigured: the reason says which).
	ExitNotReady = 1
	// ExitNoAnswer: no answer (the operator did not echo the request in time) or another failure.
	ExitNoAnswer = 2
)

// ExitCode is the process exit code for err: 0 for nil, ExitError's code, 2 otherwise.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitNoAnswer
}

// options are the flags every command shares.
type options struct {
	env          Env
	kube         *genericclioptions.ConfigFlags
	allowedHosts string
	caFile       string
	sfTimeout    time.Duration
}

// NewCommand is `kubectl salesforce` with its subcommands.
func NewCommand(env Env) *cobra.Command {
	if env.In == nil {
		env.IOStreams = genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	}
	if env.OpenBrowser == nil {
		env.OpenBrowser = openBrowser
	}
	if env.SF == "" {
		env.SF = "sf"
	}
	o := &options{env: env, kube: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-salesforce",
		Short: "Connect, reconnect, open, test and use SalesforceOrgs without handling a token",
		Long: `kubectl salesforce connects Salesforce orgs to the salesforce-operator with a browser login,
reconnects a disconnected org, opens an org in the browser, tests a connection, and runs a
command (the Salesforce CLI, a script) with short-lived access to an org, as you: with your
kubeconfig and your RBAC. No token, auth URL or login link is ever printed (except the link of
"open --url-only", which you asked for).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl salesforce",
		},
	}
	root.SetIn(env.In)
	root.SetOut(env.Out)
	root.SetErr(env.ErrOut)
	pf := root.PersistentFlags()
	o.kube.AddFlags(pf)
	pf.StringVar(&o.allowedHosts, "salesforce-allowed-hosts", "", "Comma-separated hosts besides Salesforce's own domains that may receive a credential (host, host:port or *.suffix), as the manager's flag of that name: for private deployments and tests. Default: the kubeconfig context's "+EndpointExtension+" extension, if any.")
	pf.StringVar(&o.caFile, "salesforce-ca-file", "", "PEM bundle to trust for Salesforce calls in addition to the system roots, as the manager's flag of that name. Default: the kubeconfig context's "+EndpointExtension+" extension, if any.")
	pf.DurationVar(&o.sfTimeout, "salesforce-timeout", 30*time.Second, "Timeout of each HTTP call to Salesforce.")
	root.AddCommand(o.loginCommand(false), o.loginCommand(true), o.openCommand(), o.execCommand(), o.testCommand(), o.importCommand(), o.treeCommand())
	return root
}

// Run executes the command line args and returns the process exit code, having printed any
// error to env.ErrOut.
func Run(ctx context.Context, env Env, args []string) int {
	cmd := NewCommand(env)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		var e *ExitError
		if !errors.As(err, &e) || e.Err != nil {
			fmt.Fprintln(errOut(cmd), "error:", err)
		}
	}
	return ExitCode(err)
}

func errOut(cmd *cobra.Command) io.Writer { return cmd.ErrOrStderr() }

// namespace is -n, else the kubeconfig context's namespace, else "default".
func (o *options) namespace() (string, error) {
	ns, _, err := o.kube.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

func (o *options) client() (client.Client, error) {
	cfg, err := o.kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: Scheme})
}

// salesforceClient is the operator's client, with the same allow-list semantics as the manager:
// the --salesforce-* flags, else the kubeconfig context's Endpoint (see EndpointExtension).
func (o *options) salesforceClient() (*salesforce.Client, error) {
	allowed, caFile, _, err := o.salesforceSettings()
	if err != nil {
		return nil, err
	}
	hosts, err := salesforce.ParseAllowedHosts(allowed)
	if err != nil {
		return nil, fmt.Errorf("--salesforce-allowed-hosts: %w", err)
	}
	opts := salesforce.Options{AllowedHosts: hosts, Timeout: o.sfTimeout}
	if caFile != "" {
		pool, err := loadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		opts.RootCAs = pool
	}
	return salesforce.NewClient(opts)
}

// withPluginHint adds to a refused host what the plugin's user can do about it: the
// salesforce package speaks of the operator's flag, which the plugin shares.
func withPluginHint(err error) error {
	var e *salesforce.Error
	if errors.As(err, &e) && e.Reason == salesforce.ReasonHostNotAllowed {
		return fmt.Errorf("%w (for kubectl salesforce: its own --salesforce-allowed-hosts and --salesforce-ca-file flags, or the kubeconfig context's %s extension, which make run writes for its demo)", err, EndpointExtension)
	}
	return err
}
