/*
Copyright 2026 The salesforce-operator Authors.

Licensed under the Apache License, Version 2.0.
*/

// Command salesforce-operator runs the manager that keeps SalesforceOrg, PipelineStage and
// SalesforceImplementation objects true.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sfops/salesforce-operator/internal/certs"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

func main() {
	var o operator.Options
	var allowed, namespaces string
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; \"0\" disables it.")
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers the API server authenticates and authorises (get /metrics); false serves plain HTTP to anyone who can connect.")
	flag.StringVar(&namespaces, "watch-namespaces", "", "Comma-separated namespaces to watch (default: all). With it the operator needs Roles in those namespaces only (config/namespaced).")
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 60*time.Second, "How long a leader's lease lasts without renewal: the longest a failover waits after a crash.")
	flag.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 45*time.Second, "How long the leader keeps trying to renew before it gives up and exits: the longest API-server outage the leader survives.")
	flag.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 5*time.Second, "How often leader-election clients retry.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address the health probes bind to.")
	flag.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	flag.StringVar(&o.LeaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election lease (default: the pod's).")
	flag.BoolVar(&o.EnableWebhooks, "enable-webhooks", true, "Serve the admission webhooks (the in-use protection also has a finalizer backstop).")
	flag.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port the webhook server listens on.")
	flag.StringVar(&o.WebhookCertSource, "webhook-cert-source", operator.WebhookCertsSelf, "Where the webhook serving certificate comes from: \"self\" (the operator keeps a self-signed CA and certificate in a Secret and injects the CA into its webhook configurations) or \"dir\" (tls.crt and tls.key in --webhook-cert-dir, for example from cert-manager). Setting only --webhook-cert-dir means \"dir\".")
	flag.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "With --webhook-cert-source=dir: directory holding tls.crt and tls.key for the webhook server (default: controller-runtime's).")
	flag.StringVar(&o.WebhookCerts.Namespace, "webhook-cert-namespace", "", "With --webhook-cert-source=self: namespace of the certificate's Secret and of the webhook Service (default: the pod's).")
	flag.StringVar(&o.WebhookCerts.SecretName, "webhook-cert-secret", certs.DefaultSecretName, "With --webhook-cert-source=self: the Secret holding the webhook CA and serving certificate.")
	flag.StringVar(&o.WebhookCerts.ServiceName, "webhook-service-name", certs.DefaultServiceName, "With --webhook-cert-source=self: the webhook Service the certificate is for (<service>.<namespace>.svc).")
	flag.StringVar(&o.WebhookCerts.MutatingWebhookConfiguration, "mutating-webhook-configuration", certs.DefaultMutatingWebhookConfiguration, "With --webhook-cert-source=self: the MutatingWebhookConfiguration that gets the CA (\"\": none).")
	flag.StringVar(&o.WebhookCerts.ValidatingWebhookConfiguration, "validating-webhook-configuration", certs.DefaultValidatingWebhookConfiguration, "With --webhook-cert-source=self: the ValidatingWebhookConfiguration that gets the CA (\"\": none).")
	flag.StringVar(&allowed, "salesforce-allowed-hosts", "", "Comma-separated hosts the Salesforce client may call besides Salesforce's own domains: host, host:port or *.suffix.")
	flag.StringVar(&o.CAFile, "salesforce-ca-file", "", "PEM bundle to trust for Salesforce calls, in addition to the system roots.")
	flag.DurationVar(&o.RetryBase, "retry-base", 10*time.Second, "First back-off after a transient Salesforce failure; it doubles up to the org's checkInterval.")
	flag.IntVar(&o.MaxConcurrentChecks, "max-concurrent-checks", 32, "How many orgs are checked at once. Checks wait on Salesforce, not on CPU.")
	flag.Float64Var(&o.HostQPS, "salesforce-host-qps", 25, "Calls per second the operator sends at most to one Salesforce host (0: no bound).")
	flag.Float64Var(&o.OrgQPS, "salesforce-org-qps", 5, "Calls per second the operator sends at most for one org (0: no bound).")
	flag.StringVar(&o.WatchLabelSelector, "watch-label-selector", "", "Only SalesforceOrgs, PipelineStages and SalesforceImplementations with these labels (for example sharding.sfops.io/key in (shard1)): one shard of several managers, each with its own leader election. Run the webhooks in one deployment only.")
	flag.DurationVar(&o.SalesforceTimeout, "salesforce-timeout", 30*time.Second, "Timeout of each HTTP call to Salesforce.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["webhook-cert-dir"] && !set["webhook-cert-source"] {
		// A deployment written before the operator kept its own certificate mounts one.
		o.WebhookCertSource = operator.WebhookCertsDir
	}
	setupLog := ctrl.Log.WithName("setup")

	hosts, err := salesforce.ParseAllowedHosts(allowed)
	if err != nil {
		setupLog.Error(err, "invalid --salesforce-allowed-hosts")
		os.Exit(2)
	}
	o.AllowedHosts = hosts
	for _, ns := range strings.Split(namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			o.WatchNamespaces = append(o.WatchNamespaces, ns)
		}
	}
	mgr, err := operator.New(ctrl.GetConfigOrDie(), o)
	if err != nil {
		setupLog.Error(err, "unable to set up the operator")
		os.Exit(1)
	}
	setupLog.Info("starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "the manager stopped with an error")
		os.Exit(1)
	}
}
