package operator

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/sfops/salesforce-operator/controllers"
	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// BindFlags defines the manager's command-line flags on fs, each writing into o, and returns what
// to call after fs.Parse: it settles the options that depend on more than one flag or need
// parsing. main.go runs the manager with these flags, and the tests parse config/default's
// Deployment args with them, so a test starts the manager that the Deployment starts.
func BindFlags(fs *flag.FlagSet, o *Options) (finish func() error) {
	var allowed, namespaces string
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; \"0\" disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers the API server authenticates and authorises (get /metrics); false serves plain HTTP to anyone who can connect.")
	fs.StringVar(&namespaces, "watch-namespaces", "", "Comma-separated namespaces to watch (default: all). With it the operator needs Roles in those namespaces only (config/namespaced).")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 60*time.Second, "How long a leader's lease lasts without renewal: the longest a failover waits after a crash.")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 45*time.Second, "How long the leader keeps trying to renew before it gives up and exits: the longest API-server outage the leader survives.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 5*time.Second, "How often leader-election clients retry.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "Address that serves Go's pprof profiles (/debug/pprof/heap, profile, mutex, block); \"0\" disables it. Bind it to localhost (127.0.0.1:6060) and reach it with kubectl port-forward.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address the health probes bind to.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	fs.StringVar(&o.LeaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election lease (default: the pod's).")
	fs.BoolVar(&o.EnableWebhooks, "enable-webhooks", true, "Serve the admission webhooks (the in-use protection also has a finalizer backstop).")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port the webhook server listens on.")
	fs.StringVar(&o.WebhookCertSource, "webhook-cert-source", WebhookCertsSelf, "Where the webhook serving certificate comes from: \"self\" (the operator keeps a self-signed CA and certificate in a Secret and injects the CA into its webhook configurations) or \"dir\" (tls.crt and tls.key in --webhook-cert-dir, for example from cert-manager). Setting only --webhook-cert-dir means \"dir\".")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "With --webhook-cert-source=dir: directory holding tls.crt and tls.key for the webhook server (default: controller-runtime's).")
	fs.StringVar(&o.WebhookCerts.Namespace, "webhook-cert-namespace", "", "With --webhook-cert-source=self: namespace of the certificate's Secret and of the webhook Service (default: the pod's).")
	fs.StringVar(&o.WebhookCerts.SecretName, "webhook-cert-secret", certs.DefaultSecretName, "With --webhook-cert-source=self: the Secret holding the webhook CA and serving certificate.")
	fs.StringVar(&o.WebhookCerts.ServiceName, "webhook-service-name", certs.DefaultServiceName, "With --webhook-cert-source=self: the webhook Service the certificate is for (<service>.<namespace>.svc).")
	fs.StringVar(&o.WebhookCerts.MutatingWebhookConfiguration, "mutating-webhook-configuration", certs.DefaultMutatingWebhookConfiguration, "With --webhook-cert-source=self: the MutatingWebhookConfiguration that gets the CA (\"\": none).")
	fs.StringVar(&o.WebhookCerts.ValidatingWebhookConfiguration, "validating-webhook-configuration", certs.DefaultValidatingWebhookConfiguration, "With --webhook-cert-source=self: the ValidatingWebhookConfiguration that gets the CA (\"\": none).")
	fs.StringVar(&allowed, "salesforce-allowed-hosts", "", "Comma-separated hosts the Salesforce client may call besides Salesforce's own domains: host, host:port or *.suffix.")
	fs.StringVar(&o.CAFile, "salesforce-ca-file", "", "PEM bundle to trust for Salesforce calls, in addition to the system roots.")
	fs.DurationVar(&o.RetryBase, "retry-base", 10*time.Second, "First back-off after a transient Salesforce failure; it doubles up to the org's checkInterval.")
	fs.IntVar(&o.MaxConcurrentChecks, "max-concurrent-checks", 32, "How many orgs are checked at once (calls to Salesforce in flight). Checks wait on Salesforce, not on CPU; twice as many reconciles run, so that their API-server reads and writes overlap the checks.")
	fs.Float64Var(&o.HostQPS, "salesforce-host-qps", 25, "Calls per second the operator sends at most to one Salesforce host (0: no bound).")
	fs.Float64Var(&o.OrgQPS, "salesforce-org-qps", 5, "Calls per second the operator sends at most for one org (0: no bound).")
	fs.StringVar(&o.WatchLabelSelector, "watch-label-selector", "", "Only SalesforceOrgs, PipelineStages and SalesforceImplementations with these labels (for example sharding.sfops.io/key in (shard1)): one shard of several managers, each with its own leader election. Run the webhooks in one deployment only.")
	fs.DurationVar(&o.StatusHeartbeat, "status-heartbeat", controllers.DefaultStatusHeartbeat, "How stale an org's status.lastCheckTime (with lastConnectedTime and apiRequests) may grow while checks change nothing else: such a check writes no status until then. Conditions and facts are written at once.")
	fs.DurationVar(&o.SalesforceTimeout, "salesforce-timeout", 30*time.Second, "Timeout of each HTTP call to Salesforce.")
	return func() error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["webhook-cert-dir"] && !set["webhook-cert-source"] {
			// A deployment written before the operator kept its own certificate mounts one.
			o.WebhookCertSource = WebhookCertsDir
		}
		hosts, err := salesforce.ParseAllowedHosts(allowed)
		if err != nil {
			return fmt.Errorf("--salesforce-allowed-hosts: %w", err)
		}
		o.AllowedHosts = hosts
		for _, ns := range strings.Split(namespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.WatchNamespaces = append(o.WatchNamespaces, ns)
			}
		}
		return nil
	}
}
