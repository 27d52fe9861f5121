package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// What the steps of an org's reconcile return, and the one function that turns it into status.
// A step never sets a condition: it returns a stepResult (how the reconcile goes on) or an
// *orgError (what went wrong), and records what it found in orgReconcile.found; summarise decides
// every condition and reason from those, at the end of the reconcile, right before the one patch.

// stepResult is what a step of the org reconciler returns when it did not fail.
type stepResult struct {
	// outcome is how the reconcile ended; outcomeNext runs the next step.
	outcome orgOutcome
	// requeueAfter is when the org is reconciled again (0: only when a watched object changes;
	// untilNextCheck: when its next check is due, as summarise computes it).
	requeueAfter time.Duration
}

// orgOutcome is how a reconcile that did not fail ended.
type orgOutcome int

const (
	// outcomeNext: this step is done; the next one runs.
	outcomeNext orgOutcome = iota
	// outcomeDeleting: the finalizer was released.
	outcomeDeleting
	// outcomeDeletionReplayed: the operator deleted the org, as a refused deletion had asked.
	outcomeDeletionReplayed
	// outcomeInactive, outcomeInUseWhileInactive, outcomeSuspended: the org is out of use and not checked.
	outcomeInactive
	outcomeInUseWhileInactive
	outcomeSuspended
	// outcomeConnection: Ready follows the connection (the last check's, or this one's) and
	// what it found against what spec declares.
	outcomeConnection
)

// nextStep is the result of a step after which the next step runs.
var nextStep = stepResult{outcome: outcomeNext}

// untilNextCheck as a requeueAfter means: when the org's next check is due, counted from the check
// this reconcile recorded (summarise knows it only once the check is in status).
const untilNextCheck time.Duration = -1

// orgErrorKind says what a failed step means for the org, and decides the requeue.
type orgErrorKind int

const (
	// stallingKind: only a person can fix the input; checked again after `after` (0: only when a
	// watched object changes).
	stallingKind orgErrorKind = iota
	// retryingKind: a transient failure, retried after `after`, with Reconciling=True.
	retryingKind
	// waitingKind: the org waits for another object to change (watches bring it back), and is
	// reconciled again after `after` (0: only then).
	waitingKind
	// unhandledKind: the org could not be evaluated at all (an API call failed): observedGeneration
	// is not advanced, and controller-runtime's back-off retries it.
	unhandledKind
	// staleCacheKind: the cache is behind the API server (a conflict): nothing is written, and the
	// next attempt reads the new version.
	staleCacheKind
)

// orgError is the one error type that reaches summarise. Salesforce's own errors are wrapped into
// it where they enter (the check step), and so are API errors.
type orgError struct {
	kind   orgErrorKind
	reason string
	msg    string
	after  time.Duration
	cause  error
	// disconnects: the failure is the org's connection's: Connected=False with reason and msg.
	disconnects bool
	// verdictOn is set when the error is a verdict on the credential in the auth Secret at
	// this resourceVersion (a missing key, an invalid auth URL, a Secret the operator may not
	// write): the org is checked again only when that Secret changes.
	verdictOn *string
}

func (e *orgError) Error() string {
	if e.kind == unhandledKind || e.kind == staleCacheKind {
		return e.msg
	}
	return e.reason + ": " + e.msg
}

func (e *orgError) Unwrap() error { return e.cause }

func stallingErr(after time.Duration, reason, format string, args ...any) *orgError {
	return &orgError{kind: stallingKind, reason: reason, msg: fmt.Sprintf(format, args...), after: after}
}

func retryingErr(after time.Duration, reason, format string, args ...any) *orgError {
	return &orgError{kind: retryingKind, reason: reason, msg: fmt.Sprintf(format, args...), after: after}
}

func waitingErr(after time.Duration, reason, format string, args ...any) *orgError {
	return &orgError{kind: waitingKind, reason: reason, msg: fmt.Sprintf(format, args...), after: after}
}

