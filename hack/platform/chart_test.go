package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const root = "../.."

var chartDir = filepath.Join(root, "charts", chartName)

// helm runs the helm CLI pinned in this module's go.mod (go tool builds it once, then caches it).
func helm(args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as `helm install salesforce-operator -n salesforce-operator-system`
// would, CRDs included.
func helmTemplate(t *testing.T, release, namespace string, args ...string) []object {
	t.Helper()
	out, err := helm(append([]string{"template", release, chartDir, "--namespace", namespace, "--include-crds"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := SplitYAML([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestChartIsGenerated(t *testing.T) {
	want, err := chartFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range want {
		got, err := os.ReadFile(filepath.Join(chartDir, name))
		if err != nil || string(got) != text {
			t.Errorf("%s is not what config/ generates: run make chart", name)
		}
	}
	onDisk, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*.yaml"))
	crds, _ := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	for _, f := range append(onDisk, crds...) {
		rel, _ := filepath.Rel(chartDir, f)
		b, _ := os.ReadFile(f)
		if _, ok := want[rel]; !ok && (strings.HasPrefix(string(b), header) || strings.HasPrefix(rel, "crds")) {
			t.Errorf("%s is generated but config/ no longer has its object: run make chart", rel)
		}
	}
}

func TestHelmLint(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--set", "namespaced.enabled=true,namespaced.watchNamespaces={team-a},networkPolicy.enabled=true",
			"--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
			"--set", "metrics.readerServiceAccount.name=prometheus,metrics.readerServiceAccount.namespace=monitoring"},
		{"--set", "webhook.certSource=certManager"},
		{"--set", "webhook.certSource=certManager,namespaced.enabled=true"},
		{"--set", "webhook.certSource=certManager",
			"--set-json", `extraVolumes=[{"name":"ca","configMap":{"name":"ca"}}]`,
			"--set-json", `extraVolumeMounts=[{"name":"ca","mountPath":"/etc/salesforce-ca","readOnly":true}]`},
		{"--set", shardsValue + ",namespaced.enabled=true,networkPolicy.enabled=true"},
		{"--set", shardsValue + ",webhook.certSource=certManager",
			"--set-json", `extraVolumes=[{"name":"ca","configMap":{"name":"ca"}}]`,
			"--set-json", `extraVolumeMounts=[{"name":"ca","mountPath":"/etc/salesforce-ca","readOnly":true}]`},
	} {
		if out, err := helm(append([]string{"lint", "--strict", chartDir}, args...)...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// The labels that tell how an object was installed: Helm's, and kustomize's managed-by. The chart
// also sets app.kubernetes.io/name on config/namespaced's own objects, which lack it.
var installLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"}

func normalize(objs []object) map[string]object {
	byKey := map[string]object{}
	for _, o := range objs {
		if o["kind"] == "Namespace" {
			continue // the chart installs into the release's namespace (helm install --create-namespace)
		}
		meta := o["metadata"].(map[string]any)
		if labels, ok := meta["labels"].(map[string]any); ok {
			for _, l := range installLabels {
				delete(labels, l)
			}
			if len(labels) == 0 {
				delete(meta, "labels")
			}
		}
		byKey[fmt.Sprintf("%s/%v", Key(o), meta["namespace"])] = o
	}
	return byKey
}

// TestChartInstallsWhatKustomizeDoes renders the chart with the values that choose each of
// config/'s variants, and kustomize's rendering of that variant, and compares them object by object.
func TestChartInstallsWhatKustomizeDoes(t *testing.T) {
	kustomize := func(dirs ...string) func() ([]object, error) {
		return func() ([]object, error) {
			var all []object
			for _, d := range dirs {
				objs, err := Kustomize(filepath.Join(root, "config", d))
				if err != nil {
					return nil, err
				}
				all = append(all, objs...)
			}
			return all, nil
		}
	}
	for _, tc := range []struct {
		name      string
		values    []string
		kustomize func() ([]object, error)
	}{
		{"config/default", nil, kustomize("default")},
		{"config/default-certmanager", []string{"webhook.certSource=certManager"}, kustomize("default-certmanager")},
		{"config/namespaced", []string{"namespaced.enabled=true"}, kustomize("namespaced")},
		{"config/network-policy", []string{"networkPolicy.enabled=true"}, func() ([]object, error) { return WithNetworkPolicy(root, "default") }},
		{"config/prometheus", []string{"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"}, kustomize("default", "prometheus")},
		{"config/sharding", []string{shardsValue}, kustomize("sharding")},
		{"config/sharding,config/network-policy", []string{shardsValue, "networkPolicy.enabled=true"}, func() ([]object, error) { return WithNetworkPolicy(root, "sharding") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, v := range tc.values {
				args = append(args, "--set", v)
			}
			chart := normalize(helmTemplate(t, chartName, kustomizeNamespace, args...))
			want, err := tc.kustomize()
			if err != nil {
				t.Fatal(err)
			}
			kust := normalize(want)
			for _, k := range sortedKeys(kust) {
				got, ok := chart[k]
				if !ok {
					t.Errorf("the chart lacks %s", k)
					continue
				}
				if !reflect.DeepEqual(got, kust[k]) {
					g, _ := json.MarshalIndent(got, "", "  ")
					w, _ := json.MarshalIndent(kust[k], "", "  ")
					t.Errorf("%s differs.\nchart:\n%s\nkustomize:\n%s", k, g, w)
				}
			}
			for _, k := range sortedKeys(chart) {
				if _, ok := kust[k]; !ok {
					t.Errorf("the chart has %s, which %s does not", k, tc.name)
				}
			}
		})
	}
}

func sortedKeys(m map[string]object) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func find(t *testing.T, objs []object, kind, namespace, name string) object {
	t.Helper()
	for _, o := range objs {
		meta := o["metadata"].(map[string]any)
		if o["kind"] == kind && meta["name"] == name && (namespace == "" || meta["namespace"] == namespace) {
			return o
		}
	}
	t.Fatalf("no %s %s/%s rendered", kind, namespace, name)
	return nil
}

func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			o = o.(map[string]any)[k]
		case int:
			o = o.([]any)[k]
		}
	}
	return o
}

// TestValuesLand sets every value away from its default, under another release name and
// namespace, and finds each where it belongs; every name one object gives another resolves.
func TestValuesLand(t *testing.T) {
	objs := helmTemplate(t, "sf", "ops",
		"--set", "image.repository=registry.example.test/sf,image.tag=v1.2.3,image.pullPolicy=Always",
		"--set", "replicaCount=3,resources.limits.memory=1Gi,extraArgs={--zap-log-level=debug}",
		"--set", "nodeSelector.pool=ops,imagePullSecrets[0].name=pull",
		"--set", "namespaced.enabled=true,namespaced.watchNamespaces={team-a,team-b}",
		"--set", "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom",
		"--set", "metrics.readerServiceAccount.name=prometheus,metrics.readerServiceAccount.namespace=monitoring")
	const prefix = "sf-salesforce-operator-"

	d := find(t, objs, "Deployment", "ops", prefix+"controller-manager")
	c := get(d, "spec", "template", "spec", "containers", 0)
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"image", get(c, "image"), "registry.example.test/sf:v1.2.3"},
		{"imagePullPolicy", get(c, "imagePullPolicy"), "Always"},
		{"replicas", get(d, "spec", "replicas"), float64(3)},
		{"memory limit", get(c, "resources", "limits", "memory"), "1Gi"},
		{"cpu request", get(c, "resources", "requests", "cpu"), "10m"},
		{"nodeSelector", get(d, "spec", "template", "spec", "nodeSelector", "pool"), "ops"},
		{"imagePullSecrets", get(d, "spec", "template", "spec", "imagePullSecrets", 0, "name"), "pull"},
		{"serviceAccountName", get(d, "spec", "template", "spec", "serviceAccountName"), prefix + "controller-manager"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s: got %v, want %v", check.what, check.got, check.want)
		}
	}
	args := fmt.Sprint(get(c, "args"))
	for _, want := range []string{"--watch-namespaces=ops,team-a,team-b", "--zap-log-level=debug"} {
		if !strings.Contains(args, want) {
			t.Errorf("the manager's args %s lack %s", args, want)
		}
	}

	// Namespaced: the manager's Role and RoleBinding in every watched namespace, bound to its account.
	for _, ns := range []string{"ops", "team-a", "team-b"} {
		find(t, objs, "Role", ns, prefix+"manager-role")
		rb := find(t, objs, "RoleBinding", ns, prefix+"manager-rolebinding")
		if s := get(rb, "subjects", 0); get(s, "name") != prefix+"controller-manager" || get(s, "namespace") != "ops" {
			t.Errorf("RoleBinding in %s binds %v", ns, s)
		}
	}
	for _, o := range objs {
		if o["kind"] == "ClusterRole" && get(o, "metadata", "name") == prefix+"manager-role" {
			t.Error("namespaced mode still renders the manager's ClusterRole")
		}
	}

	sm := find(t, objs, "ServiceMonitor", "ops", prefix+"controller-manager-metrics")
	if get(sm, "metadata", "labels", "release") != "prom" {
		t.Error("metrics.serviceMonitor.labels did not land on the ServiceMonitor")
	}
	metrics := find(t, objs, "Service", "ops", prefix+"controller-manager-metrics")
	if !reflect.DeepEqual(get(sm, "spec", "selector", "matchLabels"), get(metrics, "spec", "selector")) ||
		get(sm, "spec", "endpoints", 0, "port") != get(metrics, "spec", "ports", 0, "name") {
		t.Error("the ServiceMonitor does not select the metrics Service's port")
	}
	crb := find(t, objs, "ClusterRoleBinding", "", prefix+"metrics-reader")
	find(t, objs, "ClusterRole", "", fmt.Sprint(get(crb, "roleRef", "name")))
	if s := get(crb, "subjects", 0); get(s, "name") != "prometheus" || get(s, "namespace") != "monitoring" {
		t.Errorf("the metrics reader binding binds %v", s)
	}

	// Every binding's role, and every object's namespace, exists or is watched.
	for _, o := range objs {
		if k := o["kind"]; k == "RoleBinding" || k == "ClusterRoleBinding" {
			ns := ""
			if get(o, "roleRef", "kind") == "Role" {
				ns = fmt.Sprint(get(o, "metadata", "namespace"))
			}
			find(t, objs, fmt.Sprint(get(o, "roleRef", "kind")), ns, fmt.Sprint(get(o, "roleRef", "name")))
		}
		if ns, ok := get(o, "metadata").(map[string]any)["namespace"]; ok && !slices.Contains([]any{"ops", "team-a", "team-b"}, ns) {
			t.Errorf("%s is in namespace %v", Key(o), ns)
		}
	}
}

// TestWebhookCertSource renders each webhook.certSource under another release name and namespace,
// as namespaced mode too, and follows every name the webhook certificate depends on from object
// to object: the manager's flags name the webhook Service and configurations the chart renders,
// and its RBAC lets it patch exactly those; with certManager, the Certificate is for that Service
// and the Deployment mounts its Secret. Only the chosen source's objects are rendered.
func TestWebhookCertSource(t *testing.T) {
	const prefix = "sf-salesforce-operator-"
	for _, tc := range []struct {
		certSource string // "": the default
		namespaced bool
	}{{"", false}, {"self", true}, {"certManager", false}, {"certManager", true}} {
		name := fmt.Sprintf("certSource=%s,namespaced=%v", cmp.Or(tc.certSource, "default"), tc.namespaced)
		t.Run(name, func(t *testing.T) {
			args := []string{"--set", fmt.Sprintf("namespaced.enabled=%v", tc.namespaced)}
			if tc.certSource != "" {
				args = append(args, "--set", "webhook.certSource="+tc.certSource)
			}
			objs := helmTemplate(t, "sf", "ops", args...)
			d := find(t, objs, "Deployment", "ops", prefix+"controller-manager")
			pod := get(d, "spec", "template", "spec").(map[string]any)
			flags := managerFlags(get(pod, "containers", 0, "args").([]any))
			svc := find(t, objs, "Service", "ops", prefix+"webhook-service")
			configs := map[string]object{}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				for _, o := range objs {
					if o["kind"] == kind {
						configs[kind] = o
					}
				}
				for _, wh := range get(configs[kind], "webhooks").([]any) {
					if s := get(wh, "clientConfig", "service"); get(s, "name") != get(svc, "metadata", "name") || get(s, "namespace") != "ops" {
						t.Errorf("%s calls %v, not the webhook Service", kind, s)
					}
				}
			}

			if tc.certSource == "certManager" {
				if flags["--webhook-cert-source"] != "dir" {
					t.Errorf("the manager's flags %v do not serve the mounted certificate", flags)
				}
				cert := find(t, objs, "Certificate", "ops", prefix+"serving-cert")
				if dns := fmt.Sprint(get(cert, "spec", "dnsNames")); !strings.Contains(dns, prefix+"webhook-service.ops.svc") {
					t.Errorf("the certificate's dnsNames %s do not name the webhook Service", dns)
				}
				find(t, objs, "Issuer", "ops", fmt.Sprint(get(cert, "spec", "issuerRef", "name")))
				if get(cert, "spec", "secretName") != get(pod, "volumes", 0, "secret", "secretName") ||
					get(pod, "volumes", 0, "name") != get(pod, "containers", 0, "volumeMounts", 0, "name") ||
					get(pod, "containers", 0, "volumeMounts", 0, "mountPath") != flags["--webhook-cert-dir"] {
					t.Error("the manager does not read the certificate's Secret from --webhook-cert-dir")
				}
				for kind, o := range configs {
					if ann := get(o, "metadata", "annotations", "cert-manager.io/inject-ca-from"); ann != "ops/"+prefix+"serving-cert" {
						t.Errorf("%s injects the CA of %v", kind, ann)
					}
				}
				return
			}

			want := map[string]string{
				"--webhook-cert-source":              "self",
				"--webhook-cert-secret":              prefix + "webhook-cert",
				"--webhook-service-name":             fmt.Sprint(get(svc, "metadata", "name")),
				"--mutating-webhook-configuration":   fmt.Sprint(get(configs["MutatingWebhookConfiguration"], "metadata", "name")),
				"--validating-webhook-configuration": fmt.Sprint(get(configs["ValidatingWebhookConfiguration"], "metadata", "name")),
			}
			for flag, v := range want {
				if flags[flag] != v {
					t.Errorf("%s is %q, want %q", flag, flags[flag], v)
				}
			}
			if _, set := flags["--webhook-cert-dir"]; set || pod["volumes"] != nil || rendered(objs, "Certificate") || rendered(objs, "Issuer") {
				t.Error("certSource=self renders cert-manager's Certificate, Issuer or mounted Secret")
			}
			for kind, o := range configs {
				if ann := get(o, "metadata", "annotations"); ann != nil {
					t.Errorf("%s has annotations %v", kind, ann)
				}
			}
			// The manager may patch exactly its two configurations, by the names its flags give.
			rbac := "ClusterRole/" + prefix + "manager-role"
			if tc.namespaced {
				rbac = "ClusterRole/" + prefix + "cluster-checks"
			}
			var granted []string
			for _, o := range objs {
				if Key(o) != rbac {
					continue
				}
				for _, r := range get(o, "rules").([]any) {
					if slices.Contains(get(r, "apiGroups").([]any), any("admissionregistration.k8s.io")) {
						for _, n := range get(r, "resourceNames").([]any) {
							granted = append(granted, fmt.Sprint(n))
						}
						if verbs := fmt.Sprint(get(r, "verbs")); !strings.Contains(verbs, "get") || !strings.Contains(verbs, "patch") {
							t.Errorf("%s grants %s on the webhook configurations", rbac, verbs)
						}
					}
				}
			}
			slices.Sort(granted)
			if ws := []string{want["--mutating-webhook-configuration"], want["--validating-webhook-configuration"]}; !slices.Equal(granted, ws) {
				t.Errorf("%s grants the webhook configurations %v, want %v", rbac, granted, ws)
			}
		})
	}
}

// managerFlags maps each --flag=value of the manager's args to its value.
func managerFlags(args []any) map[string]string {
	flags := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(fmt.Sprint(a), "=")
		flags[k] = v
	}
	return flags
}

// rendered says whether objs hold an object of kind.
func rendered(objs []object, kind string) bool {
	return slices.ContainsFunc(objs, func(o object) bool { return o["kind"] == kind })
}

func TestUnsupportedCertSourceIsRefused(t *testing.T) {
	_, err := helm("template", chartName, chartDir, "--set", "webhook.certSource=selfSigned")
	if err == nil || !strings.Contains(err.Error(), `webhook.certSource "selfSigned" is not supported`) {
		t.Errorf("expected a refusal naming the value, got %v", err)
	}
}

// TestExtraVolumes renders values.yaml's own example of extraVolumes and extraVolumeMounts (a
// private CA for --salesforce-ca-file) under each webhook.certSource: the pod gets config/'s
// volume and mount for that source (certManager's webhook certificate, self's none) followed by
// the example's, and the CA file in the manager's args. Set alone, extraVolumes leaves the mounts
// as they were: no empty volumeMounts when there are none.
func TestExtraVolumes(t *testing.T) {
	example := valuesExample(t, "extraVolumes: []")
	file := filepath.Join(t.TempDir(), "ca.yaml")
	if err := os.WriteFile(file, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	var ex struct {
		ExtraArgs         []string `json:"extraArgs"`
		ExtraVolumes      []any    `json:"extraVolumes"`
		ExtraVolumeMounts []any    `json:"extraVolumeMounts"`
	}
	if err := yaml.Unmarshal([]byte(example), &ex); err != nil {
		t.Fatalf("values.yaml's example: %v\n%s", err, example)
	}
	if len(ex.ExtraArgs) != 1 || len(ex.ExtraVolumes) != 1 || len(ex.ExtraVolumeMounts) != 1 {
		t.Fatalf("values.yaml's example is not one CA file, volume and mount:\n%s", example)
	}
	onlyVolumes, err := json.Marshal(ex.ExtraVolumes)
	if err != nil {
		t.Fatal(err)
	}

	const prefix = "sf-salesforce-operator-"
	pod := func(args ...string) map[string]any {
		d := find(t, helmTemplate(t, "sf", "ops", args...), "Deployment", "ops", prefix+"controller-manager")
		return get(d, "spec", "template", "spec").(map[string]any)
	}
	for _, certSource := range []string{"self", "certManager"} {
		t.Run("certSource="+certSource, func(t *testing.T) {
			set := "webhook.certSource=" + certSource
			base := pod("--set", set)
			baseVolumes, volumesSet := base["volumes"].([]any)
			baseMounts, mountsSet := get(base, "containers", 0).(map[string]any)["volumeMounts"].([]any)
			if certSource == "certManager" && (len(baseVolumes) != 1 || len(baseMounts) != 1) {
				t.Fatalf("certManager renders volumes %v and mounts %v, not the webhook certificate's", baseVolumes, baseMounts)
			}
			if certSource == "self" && (volumesSet || mountsSet) {
				t.Fatalf("self renders volumes %v and mounts %v", base["volumes"], get(base, "containers", 0, "volumeMounts"))
			}

			withCA := pod("--set", set, "-f", file)
			c := get(withCA, "containers", 0).(map[string]any)
			if got, want := withCA["volumes"], append(slices.Clone(baseVolumes), ex.ExtraVolumes...); !reflect.DeepEqual(got, want) {
				t.Errorf("volumes: got %v, want %v", got, want)
			}
			if got, want := c["volumeMounts"], append(slices.Clone(baseMounts), ex.ExtraVolumeMounts...); !reflect.DeepEqual(got, want) {
				t.Errorf("volumeMounts: got %v, want %v", got, want)
			}
			if args := get(c, "args").([]any); !slices.Contains(args, any(ex.ExtraArgs[0])) {
				t.Errorf("the manager's args %v lack %s", args, ex.ExtraArgs[0])
			}

			volumesOnly := pod("--set", set, "--set-json", "extraVolumes="+string(onlyVolumes))
			c = get(volumesOnly, "containers", 0).(map[string]any)
			if got, want := volumesOnly["volumes"], append(slices.Clone(baseVolumes), ex.ExtraVolumes...); !reflect.DeepEqual(got, want) {
				t.Errorf("extraVolumes alone: volumes %v, want %v", got, want)
			}
			if mounts, set := c["volumeMounts"]; set != mountsSet || !reflect.DeepEqual(mounts, get(base, "containers", 0).(map[string]any)["volumeMounts"]) {
				t.Errorf("extraVolumes alone: volumeMounts %v (set: %v), want as without it", mounts, set)
			}
		})
	}
}

// valuesExample returns the example commented out above the line of values.yaml that is key: the
// comment's lines indented under "#   ", uncommented.
func valuesExample(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	i := slices.Index(lines, key)
	if i < 0 {
		t.Fatalf("values.yaml has no line %q", key)
	}
	var example []string
	for i--; i >= 0 && strings.HasPrefix(lines[i], "#   "); i-- {
		example = append([]string{strings.TrimPrefix(lines[i], "#   ")}, example...)
	}
	if len(example) == 0 {
		t.Fatalf("values.yaml has no example above %q", key)
	}
	return strings.Join(example, "\n") + "\n"
}

// TestValuesSchemaRefusesWrongValues: the generated values.schema.json makes a wrong value fail
// at template time (and so at install), naming it, instead of rendering and failing at apply.
func TestValuesSchemaRefusesWrongValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "replicaCount=one"}, "/replicaCount': got string, want integer"},
		{[]string{"--set", "replicaCount=-1"}, "/replicaCount"},
		{[]string{"--set", "image.tagg=v1"}, "additional properties 'tagg' not allowed"},
		{[]string{"--set", "image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{[]string{"--set", "networkPolicy.enabled=yes please"}, "/networkPolicy/enabled"},
		{[]string{"--set-json", `namespaced.watchNamespaces=["Team_A"]`}, "/namespaced/watchNamespaces/0"},
		{[]string{"--set-json", `extraArgs=["zap-log-level=debug"]`}, "/extraArgs/0"},
	} {
		_, err := helm(append([]string{"template", chartName, chartDir}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template %v: want a schema error naming %q, got %v", c.args, c.want, err)
		}
	}
	// What the tests above render with is valid; so are values.yaml's own examples.
	for _, args := range [][]string{
		{"--set", "replicaCount=3,image.pullPolicy=Always,extraArgs[0]=--zap-log-level=debug"},
		{"--set", shardsValue, "--set-json", `nodeSelector={"kubernetes.io/os":"linux"}`, "--set-json", `resources={"limits":{"ephemeral-storage":"1Gi"}}`},
	} {
		if _, err := helm(append([]string{"template", chartName, chartDir}, args...)...); err != nil {
			t.Errorf("helm template %v: %v", args, err)
		}
	}
}
