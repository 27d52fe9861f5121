package controllers

import (
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// orgMemory is what this manager remembers of the orgs it reconciles, between reconciles: what
// status does not show (yet). It is the reconciler's only state about an org besides the
// Salesforce client's sessions, which it names (chainID) so that they can be forgotten with the
// org. Two reasons make status alone not enough:
//
//   - The cache can serve an older status for a moment after this manager wrote a newer one
//     (our own Secret write-back wakes the org at once). The newer one wins (newestStatus) until
//     the org's update event shows the cache has it (cacheCaughtUp).
//   - The status write policy (holdBack) writes a check that changed only its own clock and the
//     API headroom no more often than the heartbeat; the held values are remembered (restoreHeld)
//     so the next check is scheduled from them, not from the older status.
//
// A key's reconciles never run at once (the work queue serialises them), so an entry needs no lock.
type orgMemory struct {
	orgs sync.Map // types.UID → *rememberedOrg
}

// rememberedOrg is what this manager remembers of one org. It is kept small: one exists for every
// org the manager watches.
type rememberedOrg struct {
	// checkedSinceStart: this manager has checked the org since it started.
	checkedSinceStart bool
	// written is the status this manager last wrote after a check, until the cache has it.
	written atomic.Pointer[sfv1.SalesforceOrgStatus]
	// held is the last check's clock and API headroom that the status policy held back.
	held *heldCheck
	// chainID is the org's credential chain in the Salesforce client, forgotten when the org goes.
	chainID string
	// announcedDeletion is the deletion request last announced by an event.
	announcedDeletion string
}

// heldCheck is what a check changed that status shows only at the heartbeat.
type heldCheck struct {
	checked, connected *metav1.Time
	api                *sfv1.APIRequests
}

// of is the memory of the org with uid, empty the first time.
func (m *orgMemory) of(uid types.UID) *rememberedOrg {
	o, _ := m.orgs.LoadOrStore(uid, &rememberedOrg{})
	return o.(*rememberedOrg)
}

// forget drops the memory of an org that is gone, and returns its chain, for the client to forget.
func (m *orgMemory) forget(uid types.UID) (chainID string) {
	if o, ok := m.orgs.LoadAndDelete(uid); ok {
		return o.(*rememberedOrg).chainID
	}
	return ""
}

// cacheCaughtUp lets the memory of a written status go once the cache has it: the org's update
// event carries the status as the cache now holds it.
func (m *orgMemory) cacheCaughtUp(org *sfv1.SalesforceOrg) {
	if o, ok := m.orgs.Load(org.UID); ok {
		o := o.(*rememberedOrg)
		if w := o.written.Load(); w != nil && !newerCheck(w, &org.Status) {
			o.written.CompareAndSwap(w, nil)
		}
	}
}

// newestStatus is the status a reconcile starts from: cached, unless this manager wrote a newer
// check that the cache does not have yet (then that, with the cache's usage, which is not the
// check's). Once the cache has it, the memory lets it go.
func (o *rememberedOrg) newestStatus(cached sfv1.SalesforceOrgStatus) sfv1.SalesforceOrgStatus {
	w := o.written.Load()
	if w == nil {
		return cached
	}
	if !newerCheck(w, &cached) {
		o.written.CompareAndSwap(w, nil)
		return cached
	}
	st := *w.DeepCopy()
	st.UsedBy, st.StageCount = cached.UsedBy, cached.StageCount
	return st
}

// restoreHeld puts back into st the last check's clock and headroom that status did not get
// (holdBack), unless st has a newer check.
func (o *rememberedOrg) restoreHeld(st *sfv1.SalesforceOrgStatus) {
	h := o.held
	if h == nil {
		return
	}
	if st.LastCheckTime != nil && !h.checked.After(st.LastCheckTime.Time) {
		o.held = nil
		return
	}
	st.LastCheckTime, st.LastConnectedTime, st.APIRequests = h.checked, h.connected, h.api
}

// patched remembers a reconcile's status patch: what it held back, whether it checked, and the
// status it wrote (nil: no write).
func (o *rememberedOrg) patched(held *heldCheck, checked bool, written *sfv1.SalesforceOrgStatus) {
	o.held = held
	if !checked {
		return
	}
	o.checkedSinceStart = true
	if written != nil {
		o.written.Store(written.DeepCopy())
	}
}

// newerCheck: status w holds a later check than cached. Status keeps whole seconds, so two checks
// in one second have equal times: then w is newer unless the cache holds it already.
func newerCheck(w, cached *sfv1.SalesforceOrgStatus) bool {
	switch {
	case cached.LastCheckTime == nil || w.LastCheckTime.After(cached.LastCheckTime.Time):
		return true
	case w.LastCheckTime.Before(cached.LastCheckTime):
		return false
	}
	same := *w
	same.UsedBy, same.StageCount = cached.UsedBy, cached.StageCount
	return !equality.Semantic.DeepEqual(same, *cached)
}

// DefaultStatusHeartbeat is how stale status.lastCheckTime may grow while nothing else changes.
const DefaultStatusHeartbeat = time.Hour

// holdBack applies the status write policy to now, the status about to be written over was (the
// status as written). What a user or a tool acts on (conditions, connection, facts, versions,
// lastHandledReconcileAt) is written at once. A check that changed only its own clock
// (lastCheckTime, lastConnectedTime) and the API headroom by less than a step writes nothing
// until lastCheckTime is heartbeat old: holdBack then puts was's values of those three back into
// now and returns the held ones. Every write carries the newest of all.
func holdBack(was sfv1.SalesforceOrgStatus, now *sfv1.SalesforceOrgStatus, heartbeat time.Duration) *heldCheck {
	if was.LastCheckTime == nil || now.LastCheckTime == nil || !now.LastCheckTime.After(was.LastCheckTime.Time) ||
		now.LastCheckTime.Sub(was.LastCheckTime.Time) >= heartbeat || headroomMoved(was.APIRequests, now.APIRequests) {
		return nil
	}
	h := &heldCheck{checked: now.LastCheckTime, connected: now.LastConnectedTime, api: now.APIRequests}
	now.LastCheckTime, now.LastConnectedTime, now.APIRequests = was.LastCheckTime, was.LastConnectedTime, was.APIRequests
	if !equality.Semantic.DeepEqual(was, *now) {
		now.LastCheckTime, now.LastConnectedTime, now.APIRequests = h.checked, h.connected, h.api
		return nil
	}
	return h
}

// headroomMoved: the daily API limit changed, or what is left of it moved by 1% of it or more.
func headroomMoved(was, now *sfv1.APIRequests) bool {
	if was == nil || now == nil {
		return was != now
	}
	step := max(was.Max/100, 1)
	return was.Max != now.Max || now.Remaining-was.Remaining >= step || was.Remaining-now.Remaining >= step
}
