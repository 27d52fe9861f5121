package controllers

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// When is an org's next check due? Everything here is decided from the org's status (what any
// leader can read), this manager's memory of its own last writes, and the cached metadata of the
// auth Secret: no Secret is read and nothing is called to decide it.

// due ends the reconcile when no check is due: Ready then follows the last check.
func (r *SalesforceOrgReconciler) due(_ context.Context, rc *orgReconcile) (stepResult, error) {
	if untilDue := r.dueIn(rc.org, rc.in.cachedSecretVersion, rc.memory.checkedSinceStart, time.Now()); untilDue > 0 {
		return stepResult{outcome: outcomeConnection, requeueAfter: untilDue}, nil
	}
	return nextStep, nil
}

// dueIn is zero when a check is due now, else how long until it is. secretVersion is the auth
// Secret's resourceVersion as the metadata cache has it.
func (r *SalesforceOrgReconciler) dueIn(org *sfv1.SalesforceOrg, secretVersion string, checkedSinceStart bool, now time.Time) time.Duration {
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	switch {
	case c == nil, c.Status == metav1.ConditionUnknown, // never checked, or back from Inactive or suspended
		c.Reason == sfv1.ReasonProductionOrgNotReady, // waited for its production org, which is ready now
		org.Status.LastCheckTime == nil,
		org.Status.ObservedGeneration != org.Generation,
		org.Status.CheckedSecretVersion != secretVersion, // a new credential is checked at once
		requestedReconcile(org):
		return 0
	}
	dueAt := org.Status.LastCheckTime.Add(r.delayAfter(org))
	if !checkedSinceStart && dueAt.Before(now) {
		// Overdue when this manager first sees the org (a restart, a new leader): spread these
		// first checks over the interval instead of checking every org at once.
		dueAt = r.started().Add(spread(org, checkIntervalOf(org)))
	}
	if d := dueAt.Sub(now); d > 0 {
		return d
	}
	return 0
}

// started is when this manager started checking: the first call (Reconcile makes it first), unless
// set before.
func (r *SalesforceOrgReconciler) started() time.Time {
	r.start.Do(func() {
		if r.startedAt.IsZero() {
			r.startedAt = time.Now()
		}
	})
	return r.startedAt
}

func requestedReconcile(org *sfv1.SalesforceOrg) bool {
	v, ok := org.Annotations[sfv1.ReconcileRequestedAtAnnotation]
	return ok && v != org.Status.LastHandledReconcileAt
}

// delayAfter is the wait after the last check: back-off after a transient failure, else the
// interval with a jitter of up to a tenth, fixed per org and check so reconciles don't drift it.
func (r *SalesforceOrgReconciler) delayAfter(org *sfv1.SalesforceOrg) time.Duration {
	interval := checkIntervalOf(org)
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	if c != nil && c.Status == metav1.ConditionFalse && isTransientReason(c.Reason) && org.Status.ConsecutiveFailures > 0 {
		return backoff(r.retryBase(), org.Status.ConsecutiveFailures, interval)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", org.UID, org.Status.LastCheckTime.Unix())
	return interval + time.Duration(h.Sum64()%uint64(interval/10+1))
}

// spread is a stable offset in [0, interval) for the org: where its first check after a start falls.
func spread(org *sfv1.SalesforceOrg, interval time.Duration) time.Duration {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s", org.UID)
	return time.Duration(h.Sum64() % uint64(interval))
}

func (r *SalesforceOrgReconciler) nextCheckIn(org *sfv1.SalesforceOrg, now time.Time) time.Duration {
	return max(org.Status.LastCheckTime.Add(r.delayAfter(org)).Sub(now), time.Second)
}

// backoff doubles from base per failure and never exceeds limit.
func backoff(base time.Duration, failures int32, limit time.Duration) time.Duration {
	d := base
	for i := int32(1); i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func isTransientReason(reason string) bool {
	switch reason {
	case sfv1.ReasonUnreachable, sfv1.ReasonServerError, sfv1.ReasonRateLimited, sfv1.ReasonSecretUpdateFailed, sfv1.ReasonSandboxActivating:
		return true
	}
	return false
}

// checkIntervalOf is the org's spec.checkInterval, 10m by default.
func checkIntervalOf(org *sfv1.SalesforceOrg) time.Duration {
	if org.Spec.CheckInterval != nil && org.Spec.CheckInterval.Duration >= time.Second {
		return org.Spec.CheckInterval.Duration
	}
	return 10 * time.Minute
}

func (r *SalesforceOrgReconciler) retryBase() time.Duration {
	if r.RetryBase > 0 {
		return r.RetryBase
	}
	return 10 * time.Second
}

func (r *SalesforceOrgReconciler) checkTimeout() time.Duration {
	if r.CheckTimeout > 0 {
		return r.CheckTimeout
	}
	return 2 * time.Minute
}
