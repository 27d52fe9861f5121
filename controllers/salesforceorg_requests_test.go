package controllers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The Kubernetes work of a periodic re-check, as time passes: the envtest suite counts the
// requests of re-checks a person asks for (salesforceorg_requests_envtest_test.go); these count
// those of checks that come due, which envtest cannot wait for (checkInterval is at least 1m).

// rewind makes the org's last check ago old, as if that much time had passed since it: in status
// and in the reconciler's memory of it.
func rewind(t *testing.T, h *harness, name string, ago time.Duration) {
	t.Helper()
	o := h.org(t, name)
	o.Status.LastCheckTime = &metav1.Time{Time: time.Now().Add(-ago).Truncate(time.Second)}
	o.Status.LastConnectedTime = o.Status.LastCheckTime
	if err := h.c.Status().Update(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	m := h.r.memory.of(o.UID)
	m.written.Store(nil)
	m.held = nil
}

func TestPeriodicRecheckReadsNoSecretAndWritesOnlyAtTheHeartbeat(t *testing.T) {
	var statusWrites atomic.Int32
	funcs := &interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
		statusWrites.Add(1)
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}}
	h := newHarness(t, funcs, authSecret("a-auth"))
	h.checker.holds = true
	h.checker.facts.APIRequestsMax, h.checker.facts.APIRequestsRemaining = 15000, 14000
	h.r.startedAt = time.Now().Add(-time.Hour) // overdue first checks are not spread into the future
	if err := h.c.Create(context.Background(), testOrg("a")); err != nil {
		t.Fatal(err)
	}
	// The first check reads the Secret and writes what it found.
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	if h.reader.gets != 1 || h.checker.count() != 1 || statusWrites.Load() != 1 {
		t.Fatalf("first check: %d Secret reads, %d checks, %d status writes; want 1, 1, 1", h.reader.gets, h.checker.count(), statusWrites.Load())
	}

	steps := []struct {
		name                     string
		ago                      time.Duration
		remaining                int64
		wantHeld, wantStatusPuts int32
	}{
		{"due, nothing changed", 12 * time.Minute, 14000, 1, 0},
		{"due, API headroom moved less than 1% of the limit", 12 * time.Minute, 13900, 1, 0},
		{"due, API headroom moved 1% of the limit", 12 * time.Minute, 13850, 1, 1},
		{"due, lastCheckTime older than the heartbeat", DefaultStatusHeartbeat + time.Minute, 13850, 1, 1},
	}
	for _, st := range steps {
		rewind(t, h, "a", st.ago)
		h.checker.facts.APIRequestsRemaining = st.remaining
		gets, held, writes := h.reader.gets, h.checker.heldCalls, statusWrites.Load()
		if _, err := h.reconcile(t, "a"); err != nil {
			t.Fatal(err)
		}
		if h.reader.gets != gets || int32(h.checker.heldCalls-held) != st.wantHeld || statusWrites.Load()-writes != st.wantStatusPuts {
			t.Errorf("%s: %d Secret reads, %d checks with the held token, %d status writes; want 0, %d, %d",
				st.name, h.reader.gets-gets, h.checker.heldCalls-held, statusWrites.Load()-writes, st.wantHeld, st.wantStatusPuts)
		}
		// A check that wrote nothing is still remembered: the next one is an interval away.
		if res, err := h.reconcile(t, "a"); err != nil || res.RequeueAfter < 9*time.Minute {
			t.Errorf("%s: right after the check, next in %s (%v), want about the interval", st.name, res.RequeueAfter, err)
		}
	}
	if c := meta.FindStatusCondition(h.org(t, "a").Status.Conditions, sfv1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v", c)
	}

	// A new Secret version is read at once, and a check of it is written.
	s := authSecret("a-auth")
	s.Labels["touched"] = "yes"
	if err := h.c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	gets, checks := h.reader.gets, h.checker.count()
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	if h.reader.gets != gets+1 || h.checker.count() != checks+1 {
		t.Errorf("a new Secret version: %d Secret reads and %d full checks, want 1 and 1", h.reader.gets-gets, h.checker.count()-checks)
	}
}
