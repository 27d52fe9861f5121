package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The reconciler's memory of the orgs (salesforceorg_memory.go), on its own.

func checkAt(t time.Time, stages ...string) sfv1.SalesforceOrgStatus {
	return sfv1.SalesforceOrgStatus{
		LastCheckTime: &metav1.Time{Time: t}, LastConnectedTime: &metav1.Time{Time: t},
		UsedBy: stages, StageCount: int32(len(stages)),
		APIRequests: &sfv1.APIRequests{Max: 15000, Remaining: 14000},
	}
}

func TestMemoryNewestStatusPrefersOwnNewerWriteUntilTheCacheHasIt(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	var m orgMemory
	o := m.of("uid")
	if got := o.newestStatus(checkAt(t0, "s1")); !got.LastCheckTime.Time.Equal(t0) {
		t.Fatalf("nothing written: got the check of %s, want the cached one", got.LastCheckTime)
	}

	written := checkAt(t0.Add(time.Minute))
	o.patched(nil, true, &written)
	got := o.newestStatus(checkAt(t0, "s1", "s2"))
	if !got.LastCheckTime.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("cache behind our write: got the check of %s, want ours", got.LastCheckTime)
	}
	if got.StageCount != 2 || len(got.UsedBy) != 2 {
		t.Fatalf("usage is the cache's, not the written status's: got %v", got.UsedBy)
	}

	m.cacheCaughtUp(&sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{UID: "uid"}, Status: checkAt(t0.Add(time.Minute), "s1")})
	if o.written.Load() != nil {
		t.Fatal("the cache has our write: the memory still holds it")
	}
	if got := o.newestStatus(checkAt(t0, "s1")); !got.LastCheckTime.Time.Equal(t0) {
		t.Fatalf("after the cache caught up: got the check of %s, want the cached one", got.LastCheckTime)
	}
}

func TestMemoryForgetsWhatTheCacheOvertook(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	var m orgMemory
	o := m.of("uid")
	written := checkAt(t0)
	o.patched(nil, true, &written)
	if got := o.newestStatus(checkAt(t0.Add(time.Minute))); !got.LastCheckTime.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("cache ahead of our write: got the check of %s, want the cache's", got.LastCheckTime)
	}
	if o.written.Load() != nil {
		t.Fatal("a write the cache overtook is still remembered")
	}
}

func TestMemoryPatchedRemembersOnlyChecks(t *testing.T) {
	var m orgMemory
	o := m.of("uid")
	st := checkAt(time.Now())
	o.patched(nil, false, &st)
	if o.checkedSinceStart || o.written.Load() != nil {
		t.Fatal("a reconcile without a check changed the memory of checks")
	}
	o.patched(nil, true, nil)
	if !o.checkedSinceStart || o.written.Load() != nil {
		t.Fatalf("a check that wrote nothing: checkedSinceStart %v, written %v; want true, nil", o.checkedSinceStart, o.written.Load())
	}
	o.chainID = "ns/a-auth/sfdxAuthUrl"
	if got := m.forget("uid"); got != o.chainID {
		t.Fatalf("forget returned chain %q, want %q", got, o.chainID)
	}
	if m.of("uid") == o {
		t.Fatal("a forgotten org is still remembered")
	}
}

func TestMemoryRestoreHeldUntilStatusHasANewerCheck(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	var m orgMemory
	o := m.of("uid")
	o.held = &heldCheck{checked: &metav1.Time{Time: t0.Add(time.Minute)}, connected: &metav1.Time{Time: t0.Add(time.Minute)},
		api: &sfv1.APIRequests{Max: 15000, Remaining: 13990}}

	st := checkAt(t0)
	o.restoreHeld(&st)
	if !st.LastCheckTime.Time.Equal(t0.Add(time.Minute)) || st.APIRequests.Remaining != 13990 {
		t.Fatalf("held check not restored: %s, %d remaining", st.LastCheckTime, st.APIRequests.Remaining)
	}
	newer := checkAt(t0.Add(2 * time.Minute))
	o.restoreHeld(&newer)
	if !newer.LastCheckTime.Time.Equal(t0.Add(2*time.Minute)) || o.held != nil {
		t.Fatalf("status has a newer check: got %s, held %v; want status's and nothing held", newer.LastCheckTime, o.held)
	}
}

func TestHoldBack(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	heartbeat := time.Hour
	cases := []struct {
		name     string
		now      func(sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus
		wantHeld bool
	}{
		{"only the clock moved", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
			return checkAt(t0.Add(10 * time.Minute))
		}, true},
		{"the headroom moved by less than 1%", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
			n := checkAt(t0.Add(10 * time.Minute))
			n.APIRequests.Remaining -= 100
			return n
		}, true},
		{"the headroom moved by 1%", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
			n := checkAt(t0.Add(10 * time.Minute))
			n.APIRequests.Remaining -= 150
			return n
		}, false},
		{"the heartbeat is due", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
			return checkAt(t0.Add(heartbeat))
		}, false},
		{"something a user acts on changed", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
			n := checkAt(t0.Add(10 * time.Minute))
			n.OrgID = "00D000000000002AAA"
			return n
		}, false},
		{"no new check", func(s sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus { return s }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			was := checkAt(t0)
			now := tc.now(was)
			want := *now.DeepCopy()
			held := holdBack(was, &now, heartbeat)
			if (held != nil) != tc.wantHeld {
				t.Fatalf("held %v, want held: %v", held, tc.wantHeld)
			}
			if held == nil {
				if !now.LastCheckTime.Equal(want.LastCheckTime) {
					t.Fatalf("nothing held, yet the status to write lost its check time %s", want.LastCheckTime)
				}
				return
			}
			if !now.LastCheckTime.Equal(was.LastCheckTime) || !held.checked.Equal(want.LastCheckTime) {
				t.Fatalf("held: status to write has %s (want %s), held %s (want %s)", now.LastCheckTime, was.LastCheckTime, held.checked, want.LastCheckTime)
			}
		})
	}
}
