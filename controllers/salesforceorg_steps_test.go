package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Table-driven tests of the org reconciler's decisions, step by step, with the controller-runtime
// fake client and a fake Salesforce: a step given an org, its Secret and Salesforce's answer →
// the step's result, and the conditions summarise makes of it.

// wantConds is the conditions a case expects: type → "Status/Reason" ("" : absent).
type wantConds map[string]string

func (w wantConds) check(t *testing.T, org *sfv1.SalesforceOrg) {
	t.Helper()
	for typ, want := range w {
		got := ""
		if c := meta.FindStatusCondition(org.Status.Conditions, typ); c != nil {
			got = string(c.Status) + "/" + c.Reason
		}
		if got != want {
			t.Errorf("condition %s is %q, want %q", typ, got, want)
		}
	}
}

func sfErr(reason salesforce.Reason, retryable bool) error {
	return &salesforce.Error{Reason: reason, Retryable: retryable, Message: "salesforce says " + string(reason)}
}

func TestStepDecisions(t *testing.T) {
	noKey := authSecret("a-auth")
	noKey.Data = map[string][]byte{"other": []byte("x")}
	badURL := authSecret("a-auth")
	badURL.Data[sfv1.DefaultAuthSecretKey] = []byte("https://not-an-auth-url")
	unlabelled := authSecret("a-auth")
	unlabelled.Labels = nil
	inactive := testOrg("a")
	inactive.Spec.State = sfv1.StateInactive
	sandbox := testOrg("a")
	sandbox.Spec.Type = sfv1.OrgTypeSandbox
	sandbox.Spec.AuthSecretRef = sfv1.SecretKeyReference{}
	sandbox.Spec.SandboxOf = &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: "prod"}, SandboxName: "dev"}
	inactiveProd := testOrg("prod")
	inactiveProd.Spec.State = sfv1.StateInactive

	type stepOf func(*SalesforceOrgReconciler) orgStep
	idle := func(r *SalesforceOrgReconciler) orgStep { return r.idle }
	secretInCache := func(r *SalesforceOrgReconciler) orgStep { return r.secretInCache }
	production := func(r *SalesforceOrgReconciler) orgStep { return r.production }
	check := func(r *SalesforceOrgReconciler) orgStep { return r.check }

	cases := []struct {
		name    string
		org     *sfv1.SalesforceOrg
		objs    []client.Object
		answer  error // Salesforce's answer to a check (nil: the org's facts)
		step    stepOf
		outcome orgOutcome
		errKind *orgErrorKind
		reason  string // the error's reason
		conds   wantConds
		// requeue bounds the reconcile's RequeueAfter.
		requeue [2]time.Duration
	}{
		{name: "an Inactive org is not checked", org: inactive, step: idle, outcome: outcomeInactive,
			conds: wantConds{sfv1.ConditionReady: "True/" + sfv1.ReasonInactive, sfv1.ConditionConnected: "Unknown/" + sfv1.ReasonInactive, sfv1.ConditionStalled: ""}},
		{name: "an Active org goes on", org: testOrg("a"), step: idle, outcome: outcomeNext},
		{name: "a missing Secret stalls", org: testOrg("a"), step: secretInCache,
			errKind: ptr(stallingKind), reason: sfv1.ReasonSecretNotFound,
			conds:   wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonSecretNotFound, sfv1.ConditionStalled: "True/" + sfv1.ReasonSecretNotFound, sfv1.ConditionConnected: "False/" + sfv1.ReasonSecretNotFound},
			requeue: [2]time.Duration{10 * time.Minute, 10 * time.Minute}},
		{name: "a Secret in the cache goes on", org: testOrg("a"), objs: []client.Object{authSecret("a-auth")}, step: secretInCache, outcome: outcomeNext},
		{name: "an unlabelled Secret stalls", org: testOrg("a"), objs: []client.Object{unlabelled}, step: check,
			errKind: ptr(stallingKind), reason: sfv1.ReasonSecretNotLabelled,
			conds: wantConds{sfv1.ConditionStalled: "True/" + sfv1.ReasonSecretNotLabelled, sfv1.ConditionConnected: "False/" + sfv1.ReasonSecretNotLabelled}},
		{name: "a Secret without the key stalls", org: testOrg("a"), objs: []client.Object{noKey}, step: check,
			errKind: ptr(stallingKind), reason: sfv1.ReasonSecretKeyNotFound,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonSecretKeyNotFound, sfv1.ConditionStalled: "True/" + sfv1.ReasonSecretKeyNotFound, sfv1.ConditionReconciling: ""}},
		{name: "an invalid auth URL stalls", org: testOrg("a"), objs: []client.Object{badURL}, step: check,
			errKind: ptr(stallingKind), reason: sfv1.ReasonAuthURLInvalid,
			conds: wantConds{sfv1.ConditionConnected: "False/" + sfv1.ReasonAuthURLInvalid}},
		{name: "a connected org is Ready", org: testOrg("a"), objs: []client.Object{authSecret("a-auth")}, step: check,
			outcome: outcomeConnection,
			conds:   wantConds{sfv1.ConditionReady: "True/" + sfv1.ReasonConnected, sfv1.ConditionConnected: "True/" + sfv1.ReasonConnected, sfv1.ConditionStalled: "", sfv1.ConditionReconciling: ""},
			requeue: [2]time.Duration{9 * time.Minute, 11 * time.Minute}},
		{name: "an unreachable Salesforce is retried with back-off", org: testOrg("a"), objs: []client.Object{authSecret("a-auth")}, step: check,
			answer: sfErr(salesforce.ReasonUnreachable, true), errKind: ptr(retryingKind), reason: string(salesforce.ReasonUnreachable),
			conds:   wantConds{sfv1.ConditionReady: "False/Unreachable", sfv1.ConditionReconciling: "True/" + sfv1.ReasonProgressingWithRetry, sfv1.ConditionStalled: "", sfv1.ConditionConnected: "False/Unreachable"},
			requeue: [2]time.Duration{10 * time.Second, 10 * time.Second}},
		{name: "a rejected credential stalls until the next check", org: testOrg("a"), objs: []client.Object{authSecret("a-auth")}, step: check,
			answer: sfErr(salesforce.ReasonCredentialRejected, false), errKind: ptr(stallingKind), reason: string(salesforce.ReasonCredentialRejected),
			conds:   wantConds{sfv1.ConditionStalled: "True/CredentialRejected", sfv1.ConditionConnected: "False/CredentialRejected"},
			requeue: [2]time.Duration{9 * time.Minute, 11 * time.Minute}},
		{name: "a sandbox waits for a missing production org", org: sandbox, step: production,
			errKind: ptr(waitingKind), reason: sfv1.ReasonProductionOrgNotReady,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonProductionOrgNotReady, sfv1.ConditionStalled: "", sfv1.ConditionReconciling: "", sfv1.ConditionConnected: "False/" + sfv1.ReasonProductionOrgNotReady}},
		{name: "a sandbox waits for an Inactive production org", org: sandbox, objs: []client.Object{inactiveProd}, step: production,
			errKind: ptr(waitingKind), reason: sfv1.ReasonProductionOrgNotReady},
		{name: "an org with its own credential needs no production org", org: testOrg("a"), step: production, outcome: outcomeNext},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, append(tc.objs, tc.org.DeepCopy())...)
			if tc.answer != nil {
				h.checker.err = tc.answer
			}
			org := h.org(t, tc.org.Name)
			rc := &orgReconcile{org: org, memory: h.r.memory.of(org.UID)}
			res, err := tc.step(h.r)(context.Background(), rc)
			oe := asOrgError(err)
			switch {
			case tc.errKind == nil && oe != nil:
				t.Fatalf("step failed: %v", err)
			case tc.errKind == nil && res.outcome != tc.outcome:
				t.Fatalf("outcome %d, want %d", res.outcome, tc.outcome)
			case tc.errKind != nil && (oe == nil || oe.kind != *tc.errKind || oe.reason != tc.reason):
				t.Fatalf("got %#v, want an error of kind %d with reason %s", oe, *tc.errKind, tc.reason)
			}
			if tc.errKind == nil && res.outcome == outcomeNext {
				return // the next step decides
			}
			result, _ := h.r.summarise(context.Background(), rc, res, err)
			tc.conds.check(t, org)
			if lo, hi := tc.requeue[0], tc.requeue[1]; hi > 0 && (result.RequeueAfter < lo || result.RequeueAfter > hi) {
				t.Errorf("requeue after %s, want within [%s, %s]", result.RequeueAfter, lo, hi)
			}
			if org.Status.ObservedGeneration != org.Generation {
				t.Errorf("observedGeneration %d, want %d: the org was handled", org.Status.ObservedGeneration, org.Generation)
			}
		})
	}
}

