package controllers_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func TestStageFollowsItsOrg(t *testing.T) {
	ns := newNamespace(t)
	// GitOps order 1: the stage before the org.
	mustCreate(t, newStage(ns, "release-uat", "release", "uat"))
	s := waitStageReady(t, ns, "release-uat", metav1.ConditionFalse, sfv1.ReasonOrgNotFound)
	if s.Status.OrgConnection != sfv1.ConnectionUnknown {
		t.Errorf("orgConnection of a stage without org: %s", s.Status.OrgConnection)
	}
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox})
	mustCreate(t, newOrg(ns, "uat", sfv1.OrgTypeSandbox, "uat-auth"))
	waitStageReady(t, ns, "release-uat", metav1.ConditionFalse, sfv1.ReasonOrgDisconnected)
	putSecret(t, ns, "uat-auth", fo.AuthURL())
	s = waitStageReady(t, ns, "release-uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if s.Status.OrgConnection != sfv1.ConnectionConnected {
		t.Errorf("orgConnection: %s", s.Status.OrgConnection)
	}

	// GitOps order 2: the org before the stage.
	mustCreate(t, newStage(ns, "hotfix-uat", "hotfix", "uat"))
	waitStageReady(t, ns, "hotfix-uat", metav1.ConditionTrue, sfv1.ReasonConnected)

	// The org's disconnection reaches the stages through the watch.
	fo.RevokeRefreshTokens()
	fo.ExpireAccessTokens()
	requestCheck(t, ns, "uat")
	s = waitStageReady(t, ns, "release-uat", metav1.ConditionFalse, sfv1.ReasonOrgDisconnected)
	if s.Status.OrgConnection != sfv1.ConnectionDisconnected {
		t.Errorf("orgConnection after revoke: %s", s.Status.OrgConnection)
	}
}

// activeStagesOnUAT makes org "uat" with the two active stages of the example.
func activeStagesOnUAT(t *testing.T) string {
	t.Helper()
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox})
	putSecret(t, ns, "uat-auth", fo.AuthURL())
	mustCreate(t, newOrg(ns, "uat", sfv1.OrgTypeSandbox, "uat-auth"),
		newStage(ns, "release-uat", "release", "uat"), newStage(ns, "hotfix-uat", "hotfix", "uat"))
	waitStageReady(t, ns, "release-uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	return ns
}

func TestOrgInUseCannotBeDeactivatedOrDeleted(t *testing.T) {
	ns := activeStagesOnUAT(t)
	ctx := context.Background()

	org := getOrg(t, ns, "uat")
	org.Spec.State = sfv1.StateInactive
	err := k8s.Update(ctx, org)
	want := `SalesforceOrg "uat" cannot be set to Inactive: it is mapped to active pipeline stages hotfix/uat, release/uat. Remove it from those stages, or set them Inactive, first.`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("deactivating an org in use: %v", err)
	}
	// As kubectl shows it.
	stderr := kubectlErr(t, "", "patch", "sforg", "uat", "-n", ns, "--type=merge", "-p", `{"spec":{"state":"Inactive"}}`)
	if !strings.Contains(stderr, want) {
		t.Errorf("kubectl patch said: %s", stderr)
	}
	// (A dry run: a real refused deletion would be remembered and replayed, see TestPruneConvergesInOnePass.)
	stderr = kubectlErr(t, "", "delete", "sforg", "uat", "-n", ns, "--wait=false", "--dry-run=server")
	if !strings.Contains(stderr, `SalesforceOrg "uat" cannot be deleted: it is mapped to active pipeline stages hotfix/uat, release/uat. Remove it from those stages, or set them Inactive, first.`) {
		t.Errorf("kubectl delete said: %s", stderr)
	}

	// Setting one stage Inactive narrows the refusal; both lifts it.
	for i, name := range []string{"hotfix-uat", "release-uat"} {
		s := getStage(t, ns, name)
		s.Spec.State = sfv1.StateInactive
		if err := k8s.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		org := getOrg(t, ns, "uat")
		org.Spec.State = sfv1.StateInactive
		err := k8s.Update(ctx, org)
		if i == 0 && (err == nil || !strings.Contains(err.Error(), "active pipeline stages release/uat.")) {
			t.Errorf("with one stage left: %v", err)
		}
		if i == 1 && err != nil {
			t.Errorf("with no active stage left: %v", err)
		}
	}
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonInactive)

	// An Active stage cannot be pointed at an Inactive org...
	err = k8s.Create(ctx, newStage(ns, "qa-uat", "qa", "uat"))
	if err == nil || !strings.Contains(err.Error(), `SalesforceOrg "uat" is Inactive, and inactive connections cannot be mapped to a stage`) {
		t.Errorf("mapping an active stage to an inactive org: %v", err)
	}
	// ...nor re-activated onto one.
	s := getStage(t, ns, "release-uat")
	s.Spec.State = sfv1.StateActive
	if err := k8s.Update(ctx, s); err == nil || !strings.Contains(err.Error(), "inactive connections cannot be mapped to a stage") {
		t.Errorf("re-activating a stage on an inactive org: %v", err)
	}
	// An unused org deletes.
	if err := k8s.Delete(ctx, getOrg(t, ns, "uat")); err != nil {
		t.Errorf("deleting an org no active stage uses: %v", err)
	}
}

