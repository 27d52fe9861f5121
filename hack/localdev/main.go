// Command localdev is what `make run` runs. With a reachable cluster in KUBECONFIG it installs the
// CRDs and runs the operator against it (webhooks off: the cluster cannot call back into a laptop;
// the finalizer backstop still protects orgs in use). With none, it starts an embedded control
// plane (kube-apiserver and etcd from bin/k8s) with the CRDs and webhooks installed, a fake
// Salesforce on loopback with a small demo namespace, writes a kubeconfig (whose context names
// the fake Salesforce for the kubectl plugin) and the fake's CA beside it, prints the demo user
// of the fake's login page, and runs the operator. Ctrl-C stops everything it started. Only one
// runs per checkout (a lock beside the kubeconfig), and it never attaches to another one's demo.
package main

import (
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

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sfops/salesforce-operator/internal/demo"
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
		withDemo      = flag.Bool("demo", true, "On the embedded control plane, start a fake Salesforce and a demo namespace.")
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

	path, err := filepath.Abs(*kubeconfigOut)
	if err != nil {
		return err
	}
	unlock, err := lockCheckout(filepath.Dir(path), relative(path))
	if err != nil {
		return err
	}
	defer unlock()

	cfg, external, demoContext := reachableCluster()
	if external && demoContext && !*embedded {
		return fmt.Errorf("KUBECONFIG points at the demo of a make run that is still running (%s), perhaps in another checkout: "+
			"use that demo, or stop it (Ctrl-C in its terminal) and run `unset KUBECONFIG` before make run to start a new one", cfg.Host)
	}
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
	var fake *sftest.Server
	if *withDemo {
		if fake, err = sftest.NewStandaloneServer(*fakeAddr); err != nil {
			return fmt.Errorf("starting the fake Salesforce: %w", err)
		}
		defer fake.Close()
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
	if *withDemo {
		err = demo.WriteKubeconfig(path, env.KubeConfig, fake)
	} else {
		err = os.WriteFile(path, env.KubeConfig, 0o600)
	}
	if err != nil {
		return err
	}
	wh := env.WebhookInstallOptions
	opts.EnableWebhooks = true
	opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir

	if *withDemo {
		opts.AllowedHosts = []string{fake.Host()}
		opts.RootCAs = fake.CertPool()
		opts.RetryBase = 2 * time.Second
		go func() {
			c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
			var orgs map[string]*sftest.Org
			if err == nil {
				orgs, err = demo.Seed(ctx, c, fake)
			}
			if err == nil {
				err = demo.WaitReady(ctx, c, 2*time.Minute)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "seeding the demo namespace:", err)
				return
			}
			// The README's "Start here" shows this banner.
			fmt.Printf("\n%s\n", demo.Banner(relative(path), fake.URL(), orgs[demo.Waiting].Password()))
		}()
	} else {
		fmt.Printf("\nThe operator is running on an embedded control plane: export KUBECONFIG=%s\n\n", relative(path))
	}
	return runManager(ctx, cfg, opts)
}

// reachableCluster loads the usual kubeconfig and asks the server its version, briefly;
// demoContext says that its context is a make run demo's.
func reachableCluster() (cfg *rest.Config, reachable, demoContext bool) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, false, false
	}
	if raw, err := loader.RawConfig(); err == nil {
		if ctx := raw.Contexts[raw.CurrentContext]; ctx != nil {
			demoContext = demo.IsDemo(ctx)
		}
	}
	probe := rest.CopyConfig(cfg)
	probe.Timeout = 3 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(probe)
	if err != nil {
		return nil, false, false
	}
	if _, err := dc.ServerVersion(); err != nil {
		return nil, false, false
	}
	return cfg, true, demoContext
}

func runManager(ctx context.Context, cfg *rest.Config, opts operator.Options) error {
	mgr, err := operator.New(cfg, opts)
	if err != nil {
		return portsHint(err)
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return portsHint(err)
	}
	return nil
}

// portsHint says what to do when the operator's ports are taken.
func portsHint(err error) error {
	if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w: another operator (or make run) on this machine holds these ports; stop it, or give this one others: "+
			"make run ARGS='--metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0'", err)
	}
	return err
}

// relative is path as $PWD/<path> when it is below the working directory, as the README prints it.
func relative(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
		return "$PWD/" + rel
	}
	return path
}
