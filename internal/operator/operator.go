// Package operator assembles the manager: scheme, indexes, reconcilers, webhooks, probes. main.go
// and the local launcher (hack/localdev) share it, so both run the same operator. It never reads
// a credential itself.
package operator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/controllers"
	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	webhookv1alpha1 "github.com/sfops/salesforce-operator/internal/webhook/v1alpha1"
)

// Scheme knows the core types and salesforce.sfops.io/v1alpha1.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(sfv1.AddToScheme(Scheme))
}

// Options configure one operator.
type Options struct {
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS, only to callers the API server authenticates and
	// authorises (get on the /metrics non-resource URL), as kubebuilder scaffolds.
	MetricsSecure bool
	ProbeAddr     string
	// PprofAddr serves net/http/pprof (heap, CPU, mutex and block profiles) on this address; ""
	// or "0" serves nothing. Profiles show no Secret data, but bind it to localhost or a port
	// only an operator of the cluster can reach.
	PprofAddr     string
	LeaderElect   bool
	LeaderElectNS string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election (0: 60s, 45s, 5s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// WatchNamespaces restricts the operator to these namespaces (empty: all). With it, the
	// operator needs Roles in those namespaces only, no ClusterRole for Secrets.
	WatchNamespaces []string
	// WatchLabelSelector restricts the operator to the SalesforceOrgs, PipelineStages and
	// SalesforceImplementations it selects: one shard of several managers, as in Flux. Each
	// shard elects its own leader.
	WatchLabelSelector string
	// MaxConcurrentChecks bounds the orgs checked at once (0: 32). Checks wait on Salesforce, not
	// on CPU, so this is far above the core count.
	MaxConcurrentChecks int
	// SkipNameValidation lets several managers run in one process (tests of sharding).
	SkipNameValidation bool
	// HostQPS and OrgQPS bound the calls per second to one Salesforce host and for one org
	// (0: unbounded).
	HostQPS, OrgQPS float64

	// EnableWebhooks serves the admission webhooks (the cluster must be able to reach them).
	EnableWebhooks bool
	WebhookHost    string
	WebhookPort    int
	// WebhookCertSource says where the serving certificate comes from: WebhookCertsSelf (the
	// operator keeps its own, see internal/certs) or WebhookCertsDir ("" too: tls.crt and
	// tls.key in WebhookCertDir, as envtest and cert-manager provide).
	WebhookCertSource string
	WebhookCertDir    string
	// WebhookCerts configures the self-kept certificate; an empty Namespace means the pod's.
	WebhookCerts certs.Options

	// AllowedHosts adds hosts beyond Salesforce's own domains (host, host:port or *.suffix).
	AllowedHosts []string
	// CAFile is a PEM bundle trusted in addition to the system roots, for Salesforce calls.
	CAFile string
	// RootCAs, when set, replaces the trusted roots for Salesforce calls (tests, the local demo).
	RootCAs *x509.CertPool
	// RetryBase is the first back-off after a transient Salesforce failure (0: 10s).
	RetryBase time.Duration
	// SalesforceTimeout bounds each HTTP call to Salesforce (0: 30s).
	SalesforceTimeout time.Duration
	// StatusHeartbeat is how stale an org's status.lastCheckTime may grow while a check changes
	// nothing else (0: controllers.DefaultStatusHeartbeat, 1h).
	StatusHeartbeat time.Duration
}

// ShardLabel is the label that assigns an object to a shard (--watch-label-selector), as
// sharding.fluxcd.io/key does for Flux.
const ShardLabel = sfv1.ShardLabel

const unshardedElectionID = "salesforce-operator.sfops.io"

// leaderElectionID is the lease of the managers that watch shard. A shard has a lease of its own.
// The main manager of a sharded install (the objects without a shard label) keeps the unsharded
// one: turning sharding on rolls it over from the single manager it replaces, never with two
// leaders of the same objects.
func leaderElectionID(shard labels.Selector) string {
	if shard.String() == "!"+ShardLabel {
		return unshardedElectionID
	}
	sum := sha256.Sum256([]byte(shard.String()))
	return fmt.Sprintf("%x.%s", sum[:4], unshardedElectionID)
}

// Sources of the webhook serving certificate.
const (
	WebhookCertsSelf = "self"
	WebhookCertsDir  = "dir"
)

// New builds a manager with every controller and, when enabled, every webhook.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	metrics := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		metrics.SecureServing = true
		metrics.FilterProvider = metricsAuth
	}
	credentialSecrets, err := labels.Parse(sfv1.CredentialLabel + "=true")
	if err != nil {
		return nil, err
	}
	cacheOpts := cache.Options{
		DefaultTransform: trimForCache,
		// The operator sees only Secrets that opt in: it can neither read nor watch another
		// team's Secret that merely has the right name, and 1,000 unrelated Secrets cost nothing.
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: credentialSecrets, Transform: trimForCache},
		},
	}
	electionID := unshardedElectionID
	if o.WatchLabelSelector != "" {
		shard, err := labels.Parse(o.WatchLabelSelector)
		if err != nil {
			return nil, fmt.Errorf("--watch-label-selector %q: %w", o.WatchLabelSelector, err)
		}
		for _, obj := range []client.Object{&sfv1.SalesforceOrg{}, &sfv1.PipelineStage{}, &sfv1.SalesforceImplementation{}, &sfv1.SalesforceAccessToken{}} {
			cacheOpts.ByObject[obj] = cache.ByObject{Label: shard}
		}
		electionID = leaderElectionID(shard)
	}
	if len(o.WatchNamespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.WatchNamespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgrOpts := ctrl.Options{
		Scheme:                  Scheme,
		Metrics:                 metrics,
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        electionID,
		LeaderElectionNamespace: o.LeaderElectNS,
		LeaseDuration:           ptr(orDefault(o.LeaseDuration, 60*time.Second)),
		RenewDeadline:           ptr(orDefault(o.RenewDeadline, 45*time.Second)),
		RetryPeriod:             ptr(orDefault(o.RetryPeriod, 5*time.Second)),
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets are never cached: the org reconciler reads them directly, and watches only their metadata.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
		Cache:      cacheOpts,
		Controller: config.Controller{SkipNameValidation: &o.SkipNameValidation},
		// A graceful stop starts no new exchange (a done context sends no token request) and waits
		// for the ones in flight, whose rotated-token write-backs must finish: the longest a
		// claimed exchange may take (salesforce.ClaimTTL), or a Salesforce call plus one Secret
		// write. The Deployment's grace period is longer.
		GracefulShutdownTimeout: ptr(max(max(o.SalesforceTimeout, salesforce.DefaultTimeout)+15*time.Second, salesforce.ClaimTTL+5*time.Second)),
		// Hand the lease over as soon as the manager has stopped, instead of after its expiry.
		LeaderElectionReleaseOnCancel: true,
	}
	var webhookCerts *certs.Manager
	if o.EnableWebhooks {
		tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
		switch o.WebhookCertSource {
		case WebhookCertsSelf:
			if webhookCerts, err = newWebhookCerts(cfg, o.WebhookCerts); err != nil {
				return nil, err
			}
			tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = webhookCerts.GetCertificate })
		case WebhookCertsDir, "":
		default:
			return nil, fmt.Errorf("--webhook-cert-source %q: want %s or %s", o.WebhookCertSource, WebhookCertsSelf, WebhookCertsDir)
		}
		mgrOpts.WebhookServer = webhook.NewServer(webhook.Options{
			Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir, TLSOpts: tlsOpts,
		})
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if webhookCerts != nil {
		if err := mgr.Add(webhookCerts); err != nil {
			return nil, err
		}
	}
	if err := index.Setup(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}

	sf, err := newSalesforceClient(o)
	if err != nil {
		return nil, err
	}
	orgs := &controllers.SalesforceOrgReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		SecretMetadata:  mgr.GetCache(),
		Salesforce:      sf,
		Notify:          controllers.NewNotifier(mgr.GetEventRecorder("salesforce-operator")),
		RetryBase:       o.RetryBase,
		StatusHeartbeat: o.StatusHeartbeat,
		// Checks wait on Salesforce, not on CPU: many run at once. Twice as many workers as
		// Salesforce checks keep a worker's reads and status write off the checks' critical path.
		MaxConcurrentChecks:     orDefaultInt(o.MaxConcurrentChecks, 32),
		MaxConcurrentReconciles: 2 * orDefaultInt(o.MaxConcurrentChecks, 32),
	}
	if err := orgs.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the SalesforceOrg controller: %w", err)
	}
	if err := (&controllers.SalesforceAccessTokenReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Orgs:      orgs,
		Notify:    controllers.NewNotifier(mgr.GetEventRecorder("salesforce-operator")),
	}).SetupWithManager(mgr, orDefaultInt(o.MaxConcurrentChecks, 32)); err != nil {
		return nil, fmt.Errorf("setting up the SalesforceAccessToken controller: %w", err)
	}
	if err := (&controllers.PipelineStageReconciler{
		Client: mgr.GetClient(),
		Notify: controllers.NewNotifier(mgr.GetEventRecorder("salesforce-operator")),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the PipelineStage controller: %w", err)
	}
	if err := (&controllers.SalesforceImplementationReconciler{
		Client: mgr.GetClient(),
		Notify: controllers.NewNotifier(mgr.GetEventRecorder("salesforce-operator")),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the SalesforceImplementation controller: %w", err)
	}
	if o.EnableWebhooks {
		if err := webhookv1alpha1.Setup(mgr); err != nil {
			return nil, fmt.Errorf("setting up the webhooks: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("reconcilers", notWedged(3*time.Minute)); err != nil {
		return nil, err
	}
	readyCheck := healthz.Ping
	if o.EnableWebhooks {
		readyCheck = mgr.GetWebhookServer().StartedChecker()
	}
	if webhookCerts != nil {
		// Not ready, so out of the webhook Service, until the API server trusts what this replica
		// serves; the server is dialled only once it has a certificate to show.
		serving := readyCheck
		readyCheck = func(req *http.Request) error {
			if err := webhookCerts.Ready(req); err != nil {
				return err
			}
			return serving(req)
		}
	}
	if err := mgr.AddReadyzCheck("readyz", readyCheck); err != nil {
		return nil, err
	}
	return mgr, nil
}

// newWebhookCerts builds the keeper of the self-managed webhook certificate. It reads and writes
// directly, not through the manager's cache: one Secret and two webhook configurations, by name.
func newWebhookCerts(cfg *rest.Config, o certs.Options) (*certs.Manager, error) {
	if o.Namespace == "" {
		ns, err := os.ReadFile(certs.NamespaceFile)
		if err != nil {
			return nil, fmt.Errorf("the webhook certificate's namespace: set --webhook-cert-namespace outside a pod: %w", err)
		}
		o.Namespace = strings.TrimSpace(string(ns))
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, err
	}
	return certs.New(c, o)
}

// trimForCache drops what the operator never reads from cached objects: managedFields and
// kubectl's last-applied-configuration (a second copy of the whole object) from everything; of
// Secrets' metadata (the only metadata-only watch) it keeps only what says which Secret and which
// version: name, namespace, uid, resourceVersion. A Secret written by client-side `kubectl apply`
// carries its whole content, credential included, in the last-applied-configuration annotation.
// Status is kept whole: a status patch is the difference from the cached status.
func trimForCache(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		}}, nil
	}
	if org, ok := obj.(*sfv1.SalesforceOrg); ok {
		internOrg(org)
	}
	if o, ok := obj.(client.Object); ok {
		if o.GetManagedFields() != nil {
			o.SetManagedFields(nil)
		}
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				if len(a) == 0 {
					o.SetAnnotations(nil)
				}
			}
		}
	}
	return obj, nil
}

