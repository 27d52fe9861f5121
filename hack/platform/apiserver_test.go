package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestShardedInstallPassesTheAPIServer sends the sharded installs, the chart's (two shards, the
// NetworkPolicy, namespaced mode: every template the shards touch) and config/sharding's, to a
// real API server (envtest's kube-apiserver and etcd, from KUBEBUILDER_ASSETS: make envtest) as a
// server-side dry run: every object is one the API server would admit, among them each
// Deployment's selector against its pod labels and the shards' label values.
func TestShardedInstallPassesTheAPIServer(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs(filepath.Join(root, "bin", "k8s"))
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting kube-apiserver and etcd from %s (make envtest builds them): %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectlBin := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(kubectlBin); err != nil {
		kubectlBin = "kubectl"
	}
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	// The namespaces the installs go to exist, as `helm install --create-namespace` makes them; a
	// dry run creates nothing, so objects in a namespace only dry-run created would be refused.
	for _, ns := range []string{"ops", "team-a", kustomizeNamespace} {
		kubectl("", "create", "namespace", ns)
	}

	chart, err := helm("template", "sf", chartDir, "--namespace", "ops", "--include-crds", "--set", shardsValue,
		"--set", "networkPolicy.enabled=true,namespaced.enabled=true,namespaced.watchNamespaces={team-a}")
	if err != nil {
		t.Fatal(err)
	}
	kust, err := WithNetworkPolicy(root, "sharding")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, prefix, manifests string }{
		{"the chart", "sf-salesforce-operator-", chart},
		{"config/sharding", kustomizePrefix, yamlStream(t, kust)},
	} {
		objs, err := SplitYAML([]byte(tc.manifests))
		if err != nil {
			t.Fatal(err)
		}
		out := kubectl(tc.manifests, "apply", "--server-side", "--dry-run=server", "--field-manager=sharding-test", "-f", "-")
		if n := strings.Count(out, "(server dry run)"); n != len(objs) {
			t.Errorf("%s: %d objects, %d applied:\n%s", tc.name, len(objs), n, out)
		}
		for _, shard := range exampleShards {
			if !strings.Contains(out, "deployment.apps/"+tc.prefix+shard+" serverside-applied") {
				t.Errorf("%s: no Deployment of %s applied:\n%s", tc.name, shard, out)
			}
		}
	}
}

// yamlStream is objs as one multi-document YAML stream.
func yamlStream(t *testing.T, objs []object) string {
	t.Helper()
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return fmt.Sprintf("%s\n", strings.Join(docs, "---\n"))
}