// unhandledErr wraps an API error: "<what failed>: <err>".
func unhandledErr(err error, format string, args ...any) *orgError {
	return &orgError{kind: unhandledKind, reason: sfv1.ReasonProgressing, msg: fmt.Sprintf(format, args...) + ": " + err.Error(), cause: err}
}

// disconnected marks e as the connection's failure (Connected=False).
func (e *orgError) disconnected() *orgError {
	e.disconnects = true
	return e
}

// credentialUnusable is the verdict that the credential in the auth Secret (at secretVersion)
// cannot be used: it stalls until a person fixes the Secret, whose change wakes the org.
func credentialUnusable(org *sfv1.SalesforceOrg, secretVersion, reason, format string, args ...any) *orgError {
	e := stallingErr(checkIntervalOf(org), reason, format, args...).disconnected()
	e.verdictOn = &secretVersion
	return e
}

// salesforceFailure wraps a failed check's Salesforce error: retried with back-off when it is
// transient, else stalled until the next check.
func salesforceFailure(err error) *orgError {
	kind := stallingKind
	if salesforce.IsRetryable(err) {
		kind = retryingKind
	}
	return &orgError{kind: kind, reason: reasonOf(err), msg: sentence(err), after: untilNextCheck, cause: err, disconnects: true}
}

// asOrgError is err as the one error type: an error of no known type is unhandled.
func asOrgError(err error) *orgError {
	if err == nil {
		return nil
	}
	var oe *orgError
	if errors.As(err, &oe) {
		return oe
	}
	return &orgError{kind: unhandledKind, reason: sfv1.ReasonProgressing, msg: err.Error(), cause: err}
}