func TestCreatedByIsRecordedAndCannotBeForged(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	alice := impersonating(t, "alice@example.com")

	org := newOrg(ns, "mine", sfv1.OrgTypeProduction, "mine-auth")
	org.Annotations = map[string]string{sfv1.CreatedByAnnotation: "mallory@example.com"}
	if err := alice.Create(ctx, org); err != nil {
		t.Fatal(err)
	}
	if got := getOrg(t, ns, "mine").Annotations[sfv1.CreatedByAnnotation]; got != "alice@example.com" {
		t.Errorf("created-by: %q", got)
	}
	// A changed value (say, a manifest exported with kubectl get -o yaml and committed) is
	// accepted, and the stored record restored: applies never fail on it, and it never changes.
	o := getOrg(t, ns, "mine")
	o.Annotations[sfv1.CreatedByAnnotation] = "mallory@example.com"
	o.Spec.CheckInterval = &metav1.Duration{Duration: 2 * time.Hour}
	if err := alice.Update(ctx, o); err != nil {
		t.Errorf("an update carrying another created-by: %v", err)
	}
	if got := getOrg(t, ns, "mine"); got.Annotations[sfv1.CreatedByAnnotation] != "alice@example.com" || got.Spec.CheckInterval.Duration != 2*time.Hour {
		t.Errorf("created-by %q after an update that changed it (spec applied: %v)", got.Annotations[sfv1.CreatedByAnnotation], got.Spec.CheckInterval)
	}
	// kubectl replace of a manifest without the annotation keeps it.
	o = getOrg(t, ns, "mine")
	delete(o.Annotations, sfv1.CreatedByAnnotation)
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := getOrg(t, ns, "mine").Annotations[sfv1.CreatedByAnnotation]; got != "alice@example.com" {
		t.Errorf("created-by after an update that dropped it: %q", got)
	}
	// The CREATED BY column, and the documented one-liner listing one person's orgs.
	if wide := kubectl(t, "get", "sforg", "mine", "-n", ns, "-o", "wide"); !strings.Contains(wide, "alice@example.com") {
		t.Errorf("CREATED BY column:\n%s", wide)
	}
	mustCreate(t, newOrg(ns, "theirs", sfv1.OrgTypeProduction, "x"))
	out := kubectl(t, "get", "sforg", "-n", ns, "-o",
		`jsonpath={range .items[?(@.metadata.annotations.salesforce\.sfops\.io/created-by=="alice@example.com")]}{.metadata.name}{"\n"}{end}`)
	if strings.TrimSpace(out) != "mine" {
		t.Errorf("orgs created by alice: %q", out)
	}
}

