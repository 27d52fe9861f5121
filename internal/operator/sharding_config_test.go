package operator_test

import (
	"flag"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sfops/salesforce-operator/internal/operator"
)

// config/sharding's Deployments start managers that split the objects as Flux's shards do: their
// args, parsed by the manager's own flags, give config/default's manager the objects without a
// shard label and the webhooks, and each shard's manager its shard's objects and no webhooks. The
// Helm chart renders the same Deployments (hack/platform compares them).
func TestShardingConfigSplitsTheObjects(t *testing.T) {
	objs := rendered(t, "../../config/sharding")
	options := map[string]operator.Options{}
	for _, u := range objs["Deployment"] {
		var d appsv1.Deployment
		must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d))
		var o operator.Options
		fs := flag.NewFlagSet(d.Name, flag.ContinueOnError)
		finish := operator.BindFlags(fs, &o)
		(&zap.Options{}).BindFlags(fs)
		if err := fs.Parse(d.Spec.Template.Spec.Containers[0].Args); err != nil {
			t.Fatalf("%s's args: %v", d.Name, err)
		}
		must(t, finish())
		options[d.Name] = o
	}
	const main = "salesforce-operator-controller-manager"
	shards := map[string]string{"shard1": "salesforce-operator-shard1", "shard2": "salesforce-operator-shard2"}
	if len(options) != 1+len(shards) {
		t.Fatalf("config/sharding has the Deployments %v, want %s and one per shard of %v", options, main, shards)
	}
	for name, o := range options {
		if o.EnableWebhooks != (name == main) {
			t.Errorf("%s: --enable-webhooks=%v", name, o.EnableWebhooks)
		}
		if !o.LeaderElect {
			t.Errorf("%s elects no leader", name)
		}
	}
	for _, tc := range []struct {
		objectLabels labels.Set
		want         string // "": none
	}{
		{nil, main},
		{labels.Set{"sharding.sfops.io/key": "shard1"}, shards["shard1"]},
		{labels.Set{"sharding.sfops.io/key": "shard2"}, shards["shard2"]},
		{labels.Set{"sharding.sfops.io/key": "shard3"}, ""},
	} {
		var by []string
		for name, o := range options {
			sel, err := labels.Parse(o.WatchLabelSelector)
			if err != nil || o.WatchLabelSelector == "" {
				t.Fatalf("%s: --watch-label-selector %q: %v", name, o.WatchLabelSelector, err)
			}
			if sel.Matches(tc.objectLabels) {
				by = append(by, name)
			}
		}
		if (tc.want == "" && len(by) != 0) || (tc.want != "" && (len(by) != 1 || by[0] != tc.want)) {
			t.Errorf("an object labelled %v is reconciled by %v, want %q", tc.objectLabels, by, tc.want)
		}
	}
}
