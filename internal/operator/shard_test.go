package operator_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// Two managers with disjoint label selectors split the orgs between them, as Flux shards do: no
// org is checked by both, none by neither, and an org relabelled to the other shard is taken over.
func TestShardsSplitTheOrgs(t *testing.T) {
	_, cfg := startControlPlane(t, false)
	fake, err := sftest.NewStandaloneServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, shard := range []string{"shard1", "shard2"} {
		mgr, err := operator.New(cfg, operator.Options{
			MetricsAddr: "0", ProbeAddr: "0", AllowedHosts: []string{fake.Host()}, RootCAs: fake.CertPool(),
			WatchLabelSelector: "sharding.sfops.io/key in (" + shard + ")", SkipNameValidation: true,
			RetryBase: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = mgr.Start(ctx) }()
	}
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// SHARD_TEST_ORGS=2000 runs it at the size (make test keeps it at 100).
	const ns = "shards"
	n := 100
	if v, err := strconv.Atoi(os.Getenv("SHARD_TEST_ORGS")); err == nil && v >= 2 {
		n = v
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	fakes := map[string]*sftest.Org{}
	for i := range n {
		name := fmt.Sprintf("org-%05d", i)
		fo := fake.AddOrg(sftest.OrgSpec{Name: name})
		fakes[name] = fo
		shard := []string{"shard1", "shard2"}[i%2]
		must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: fo.AuthURL()}}))
		must(t, c.Create(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"sharding.sfops.io/key": shard}},
			Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: name}, CheckInterval: &metav1.Duration{Duration: time.Hour}}}))
	}
	testkit.Eventually(t, time.Minute+time.Duration(n)*30*time.Millisecond, "every org Connected", func() string {
		var list sfv1.SalesforceOrgList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		ready := 0
		for _, o := range list.Items {
			if cond := meta.FindStatusCondition(o.Status.Conditions, sfv1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
				ready++
			}
		}
		if ready != n {
			return fmt.Sprintf("%d of %d", ready, n)
		}
		return ""
	})
	time.Sleep(time.Second) // a second check by the other shard would show now
	for name, fo := range fakes {
		if calls := fake.CallsFor(fo); calls != 2 {
			t.Errorf("%s: %d calls; a first check costs 2, so it was checked by both shards or twice", name, calls)
		}
	}

	// Relabel one org to the other shard: that shard takes it (a check request is answered).
	o := &sfv1.SalesforceOrg{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "org-00000"}, o))
	o.Labels["sharding.sfops.io/key"] = "shard2"
	o.Annotations = map[string]string{sfv1.ReconcileRequestedAtAnnotation: "moved"}
	must(t, c.Update(ctx, o))
	waitFor(t, "the other shard to answer for the moved org", func() string {
		must(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "org-00000"}, o))
		if o.Status.LastHandledReconcileAt != "moved" {
			return "not handled"
		}
		return ""
	})
	// Its first check by the old shard (token + composite), then one by the new shard, whose own
	// Salesforce client logs in afresh (token + composite): nothing else.
	time.Sleep(time.Second)
	if calls := fake.CallsFor(fakes["org-00000"]); calls != 4 {
		t.Errorf("the moved org: %d calls, want 4", calls)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() string) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, what, cond)
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
