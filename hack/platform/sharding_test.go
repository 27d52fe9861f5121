package main

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// The shards of config/sharding, which the tests give the chart too.
var exampleShards = []string{"shard1", "shard2"}

const shardsValue = "sharding.shards={shard1,shard2}"

// TestShardedInstall renders the chart with two shards, under another release name and namespace
// and with either webhook certificate, and config/sharding, and checks each as checkShards does.
func TestShardedInstall(t *testing.T) {
	for _, certSource := range []string{"self", "certManager"} {
		t.Run("chart,certSource="+certSource, func(t *testing.T) {
			objs := helmTemplate(t, "sf", "ops", "--set", shardsValue, "--set", "webhook.certSource="+certSource, "--set", "networkPolicy.enabled=true")
			checkShards(t, objs, "sf-salesforce-operator")
		})
	}
	t.Run("config/sharding", func(t *testing.T) {
		objs, err := WithNetworkPolicy(root, "sharding")
		if err != nil {
			t.Fatal(err)
		}
		checkShards(t, objs, strings.TrimSuffix(kustomizePrefix, "-"))
	})
}

// checkShards checks an install with exampleShards, whose objects' names start with fullname:
//   - one Deployment for objects of no shard, which serves the webhooks, and one per shard, named
//     <fullname>-<shard>, which serves none (no webhook flag, port or certificate) and is otherwise
//     the first's pod;
//   - their --watch-label-selector split the objects: each of no shard, of shard1, of shard2 is
//     the one Deployment's, and one of a shard that has no Deployment is none's;
//   - by their pods' labels: no Deployment's selector takes another's pods, the webhook Service
//     sends only to the webhooks' pods, the metrics Service and the NetworkPolicy cover every
//     manager's pods, and every pod has one PodDisruptionBudget, its Deployment's.
func checkShards(t *testing.T, objs []object, fullname string) {
	t.Helper()
	var deployments []object
	for _, o := range objs {
		if o["kind"] == "Deployment" {
			deployments = append(deployments, o)
		}
	}
	names := []string{fullname + "-controller-manager"}
	for _, s := range exampleShards {
		names = append(names, fullname+"-"+s)
	}
	byName := map[string]object{}
	for _, d := range deployments {
		byName[fmt.Sprint(get(d, "metadata", "name"))] = d
	}
	if got := slices.Sorted(maps.Keys(byName)); len(deployments) != len(names) || !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		t.Fatalf("Deployments %v, want %v", got, names)
	}
	main := byName[names[0]]
	mainPod := get(main, "spec", "template", "spec").(map[string]any)

	// Flags, ports, volumes; the rest of the pod as the main Deployment's.
	selectors := map[string]labels.Selector{}
	for i, name := range names {
		d := byName[name]
		pod := get(d, "spec", "template", "spec").(map[string]any)
		c := get(pod, "containers", 0).(map[string]any)
		flags := managerFlags(c["args"].([]any))
		sel, err := labels.Parse(flags["--watch-label-selector"])
		if err != nil {
			t.Errorf("%s: --watch-label-selector: %v", name, err)
		}
		selectors[name] = sel
		var webhookFlags []string
		for f := range flags {
			if strings.HasPrefix(f, "--webhook-") || strings.HasSuffix(f, "-webhook-configuration") {
				webhookFlags = append(webhookFlags, f)
			}
		}
		var ports []any
		for _, p := range c["ports"].([]any) {
			ports = append(ports, get(p, "containerPort"))
		}
		if i == 0 {
			if want := "!sharding.sfops.io/key"; flags["--watch-label-selector"] != want {
				t.Errorf("%s: --watch-label-selector=%q, want %q", name, flags["--watch-label-selector"], want)
			}
			if v, set := flags["--enable-webhooks"]; set || len(webhookFlags) == 0 || !slices.Contains(ports, any(float64(9443))) {
				t.Errorf("%s does not serve the webhooks: --enable-webhooks=%q (set: %v), webhook flags %v, ports %v", name, v, set, webhookFlags, ports)
			}
			continue
		}
		shard := exampleShards[i-1]
		if want := "sharding.sfops.io/key in (" + shard + ")"; flags["--watch-label-selector"] != want {
			t.Errorf("%s: --watch-label-selector=%q, want %q", name, flags["--watch-label-selector"], want)
		}
		if flags["--enable-webhooks"] != "false" || len(webhookFlags) > 0 || slices.Contains(ports, any(float64(9443))) || pod["volumes"] != nil || c["volumeMounts"] != nil {
			t.Errorf("%s serves webhooks: --enable-webhooks=%q, webhook flags %v, ports %v, volumes %v", name, flags["--enable-webhooks"], webhookFlags, ports, pod["volumes"])
		}
		mainC := get(mainPod, "containers", 0).(map[string]any)
		for _, key := range []string{"image", "imagePullPolicy", "resources", "securityContext", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle"} {
			if !reflect.DeepEqual(c[key], mainC[key]) {
				t.Errorf("%s: the manager's %s is %v, the main Deployment's %v", name, key, c[key], mainC[key])
			}
		}
		for _, key := range []string{"serviceAccountName", "securityContext", "terminationGracePeriodSeconds", "imagePullSecrets", "nodeSelector", "tolerations", "affinity"} {
			if !reflect.DeepEqual(pod[key], mainPod[key]) {
				t.Errorf("%s: the pod's %s is %v, the main Deployment's %v", name, key, pod[key], mainPod[key])
			}
		}
		if !reflect.DeepEqual(get(d, "spec", "replicas"), get(main, "spec", "replicas")) {
			t.Errorf("%s has %v replicas, the main Deployment %v", name, get(d, "spec", "replicas"), get(main, "spec", "replicas"))
		}
	}

	// Which manager reconciles an object, by its labels.
	for _, tc := range []struct {
		objectLabels labels.Set
		want         []string
	}{
		{nil, names[:1]},
		{labels.Set{"team": "a"}, names[:1]},
		{labels.Set{"sharding.sfops.io/key": "shard1"}, names[1:2]},
		{labels.Set{"sharding.sfops.io/key": "shard2"}, names[2:3]},
		{labels.Set{"sharding.sfops.io/key": "shard3"}, nil},
	} {
		var by []string
		for _, name := range names {
			if selectors[name].Matches(tc.objectLabels) {
				by = append(by, name)
			}
		}
		if !slices.Equal(by, tc.want) {
			t.Errorf("an object labelled %v is reconciled by %v, want %v", tc.objectLabels, by, tc.want)
		}
	}

	// Which pods each selector takes, by the Deployments' pod templates.
	podsOf := func(selector any) []string {
		var taken []string
		for _, name := range names {
			if selects(selector, get(byName[name], "spec", "template", "metadata", "labels")) {
				taken = append(taken, name)
			}
		}
		return taken
	}
	for _, name := range names {
		if got := podsOf(get(byName[name], "spec", "selector", "matchLabels")); !slices.Equal(got, []string{name}) {
			t.Errorf("Deployment %s's selector takes the pods of %v", name, got)
		}
	}
	webhook := find(t, objs, "Service", "", fullname+"-webhook-service")
	if got := podsOf(get(webhook, "spec", "selector")); !slices.Equal(got, names[:1]) {
		t.Errorf("the webhook Service sends to the pods of %v, want only %s's", got, names[0])
	}
	metrics := find(t, objs, "Service", "", fullname+"-controller-manager-metrics")
	if got := podsOf(get(metrics, "spec", "selector")); !slices.Equal(got, names) {
		t.Errorf("the metrics Service scrapes the pods of %v, want %v", got, names)
	}
	np := find(t, objs, "NetworkPolicy", "", fullname+"-controller-manager")
	if got := podsOf(get(np, "spec", "podSelector", "matchLabels")); !slices.Equal(got, names) {
		t.Errorf("the NetworkPolicy applies to the pods of %v, want %v", got, names)
	}
	pdbs := map[string][]string{}
	for _, o := range objs {
		if o["kind"] == "PodDisruptionBudget" {
			for _, pods := range podsOf(get(o, "spec", "selector", "matchLabels")) {
				pdbs[pods] = append(pdbs[pods], fmt.Sprint(get(o, "metadata", "name")))
			}
		}
	}
	for _, name := range names {
		if !slices.Equal(pdbs[name], []string{name}) {
			t.Errorf("the pods of %s have the PodDisruptionBudgets %v, want their own", name, pdbs[name])
		}
	}
}

