// Command localdev is what `make run` runs. With a reachable cluster in KUBECONFIG it installs the
// CRDs and runs the operator against it (webhooks off: the cluster cannot call back into a laptop;
// the finalizer backstop still protects orgs in use). With none, it starts an embedded control
// plane (kube-apiserver and etcd from bin/k8s) with the CRDs and webhooks installed, a fake
// Salesforce on loopback with a small demo namespace, writes a kubeconfig, and runs the operator.
// Ctrl-C stops everything it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localdev:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kubeconfigOut = flag.String("kubeconfig-out", "bin/localdev/kubeconfig", "Where to write the embedded control plane's kubeconfig.")
		embedded      = flag.Bool("embedded", false, "Use the embedded control plane even when KUBECONFIG names a reachable cluster.")
		demo          = flag.Bool("demo", true, "On the embedded control plane, start a fake Salesforce and a demo namespace.")
		fakeAddr      = flag.String("fake-salesforce-addr", "127.0.0.1:0", "Address of the demo's fake Salesforce.")
		metricsAddr   = flag.String("metrics-bind-address", "127.0.0.1:8080", "Metrics endpoint of the operator.")
		probeAddr     = flag.String("health-probe-bind-address", "127.0.0.1:8081", "Health probes of the operator.")
	)
	zapOpts := zap.Options{Development: true}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := operator.Options{MetricsAddr: *metricsAddr, ProbeAddr: *probeAddr} // plain HTTP on loopback for a laptop

	cfg, external := reachableCluster()
	if external && !*embedded {
		fmt.Printf("Using the cluster in your kubeconfig (%s).\n", cfg.Host)
		if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{"config/crd/bases"}, ErrorIfPathMissing: true}); err != nil {
			return fmt.Errorf("installing the CRDs: %w", err)
		}
		fmt.Println("CRDs installed. Webhooks are off (the cluster cannot reach this machine); `make deploy` runs the operator in-cluster with them.")
		return runManager(ctx, cfg, opts)
	}

	env, err := localenv.New(".", true)
	if err != nil {
		return err
	}
	fmt.Println("No reachable cluster in KUBECONFIG: starting an embedded control plane...")
	if cfg, err = env.Start(); err != nil {
		return fmt.Errorf("starting the embedded control plane: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
		fmt.Println("Embedded control plane stopped.")
	}()
	path, err := filepath.Abs(*kubeconfigOut)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path, env.KubeConfig, 0o600); err != nil {
		return err
	}
	wh := env.WebhookInstallOptions
	opts.EnableWebhooks = true
	opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir

	if *demo {
		fake, err := sftest.NewStandaloneServer(*fakeAddr)
		if err != nil {
			return fmt.Errorf("starting the fake Salesforce: %w", err)
		}
		defer fake.Close()
		opts.AllowedHosts = []string{fake.Host()}
		opts.RootCAs = fake.CertPool()
		opts.RetryBase = 2 * time.Second
		go func() {
			if err := seedDemo(ctx, cfg, fake); err != nil {
				fmt.Fprintln(os.Stderr, "seeding the demo namespace:", err)
			}
		}()
	}

	fmt.Printf("\nThe operator is running on an embedded control plane. In another terminal:\n\n"+
		"  export KUBECONFIG=%s\n  kubectl get salesforce -A\n  kubectl get sforg -n demo -o wide\n\nCtrl-C stops everything.\n\n", path)
	return runManager(ctx, cfg, opts)
}

// reachableCluster loads the usual kubeconfig and asks the server its version, briefly.
func reachableCluster() (*rest.Config, bool) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, false
	}
	probe := rest.CopyConfig(cfg)
	probe.Timeout = 3 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(probe)
	if err != nil {
		return nil, false
	}
	if _, err := dc.ServerVersion(); err != nil {
		return nil, false
	}
	return cfg, true
}

func runManager(ctx context.Context, cfg *rest.Config, opts operator.Options) error {
	mgr, err := operator.New(cfg, opts)
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// seedDemo creates namespace "demo" with a production org, a sandbox, a Developer Edition Dev
// Hub, an implementation and a pipeline stage, all connected to the fake Salesforce. It waits for
// the webhooks to answer, since the manager starts alongside.
func seedDemo(ctx context.Context, cfg *rest.Config, fake *sftest.Server) error {
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		return err
	}
	prod := fake.AddOrg(sftest.OrgSpec{Name: "acme-prod", Kind: sftest.Production})
	uat := fake.AddOrg(sftest.OrgSpec{Name: "acme-uat", Kind: sftest.Sandbox})
	hub := fake.AddOrg(sftest.OrgSpec{Name: "acme-devhub", Kind: sftest.DeveloperEdition, DevHub: true})
	const ns = "demo"
	ref := func(n string) *sfv1.LocalObjectReference { return &sfv1.LocalObjectReference{Name: n} }
	org := func(name string, typ sfv1.OrgType, impl *sfv1.LocalObjectReference, devHub bool) *sfv1.SalesforceOrg {
		return &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: sfv1.SalesforceOrgSpec{
			Type: typ, AuthSecretRef: sfv1.SecretKeyReference{Name: name + "-auth"}, ImplementationRef: impl,
			DevHub: devHub, DefaultDevHub: devHub,
		}}
	}
	secret := func(name, authURL string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-auth", Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: authURL}}
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		secret("acme-prod", prod.AuthURL()), secret("acme-uat", uat.AuthURL()), secret("acme-devhub", hub.AuthURL()),
		&sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
			Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme Sales Cloud", ProductionOrgRef: ref("acme-prod")}},
		org("acme-prod", sfv1.OrgTypeProduction, ref("acme"), false),
		org("acme-uat", sfv1.OrgTypeSandbox, ref("acme"), false),
		org("acme-devhub", sfv1.OrgTypeDeveloperEdition, nil, true),
		&sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-uat"},
			Spec: sfv1.PipelineStageSpec{Pipeline: "release", Order: 1, OrgRef: *ref("acme-uat"), Branch: "uat"}},
	}
	for _, o := range objs {
		for attempt := 0; ; attempt++ {
			err := c.Create(ctx, o)
			if err == nil || attempt == 60 || ctx.Err() != nil {
				if err != nil {
					return fmt.Errorf("creating %s: %w", o.GetName(), err)
				}
				break
			}
			time.Sleep(500 * time.Millisecond) // the webhook server may not be up yet
		}
	}
	fmt.Println("Demo namespace \"demo\" created: kubectl get salesforce -n demo")
	return nil
}
