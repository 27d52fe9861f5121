package controllers

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Pure unit tests of the decisions the org reconciler makes; the envtest suite covers the rest.

func TestBackoffDoublesAndNeverExceedsTheInterval(t *testing.T) {
	for _, tc := range []struct {
		failures int32
		limit    time.Duration
		want     time.Duration
	}{
		{1, time.Hour, 10 * time.Second},
		{2, time.Hour, 20 * time.Second},
		{4, time.Hour, 80 * time.Second},
		{30, time.Hour, time.Hour},
		{3, 25 * time.Second, 25 * time.Second},
		{1, 5 * time.Second, 5 * time.Second},
	} {
		if got := backoff(10*time.Second, tc.failures, tc.limit); got != tc.want {
			t.Errorf("backoff(10s, %d, %s) = %s, want %s", tc.failures, tc.limit, got, tc.want)
		}
	}
}

func TestDelayAfterAddsBoundedStableJitter(t *testing.T) {
	r := &SalesforceOrgReconciler{}
	org := &sfv1.SalesforceOrg{Spec: sfv1.SalesforceOrgSpec{CheckInterval: &metav1.Duration{Duration: 10 * time.Minute}}}
	org.UID = "a"
	org.Status.LastCheckTime = &metav1.Time{Time: time.Unix(1_800_000_000, 0)}
	d := r.delayAfter(org)
	if d < 10*time.Minute || d > 11*time.Minute {
		t.Errorf("delay %s outside [interval, interval+10%%]", d)
	}
	if again := r.delayAfter(org); again != d {
		t.Errorf("jitter is not stable across reconciles: %s then %s", d, again)
	}
	spread := map[time.Duration]bool{}
	for _, uid := range []string{"a", "b", "c", "d", "e", "f"} {
		org.UID = types.UID("uid-" + uid)
		spread[r.delayAfter(org)] = true
	}
	if len(spread) < 4 {
		t.Errorf("orgs are not spread out: %d distinct delays of 6", len(spread))
	}
	// After a transient failure the delay is the back-off, capped by the interval.
	org.Status.ConsecutiveFailures = 3
	org.Status.Conditions = []metav1.Condition{{Type: sfv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: sfv1.ReasonServerError}}
	if d := r.delayAfter(org); d != 40*time.Second {
		t.Errorf("back-off after 3 transient failures: %s", d)
	}
	org.Status.Conditions[0].Reason = sfv1.ReasonCredentialRejected
	if d := r.delayAfter(org); d < 10*time.Minute {
		t.Errorf("a terminal failure must wait the interval, not back off: %s", d)
	}
}

func TestFoundType(t *testing.T) {
	for _, tc := range []struct {
		status sfv1.SalesforceOrgStatus
		want   sfv1.OrgType
	}{
		{sfv1.SalesforceOrgStatus{Edition: "Enterprise Edition"}, sfv1.OrgTypeProduction},
		{sfv1.SalesforceOrgStatus{Edition: "Developer Edition"}, sfv1.OrgTypeDeveloperEdition},
		{sfv1.SalesforceOrgStatus{Edition: "Enterprise Edition", IsSandbox: true}, sfv1.OrgTypeSandbox},
		{sfv1.SalesforceOrgStatus{Edition: "Developer Edition", IsScratch: true}, sfv1.OrgTypeScratch},
	} {
		if got := foundType(&sfv1.SalesforceOrg{Status: tc.status}); got != tc.want {
			t.Errorf("foundType(%+v) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

func TestSameOrgID(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"00D5g000004XyZa", "00D5g000004XyZaEAK", true},
		{"00D5g000004XyZaEAK", "00D5g000004XyZaEAK", true},
		{"00D5g000004XyZb", "00D5g000004XyZaEAK", false},
		{"00d5g000004XyZa", "00D5g000004XyZaEAK", false}, // ids are case-sensitive
	} {
		if got := sameOrgID(tc.a, tc.b); got != tc.want {
			t.Errorf("sameOrgID(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestSentence(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&salesforce.Error{Reason: salesforce.ReasonCredentialRejected, Message: "expired access/refresh token (invalid_grant)"}, "Expired access/refresh token (invalid_grant)."},
		{&salesforce.Error{Reason: salesforce.ReasonServerError, Message: "Salesforce answered 503."}, "Salesforce answered 503."},
		{errors.New("boom"), "Boom."},
	} {
		if got := sentence(tc.err); got != tc.want {
			t.Errorf("sentence(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