// summarise alone: what the steps returned and found → the conditions, the result and the error.
func TestSummariseDecidesTheConditions(t *testing.T) {
	connected := func(o *sfv1.SalesforceOrg) {
		o.Status = checkedOrg(o.Name, time.Minute, "1").Status
	}
	facts := &salesforce.OrgFacts{OrgID: "00D000000000001AAA", Username: "a@b.c", Edition: "Enterprise Edition"}
	cases := []struct {
		name    string
		setup   func(*sfv1.SalesforceOrg, *orgReconcile)
		res     stepResult
		err     error
		conds   wantConds
		wantErr bool
		handled bool
	}{
		{name: "deleting", res: stepResult{outcome: outcomeDeleting}, handled: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonProgressing}},
		{name: "suspended implementation", res: stepResult{outcome: outcomeSuspended}, handled: true,
			setup: func(_ *sfv1.SalesforceOrg, rc *orgReconcile) {
				rc.in.impl = &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Name: "impl"}}
			},
			conds: wantConds{sfv1.ConditionReady: "True/" + sfv1.ReasonImplementationSuspended, sfv1.ConditionConnected: "Unknown/" + sfv1.ReasonImplementationSuspended}},
		{name: "never checked", res: stepResult{outcome: outcomeConnection}, handled: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonProgressing, sfv1.ConditionReconciling: ""}},
		{name: "not due, last check connected", setup: func(o *sfv1.SalesforceOrg, _ *orgReconcile) { connected(o) },
			res: stepResult{outcome: outcomeConnection, requeueAfter: time.Minute}, handled: true,
			conds: wantConds{sfv1.ConditionReady: "True/" + sfv1.ReasonConnected}},
		{name: "the pin differs from the org found", setup: func(o *sfv1.SalesforceOrg, rc *orgReconcile) {
			o.Spec.OrgID = "00D000000000009AAA"
			rc.found.check = &checkRecord{at: time.Now(), secretVersion: ptr("1"), facts: facts}
		}, res: stepResult{outcome: outcomeConnection, requeueAfter: untilNextCheck}, handled: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonOrgIDChanged, sfv1.ConditionStalled: "True/" + sfv1.ReasonOrgIDChanged, sfv1.ConditionConnected: "True/" + sfv1.ReasonConnected}},
		{name: "the type differs from the org found", setup: func(o *sfv1.SalesforceOrg, rc *orgReconcile) {
			o.Spec.Type = sfv1.OrgTypeSandbox
			rc.found.check = &checkRecord{at: time.Now(), secretVersion: ptr("1"), facts: facts}
		}, res: stepResult{outcome: outcomeConnection, requeueAfter: untilNextCheck}, handled: true,
			conds: wantConds{sfv1.ConditionStalled: "True/" + sfv1.ReasonTypeMismatch}},
		{name: "a second default Dev Hub", setup: func(o *sfv1.SalesforceOrg, rc *orgReconcile) {
			connected(o)
			o.Spec.DefaultDevHub = true
			rc.in.defaultDevHub = "other"
		}, res: stepResult{outcome: outcomeConnection, requeueAfter: time.Minute}, handled: true,
			conds: wantConds{sfv1.ConditionStalled: "True/" + sfv1.ReasonDuplicateDefaultDevHub}},
		{name: "a missing implementation", setup: func(o *sfv1.SalesforceOrg, rc *orgReconcile) {
			connected(o)
			o.Spec.ImplementationRef = &sfv1.LocalObjectReference{Name: "impl"}
			rc.in.implName = "impl"
		}, res: stepResult{outcome: outcomeConnection, requeueAfter: time.Minute}, handled: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonImplementationNotFound, sfv1.ConditionStalled: ""}},
		{name: "an externally managed Secret", setup: func(o *sfv1.SalesforceOrg, rc *orgReconcile) {
			connected(o)
			rc.found.secretWritable = &secretWritability{status: metav1.ConditionFalse, reason: sfv1.ReasonSecretManagedExternally, msg: "Managed by Flux."}
		}, res: stepResult{outcome: outcomeConnection, requeueAfter: time.Minute}, handled: true,
			conds: wantConds{sfv1.ConditionSecretWritable: "False/" + sfv1.ReasonSecretManagedExternally, sfv1.ConditionReady: "True/" + sfv1.ReasonConnected}},
		{name: "an API read failed", err: unhandledErr(errors.New("etcd is down"), "Listing failed"), wantErr: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonProgressing, sfv1.ConditionReconciling: "True/" + sfv1.ReasonProgressing}},
		{name: "an error of no known type", err: errors.New("boom"), wantErr: true,
			conds: wantConds{sfv1.ConditionReady: "False/" + sfv1.ReasonProgressing}},
		{name: "a stale cache writes nothing", err: &orgError{kind: staleCacheKind, msg: "conflict", cause: errors.New("conflict")}, wantErr: true,
			conds: wantConds{sfv1.ConditionReady: "", sfv1.ConditionReconciling: ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			org := testOrg("a")
			rc := &orgReconcile{org: org, memory: &rememberedOrg{}}
			if tc.setup != nil {
				tc.setup(org, rc)
			}
			r := &SalesforceOrgReconciler{}
			_, err := r.summarise(context.Background(), rc, tc.res, tc.err)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			tc.conds.check(t, org)
			if handled := org.Status.ObservedGeneration == org.Generation; handled != tc.handled {
				t.Errorf("observedGeneration %d (generation %d), want handled: %v", org.Status.ObservedGeneration, org.Generation, tc.handled)
			}
		})
	}
}