// internOrg makes the strings that thousands of cached orgs share (namespace, finalizer, the
// conditions' types, statuses and reasons, enums, edition) one copy each instead of one per org,
// and trims the conditions' slice to its length.
func internOrg(o *sfv1.SalesforceOrg) {
	intern(&o.Namespace)
	for i := range o.Finalizers {
		intern(&o.Finalizers[i])
	}
	internAs(&o.Spec.Type)
	internAs(&o.Spec.State)
	st := &o.Status
	if cap(st.Conditions) > len(st.Conditions) {
		st.Conditions = slices.Clone(st.Conditions) // decoding grew it for more than it holds
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		intern(&c.Type)
		internAs(&c.Status)
		intern(&c.Reason)
	}
	internAs(&st.Connection)
	internAs(&st.CredentialSource)
	intern(&st.Edition)
	intern(&st.InstanceName)
}

func intern(s *string) {
	if *s != "" {
		*s = unique.Make(*s).Value()
	}
}

func internAs[S ~string](s *S) {
	if *s != "" {
		*s = S(unique.Make(string(*s)).Value())
	}
}

func ptr[T any](v T) *T { return &v }

func orDefaultInt(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// notWedged fails when a reconcile has been running longer than limit: every Salesforce call and
// Secret write is bounded well below it, so such a worker is stuck and a restart is the cure. It
// reads controller-runtime's own work-queue gauge, so it costs nothing while all is well.
func notWedged(limit time.Duration) healthz.Checker {
	return func(*http.Request) error {
		families, err := crmetrics.Registry.Gather()
		if err != nil {
			return nil
		}
		for _, f := range families {
			if f.GetName() != "workqueue_longest_running_processor_seconds" {
				continue
			}
			for _, m := range f.GetMetric() {
				if v := m.GetGauge().GetValue(); v > limit.Seconds() {
					return fmt.Errorf("a reconcile has been running for %.0fs", v)
				}
			}
		}
		return nil
	}
}

func newSalesforceClient(o Options) (*salesforce.Client, error) {
	pool := o.RootCAs
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading --salesforce-ca-file: %w", err)
		}
		if pool == nil {
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--salesforce-ca-file %s holds no PEM certificate", o.CAFile)
		}
	}
	return salesforce.NewClient(salesforce.Options{
		AllowedHosts: o.AllowedHosts,
		RootCAs:      pool,
		Timeout:      o.SalesforceTimeout,
		Observe:      controllers.ObserveSalesforceCall,
		HostQPS:      o.HostQPS,
		OrgQPS:       o.OrgQPS,
		Concurrency:  orDefaultInt(o.MaxConcurrentChecks, 32),
	})
}