// sentence is a client error as condition messages want it: the human text without the
// "salesforce: Reason:" prefix (the reason is the condition's), capitalised, ending in a period.
func sentence(err error) string {
	msg := err.Error()
	var se *salesforce.Error
	if errors.As(err, &se) && se.Message != "" {
		msg = se.Message
	}
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

func reasonOf(err error) string {
	if err == nil {
		return sfv1.ReasonConnected
	}
	if r := salesforce.ReasonOf(err); r != "" {
		return string(r)
	}
	return sfv1.ReasonServerError
}

// summarise is the one place that decides the org's conditions: from the steps' result or error,
// and what they found, it writes the check (lastCheckTime, the facts, Connected), SecretWritable,
// and the kstatus trio (Ready, Reconciling, Stalled), and returns the reconcile's result. It reads
// nothing from the API server and calls nothing.
func (r *SalesforceOrgReconciler) summarise(ctx context.Context, rc *orgReconcile, res stepResult, err error) (ctrl.Result, error) {
	org := rc.org
	oe := asOrgError(err)
	if oe != nil && oe.kind == staleCacheKind {
		return ctrl.Result{}, oe.cause
	}
	if names := rc.found.usedBy; names != nil {
		org.Status.UsedBy, org.Status.StageCount = *names, int32(len(*names))
		org.Status.CredentialSource = org.Source()
	}
	if v := rc.found.reconcileRequest; v != "" {
		org.Status.LastHandledReconcileAt = v
	}
	if n := rc.found.sandboxAuthSecret; n != "" {
		org.Status.SandboxAuthSecret = n
	}
	r.recordCheck(ctx, rc, oe)
	switch {
	case oe != nil && oe.disconnects:
		r.setDisconnected(ctx, org, oe.reason, oe.msg)
	case oe == nil && isIdle(res.outcome):
		idle := idleSummary(rc, res.outcome)
		org.Status.Connection = sfv1.ConnectionUnknown
		setCondition(org, sfv1.ConditionConnected, metav1.ConditionUnknown, idle.reason, idle.message)
		forgetOrgMetrics(org.Namespace, org.Name) // not checked: no series, so no alert
	}
	if w := rc.found.secretWritable; w != nil {
		r.recordWritable(ctx, org, w)
	}

	sum, result, retErr, handled := r.conclude(rc, res, oe)
	gen := org.Status.ObservedGeneration
	if handled {
		gen = org.Generation
		org.Status.ObservedGeneration = gen
	}
	setKstatus(&org.Status.Conditions, gen, sum)
	return result, retErr
}

// conclude maps the steps' end to the summary for setKstatus, the result, the error to return,
// and whether the reconcile handled the object's generation.
func (r *SalesforceOrgReconciler) conclude(rc *orgReconcile, res stepResult, oe *orgError) (summary, ctrl.Result, error, bool) {
	org := rc.org
	if oe == nil {
		switch res.outcome {
		case outcomeDeleting:
			return notReady(sfv1.ReasonProgressing, "Deleting."), ctrl.Result{}, nil, true
		case outcomeDeletionReplayed:
			return notReady(sfv1.ReasonProgressing, "Deleting, as requested at %s.", rc.in.deletionRequested), ctrl.Result{}, nil, true
		case outcomeInactive, outcomeInUseWhileInactive, outcomeSuspended:
			return idleSummary(rc, res.outcome), ctrl.Result{}, nil, true
		}
		after := res.requeueAfter
		if after == untilNextCheck {
			after = r.nextCheckIn(org, time.Now())
		}
		sum, failed := r.readiness(rc, after)
		if failed == nil {
			return sum, ctrl.Result{RequeueAfter: after}, nil, true
		}
		oe = failed
	}
	after, msg := oe.after, oe.msg
	if after == untilNextCheck {
		after = r.nextCheckIn(org, time.Now())
		if oe.kind == retryingKind {
			after = backoff(r.retryBase(), org.Status.ConsecutiveFailures, checkIntervalOf(org))
			msg = fmt.Sprintf("%s Retrying in %s.", msg, after.Round(time.Second))
		}
	}
	switch oe.kind {
	case stallingKind:
		return stalled(oe.reason, "%s", msg), ctrl.Result{RequeueAfter: after}, nil, true
	case retryingKind:
		return retrying(oe.reason, "%s", msg), ctrl.Result{RequeueAfter: after}, nil, true
	case waitingKind:
		return notReady(oe.reason, "%s", msg), ctrl.Result{RequeueAfter: after}, nil, true
	}
	return retrying(sfv1.ReasonProgressing, "%s", msg), ctrl.Result{}, oe.cause, false
}

func isIdle(o orgOutcome) bool {
	return o == outcomeInactive || o == outcomeInUseWhileInactive || o == outcomeSuspended
}

// idleSummary says why an org out of use is not checked.
func idleSummary(rc *orgReconcile, o orgOutcome) summary {
	switch o {
	case outcomeInUseWhileInactive:
		return notReady(sfv1.ReasonInUseWhileInactive,
			"The org is Inactive but mapped to active pipeline stages %s: set them Inactive or map them to another org, or set this org Active.",
			index.StageNames(rc.in.holders))
	case outcomeSuspended:
		return readyTrue(sfv1.ReasonImplementationSuspended,
			"SalesforceImplementation %q is suspended: the org is not checked.", rc.in.impl.Name)
	}
	return readyTrue(sfv1.ReasonInactive, "The org is Inactive: it is not checked.")
}

// readiness derives Ready from what status knows, without calling anything: the connection's
// condition, then what spec declares against what the check found. after is when the next check is due.
func (r *SalesforceOrgReconciler) readiness(rc *orgReconcile, after time.Duration) (summary, *orgError) {
	org := rc.org
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	switch {
	case c == nil || c.Status == metav1.ConditionUnknown:
		return notReady(sfv1.ReasonProgressing, "Not checked yet."), nil
	case c.Status != metav1.ConditionTrue && isTransientReason(c.Reason):
		return summary{}, retryingErr(after, c.Reason, "%s", c.Message)
	case c.Status != metav1.ConditionTrue:
		return summary{}, stallingErr(after, c.Reason, "%s", c.Message)
	}
	if pin := org.Spec.OrgID; pin != "" && !sameOrgID(pin, org.Status.OrgID) {
		return summary{}, stallingErr(after, sfv1.ReasonOrgIDChanged,
			"The credential reaches org %s, but spec.orgId pins %s: a sandbox refresh gives a sandbox a new org id, or the auth URL is for another org. If the new org is right, set spec.orgId: %s; otherwise put the right auth URL in Secret %q.",
			org.Status.OrgID, pin, org.Status.OrgID, org.CredentialSecret())
	}
	if want, found := org.Spec.Type, foundType(org); want != found {
		return summary{}, stallingErr(after, sfv1.ReasonTypeMismatch,
			"spec.type is %s but the org is a %s (%s): set spec.type: %s, or point the Secret at a %s org.",
			want, found, org.Status.Edition, found, want)
	}
	if org.Spec.DevHub && !org.Status.IsDevHub {
		return summary{}, stallingErr(after, sfv1.ReasonNotADevHub,
			"spec.devHub is true but the org cannot query ScratchOrgInfo: enable Dev Hub in the org's Setup, or set devHub: false.")
	}
	if holder := rc.in.defaultDevHub; org.Spec.DefaultDevHub && holder != "" && holder != org.Name {
		return summary{}, stallingErr(after, sfv1.ReasonDuplicateDefaultDevHub,
			"SalesforceOrg %q is already the default Dev Hub of namespace %q: set defaultDevHub: false on one of them.",
			holder, org.Namespace)
	}
	if org.Spec.ImplementationRef != nil && rc.in.impl == nil {
		return summary{}, waitingErr(after, sfv1.ReasonImplementationNotFound,
			"Connected, but spec.implementationRef names SalesforceImplementation %q, which does not exist: create it or remove implementationRef.", rc.in.implName)
	}
	return readyTrue(sfv1.ReasonConnected, "%s", c.Message), nil
}

// recordCheck writes the check this reconcile made, if any: when, of which Secret version, and
// what it found (the facts, Connected=True) or how often it failed in a row.
func (r *SalesforceOrgReconciler) recordCheck(ctx context.Context, rc *orgReconcile, oe *orgError) {
	chk := rc.found.check
	if chk == nil {
		return
	}
	org := rc.org
	org.Status.LastCheckTime = &metav1.Time{Time: chk.at}
	if chk.secretVersion != nil {
		org.Status.CheckedSecretVersion = *chk.secretVersion
	}
	switch {
	case chk.facts != nil && oe == nil:
		r.recordFacts(ctx, rc, chk.facts, chk.at)
	case chk.salesforceFailed:
		org.Status.ConsecutiveFailures++
	}
}

// recordFacts writes what a successful check learned. Without a pin, a new org id (a sandbox
// refresh) is accepted and announced; with spec.orgId, readiness reports the mismatch.
func (r *SalesforceOrgReconciler) recordFacts(ctx context.Context, rc *orgReconcile, f *salesforce.OrgFacts, now time.Time) {
	org := rc.org
	if prev := org.Status.OrgID; prev != "" && !sameOrgID(prev, f.OrgID) && rc.in.production != nil {
		r.Notify.normal(ctx, org, sfv1.ReasonSandboxRefreshed, "Check",
			"Sandbox refreshed: re-authorised through SalesforceOrg %q, org id %s → %s.", rc.in.production.Name, prev, f.OrgID)
	} else if prev != "" && !sameOrgID(prev, f.OrgID) && org.Spec.OrgID == "" {
		r.Notify.warning(ctx, org, sfv1.ReasonOrgIDChanged, "Check",
			"The credential now reaches org %s, not %s as before: a sandbox refresh gives a sandbox a new org id. Set spec.orgId to pin the org you expect.",
			f.OrgID, prev)
	}
	// Events mark changes of an established connection: lost (a Warning with its reason) and
	// regained (this one). The first connection is in status alone (the Ready and Connected
	// conditions say "Connected to org … as …"), so that onboarding thousands of orgs does not
	// write thousands of events, nor hold them in the recorder's series cache.
	regained := org.Status.Connection == sfv1.ConnectionDisconnected
	org.Status.Connection = sfv1.ConnectionConnected
	org.Status.ConsecutiveFailures = 0
	org.Status.LastConnectedTime = &metav1.Time{Time: now}
	org.Status.OrgID = f.OrgID
	org.Status.Username = f.Username
	org.Status.InstanceURL = f.InstanceURL
	org.Status.InstanceName = f.InstanceName
	org.Status.Edition = f.Edition
	org.Status.IsSandbox = f.IsSandbox
	org.Status.IsScratch = f.IsScratch
	org.Status.IsDevHub = f.IsDevHub
	org.Status.NamespacePrefix = f.NamespacePrefix
	org.Status.TrialExpirationDate = nil
	if f.TrialExpirationDate != nil {
		org.Status.TrialExpirationDate = &metav1.Time{Time: *f.TrialExpirationDate}
	}
	org.Status.APIRequests = &sfv1.APIRequests{Max: f.APIRequestsMax, Remaining: f.APIRequestsRemaining}
	msg := fmt.Sprintf("Connected to org %s as %s.", f.OrgID, f.Username)
	setCondition(org, sfv1.ConditionConnected, metav1.ConditionTrue, sfv1.ReasonConnected, msg)
	orgMetrics.connectedNow(org.Namespace, org.Name, f.APIRequestsRemaining, f.APIRequestsMax, now)
	if regained {
		r.Notify.normal(ctx, org, sfv1.ReasonConnected, "Check", "%s", msg)
	}
}

// setDisconnected marks the connection failed with reason, warning only on a change of reason.
func (r *SalesforceOrgReconciler) setDisconnected(ctx context.Context, org *sfv1.SalesforceOrg, reason, msg string) {
	prev := findCondition(org.Status.Conditions, sfv1.ConditionConnected)
	org.Status.Connection = sfv1.ConnectionDisconnected
	orgMetrics.disconnected(org.Namespace, org.Name)
	warn := prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != reason
	setCondition(org, sfv1.ConditionConnected, metav1.ConditionFalse, reason, msg)
	if warn {
		r.Notify.warning(ctx, org, reason, "Check", "%s", msg)
	}
}

// recordWritable sets the SecretWritable condition: can a rotated refresh token be saved?
func (r *SalesforceOrgReconciler) recordWritable(ctx context.Context, org *sfv1.SalesforceOrg, w *secretWritability) {
	prev := findCondition(org.Status.Conditions, sfv1.ConditionSecretWritable)
	setCondition(org, sfv1.ConditionSecretWritable, w.status, w.reason, w.msg)
	if w.status == metav1.ConditionFalse && (prev == nil || prev.Reason != w.reason) {
		r.Notify.warning(ctx, org, w.reason, "ProbeSecret", "%s", w.msg)
	}
}

// foundType is the OrgType the facts in status describe.
func foundType(org *sfv1.SalesforceOrg) sfv1.OrgType {
	switch {
	case org.Status.IsScratch:
		return sfv1.OrgTypeScratch
	case org.Status.IsSandbox:
		return sfv1.OrgTypeSandbox
	case org.Status.Edition == "Developer Edition":
		return sfv1.OrgTypeDeveloperEdition
	}
	return sfv1.OrgTypeProduction
}

// sameOrgID compares org ids on their case-sensitive 15-character form.
func sameOrgID(a, b string) bool {
	if len(a) >= 15 && len(b) >= 15 {
		return a[:15] == b[:15]
	}
	return a == b
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		cp := *c
		return &cp
	}
	return nil
}

func setCondition(org *sfv1.SalesforceOrg, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&org.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: org.Generation,
	})
}