// impersonating returns a client acting as user, with cluster-admin rights through system:masters.
func impersonating(t *testing.T, user string) client.Client {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:masters", "system:authenticated"}}
	cl, err := client.New(c, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return unconditional{cl}
}

func TestFinalizerBackstopWithoutWebhooks(t *testing.T) {
	ns := activeStagesOnUAT(t)
	ctx := context.Background()
	// Bypass admission: the webhooks let a namespace that is terminating through, and a real
	// cluster may simply not have them installed. Here the object is deleted by a client that the
	// webhook lets through because the namespace is going away.
	withoutWebhooks(t, func() {
		if err := k8s.Delete(ctx, getOrg(t, ns, "uat")); err != nil {
			t.Fatalf("delete without webhooks: %v", err)
		}
	})
	org := waitOrgReady(t, ns, "uat", metav1.ConditionFalse, sfv1.ReasonDeletionBlocked)
	if msg := condition(org.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, "hotfix/uat, release/uat") {
		t.Errorf("DeletionBlocked message: %s", msg)
	}
	consistently(t, time.Second, "the org to stay while stages use it", func() string {
		getOrg(t, ns, "uat")
		return ""
	})
	// Removing the stages releases it.
	for _, n := range []string{"hotfix-uat", "release-uat"} {
		if err := k8s.Delete(ctx, getStage(t, ns, n)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the org to be gone", func() string {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "uat"}, &sfv1.SalesforceOrg{})
		if err == nil {
			return "still there"
		}
		return ""
	})

	// An org set Inactive behind admission's back is reported on the org and on its stages.
	ns = activeStagesOnUAT(t)
	withoutWebhooks(t, func() {
		o := getOrg(t, ns, "uat")
		o.Spec.State = sfv1.StateInactive
		if err := k8s.Update(ctx, o); err != nil {
			t.Fatal(err)
		}
	})
	waitOrgReady(t, ns, "uat", metav1.ConditionFalse, sfv1.ReasonInUseWhileInactive)
	waitStageReady(t, ns, "release-uat", metav1.ConditionFalse, sfv1.ReasonOrgInactive)
}

// withoutWebhooks removes the validating webhook configuration while fn runs, as on a cluster
// where it is not installed, and puts it back.
var webhookMu sync.Mutex

func withoutWebhooks(t *testing.T, fn func()) {
	t.Helper()
	webhookMu.Lock()
	defer webhookMu.Unlock()
	ctx := context.Background()
	vwcs := testEnv.WebhookInstallOptions.ValidatingWebhooks
	for _, w := range vwcs {
		cur := w.DeepCopy()
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(w), cur); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Delete(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, w := range vwcs {
			cur := w.DeepCopy()
			cur.ResourceVersion = ""
			if err := k8s.Create(ctx, cur); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond) // the apiserver picks up webhook configurations asynchronously
	}()
	time.Sleep(500 * time.Millisecond)
	fn()
}

func TestUsedByBookkeepingUnderChurn(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	mustCreate(t, newOrg(ns, "a", sfv1.OrgTypeSandbox, "a-auth"), newOrg(ns, "b", sfv1.OrgTypeSandbox, "b-auth"))
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- k8s.Create(ctx, newStage(ns, fmt.Sprintf("s%02d", i), "p", "a"))
		}(i)
	}
	wg.Wait()
	expectUsedBy(t, ns, "a", n, nil)

	// Move a third to org b, delete a third, leave the rest.
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := &sfv1.PipelineStage{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("s%02d", i)}, s); err != nil {
				errs <- err
				return
			}
			switch i % 3 {
			case 0:
				s.Spec.OrgRef.Name = "b"
				errs <- k8s.Update(ctx, s)
			case 1:
				errs <- k8s.Delete(ctx, s)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var wantA, wantB []string
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			wantB = append(wantB, fmt.Sprintf("s%02d", i))
		case 2:
			wantA = append(wantA, fmt.Sprintf("s%02d", i))
		}
	}
	expectUsedBy(t, ns, "a", len(wantA), wantA)
	expectUsedBy(t, ns, "b", len(wantB), wantB)
	out := kubectl(t, "get", "sforg", "-n", ns)
	if !containsLine(out, "a", "Sandbox", "Active", "Disconnected", fmt.Sprint(len(wantA))) ||
		!containsLine(out, "b", "Sandbox", "Active", "Disconnected", fmt.Sprint(len(wantB))) {
		t.Errorf("STAGES column:\n%s", out)
	}
}

func expectUsedBy(t *testing.T, ns, org string, count int, names []string) {
	t.Helper()
	eventually(t, fmt.Sprintf("org %s used by %d stages", org, count), func() string {
		o := getOrg(t, ns, org)
		got := append([]string(nil), o.Status.UsedBy...)
		sort.Strings(got)
		if int(o.Status.StageCount) != count || len(got) != count || (names != nil && strings.Join(got, ",") != strings.Join(names, ",")) {
			return fmt.Sprintf("stageCount=%d usedBy=%v", o.Status.StageCount, got)
		}
		return ""
	})
}