// A Salesforce failure counts toward the back-off, and its Ready message says when it is retried.
func TestSummariseBacksOffRepeatedSalesforceFailures(t *testing.T) {
	org := testOrg("a")
	r := &SalesforceOrgReconciler{RetryBase: 10 * time.Second}
	var got []time.Duration
	for range 3 {
		rc := &orgReconcile{org: org, memory: &rememberedOrg{}}
		rc.found.check = &checkRecord{at: time.Now(), secretVersion: ptr("1"), salesforceFailed: true}
		res, _ := r.summarise(context.Background(), rc, nextStep, salesforceFailure(sfErr(salesforce.ReasonServerError, true)))
		got = append(got, res.RequeueAfter)
	}
	if got[0] != 10*time.Second || got[1] != 20*time.Second || got[2] != 40*time.Second {
		t.Fatalf("back-off %v, want 10s, 20s, 40s", got)
	}
	if org.Status.ConsecutiveFailures != 3 {
		t.Fatalf("consecutiveFailures %d, want 3", org.Status.ConsecutiveFailures)
	}
	if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionReady); c == nil || !strings.HasSuffix(c.Message, "Retrying in 40s.") {
		t.Fatalf("Ready says %v, want it to end with when it is retried", c)
	}
	if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected); c == nil || strings.Contains(c.Message, "Retrying") {
		t.Fatalf("Connected says %v, want the failure alone", c)
	}
}

func ptr[T any](v T) *T { return &v }