// selects says whether a Service's selector or a matchLabels selects pods with these labels.
func selects(selector, podLabels any) bool {
	sel, _ := selector.(map[string]any)
	pl, _ := podLabels.(map[string]any)
	if len(sel) == 0 {
		return false // no selector: a Service without endpoints, not every pod
	}
	for k, v := range sel {
		if pv, ok := pl[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

// TestShardNames: names YAML would read as other than strings are label values all the same, and
// a name that is not a DNS label, the main Deployment's, or one listed twice is refused, saying
// which and what to do.
func TestShardNames(t *testing.T) {
	objs := helmTemplate(t, "sf", "ops", "--set-json", `sharding.shards=["true","123"]`)
	for _, shard := range []string{"true", "123"} {
		d := find(t, objs, "Deployment", "ops", "sf-salesforce-operator-"+shard)
		for _, l := range []any{get(d, "metadata", "labels"), get(d, "spec", "selector", "matchLabels"), get(d, "spec", "template", "metadata", "labels")} {
			if v := get(l, shardLabel); v != shard {
				t.Errorf("shard %s: label %s is %#v", shard, shardLabel, v)
			}
		}
	}

	for _, tc := range []struct{ set, want string }{
		{`["Shard1"]`, `sharding.shards: "Shard1" is not a valid shard name: it must be a DNS label`},
		{`["shard_1"]`, `sharding.shards: "shard_1" is not a valid shard name`},
		{`["-a"]`, `sharding.shards: "-a" is not a valid shard name`},
		{`[""]`, `sharding.shards: "" is not a valid shard name`},
		{`["` + strings.Repeat("a", 64) + `"]`, `is not a valid shard name: it must be a DNS label (at most 63`},
		{`["controller-manager"]`, `sharding.shards: "controller-manager" would give the shard's Deployment the main Deployment's name`},
		{`["a","b","a"]`, `sharding.shards lists "a" twice`},
		{`"shard1"`, `sharding.shards "shard1" is not a list`},
	} {
		_, err := helm("template", chartName, chartDir, "--set-json", "sharding.shards="+tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sharding.shards=%s: want a refusal saying %q, got %v", tc.set, tc.want, err)
		}
	}
}

// TestUnshardedInstallIsUnchanged: with no shards (the default, an empty list, null) the chart
// renders exactly what it renders without the value, which TestChartInstallsWhatKustomizeDoes
// compares with config/default.
func TestUnshardedInstallIsUnchanged(t *testing.T) {
	render := func(args ...string) string {
		out, err := helm(append([]string{"template", chartName, chartDir, "--namespace", kustomizeNamespace,
			"--set", "networkPolicy.enabled=true"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := render()
	for _, set := range []string{"sharding.shards=[]", "sharding.shards=null"} {
		if got := render("--set-json", set); got != want {
			t.Errorf("--set-json %s changes the render", set)
		}
	}
	if strings.Contains(want, "sharding.sfops.io") {
		t.Error("the default render mentions sharding.sfops.io")
	}
}
