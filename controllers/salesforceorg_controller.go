package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// OrgFinalizer keeps a SalesforceOrg until no Active PipelineStage maps to it: the backstop for
// the admission webhook, which can be bypassed.
const OrgFinalizer = "salesforce.sfops.io/in-use-protection"

// Checker is the part of the Salesforce client the org reconciler uses. Every use of a stored
// credential goes through its chain (salesforce.Chain), the one owner of its refresh token.
type Checker interface {
	CheckChain(ctx context.Context, ch salesforce.Chain, storedVersion string) (*salesforce.CheckResult, error)
	AuthorizeSandbox(ctx context.Context, prod salesforce.Chain, storedVersion, sandboxName string) (*salesforce.SandboxAuthorization, error)
	Forget(chainID string)
	// Access and RevokeAccess serve hand-outs (SalesforceAccessToken) through the same chains.
	Access(ctx context.Context, ch salesforce.Chain, storedVersion string) (salesforce.Access, error)
	RevokeAccess(ctx context.Context, ch salesforce.Chain, instanceURL, token string) error
}

// SalesforceOrgReconciler keeps a SalesforceOrg's status true: it validates the credential,
// checks the connection every spec.checkInterval, saves rotated refresh tokens, and records the
// org's facts.
type SalesforceOrgReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server: Secret data is never cached.
	APIReader client.Reader
	// SecretMetadata reads Secrets' metadata from the manager's metadata-only cache, to decide
	// whether a check is due without reading the Secret.
	SecretMetadata client.Reader
	Salesforce     Checker
	Notify         notifier

	// RetryBase is the first back-off after a transient failure (doubling, capped at the
	// check interval). Zero means 10s.
	RetryBase time.Duration
	// CheckTimeout bounds one check. Zero means 2m.
	CheckTimeout time.Duration
	// MaxConcurrentReconciles bounds parallel reconciles. Zero means 8.
	MaxConcurrentReconciles int
	// MaxConcurrentChecks bounds the calls to Salesforce in flight, across reconciles (zero: no
	// bound but the reconciles'). With more reconciles than checks, a reconcile reads and writes
	// the API server while others wait on Salesforce.
	MaxConcurrentChecks int
	// StatusHeartbeat is how stale status.lastCheckTime (with lastConnectedTime and apiRequests)
	// may grow while nothing else in status changes: a check that changes nothing a user acts on
	// writes no status until then. Zero means DefaultStatusHeartbeat.
	StatusHeartbeat time.Duration

	// startedAt is when this manager started checking (its first reconcile: after the caches
	// synced, and after it won the leader election): overdue first checks are spread from here.
	// Set once, through start.
	startedAt time.Time
	start     sync.Once
	// memory is what this manager remembers of its own work, by org UID (*orgMemory). A key's
	// reconciles never run at once (the work queue serialises them), so an entry needs no lock.
	memory sync.Map
	// secretUsers names the orgs each credential Secret serves (set up with the manager).
	secretUsers *secretUsers
	// claims are the exchange claims this process holds, released when it stops.
	claims claimRegistry
	// ownWrites are this process's latest Secret writes, whose watch events wake nobody.
	ownWrites ownSecretWrites
}

// orgMemory is what this manager remembers of one org between reconciles. It is kept small:
// one exists for every org the manager watches.
type orgMemory struct {
	// checkedBefore: this manager has checked the org since it started.
	checkedBefore bool
	// written is the status this manager last wrote after a check, until the cache has it: the
	// cache can serve an older one for a moment (our own Secret write-back wakes the org at
	// once), and the newer one wins. The org's update event lets it go (cacheCaughtUp), so it
	// costs memory only for a moment.
	written atomic.Pointer[sfv1.SalesforceOrgStatus]
	// held is the last check's clock and API headroom when the status policy held them back
	// (see holdBack): the next check is scheduled from them, not from the older status.
	held *heldCheck
	// chainID is the org's credential chain in the Salesforce client, forgotten when the org goes.
	chainID string
	// deferredDeletion is the deletion request last announced by an event.
	deferredDeletion string
}

// heldCheck is what a check changed that status shows only at the heartbeat.
type heldCheck struct {
	checked, connected *metav1.Time
	api                *sfv1.APIRequests
}

// orgScope is everything one reconcile of an org works from, loaded once.
type orgScope struct {
	org *sfv1.SalesforceOrg
	// holders are the Active stages (not being deleted) that map to the org.
	holders []sfv1.PipelineStage
	// impl is the org's implementation; implNamed its name, also when it does not exist.
	impl      *sfv1.SalesforceImplementation
	implNamed string
	mem       *orgMemory
	// checkedBefore: this manager has checked the org since it started.
	checkedBefore bool
	// checked: this reconcile ran a check (its outcome is in status).
	checked bool
	// secret is the auth Secret as this reconcile last read or wrote it.
	secret *corev1.Secret
	// prod is a sandboxOf org's production org, Active and Connected.
	prod *sfv1.SalesforceOrg
	// writtenSecretVersion is the auth Secret's version after this reconcile wrote it.
	writtenSecretVersion string
	// handOut: the scope of a hand-out's use of the chain (see accessScope), which never
	// authorises a sandbox afresh.
	handOut bool
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile runs the fixed prologue, then the phases in order:
// usage → delete | implementation → idle → due? → credential (and rotation) → check → summarise.
func (r *SalesforceOrgReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	r.claims.active.Add(1)
	defer r.claims.active.Add(-1)
	r.started()
	org := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, req.NamespacedName, org); err != nil {
		if apierrors.IsNotFound(err) {
			forgetOrgMetrics(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if org.DeletionTimestamp.IsZero() {
		before := org.DeepCopy()
		if err := addFinalizer(ctx, r.Client, org, OrgFinalizer); apierrors.IsConflict(err) {
			return ctrl.Result{}, err // a stale cache: the next attempt reads the new version
		} else if err != nil {
			// Say why the org waits (the status subresource is not behind the webhooks).
			setKstatus(&before.Status.Conditions, before.Status.ObservedGeneration, retrying(sfv1.ReasonProgressing,
				"Waiting to add the finalizer %s, which keeps an org in use from being deleted: %v", OrgFinalizer, err))
			if perr := newStatusPatcher(r.Client, org).patch(ctx, before, orgStatus); perr != nil {
				err = errors.Join(err, perr)
			}
			return ctrl.Result{}, err
		}
	}
	sc := r.loadScope(org)
	patcher := newStatusPatcher(r.Client, org)
	recallHeld(sc)
	defer func() {
		held := r.holdBack(patcher.original.(*sfv1.SalesforceOrg).Status, &org.Status)
		if err := patcher.patch(ctx, org, orgStatus); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		sc.mem.held = held
		if sc.checked {
			sc.mem.checkedBefore = true
			if patcher.wrote {
				sc.mem.written.Store(org.Status.DeepCopy())
			}
		}
	}()

	sum, after, err := r.phases(ctx, sc)
	sum, result, retErr, handled := conclude(err, sum, after)
	gen := org.Status.ObservedGeneration
	if handled {
		gen = org.Generation
		org.Status.ObservedGeneration = gen
	}
	setKstatus(&org.Status.Conditions, gen, sum)
	return result, retErr
}

func orgStatus(o client.Object) any { return o.(*sfv1.SalesforceOrg).Status }

// loadScope pairs the org with this manager's memory of it. When the memory holds a newer check
// than the cached org (our own status write has not reached the cache yet), the memory wins;
// once the cache has it, the memory lets it go.
func (r *SalesforceOrgReconciler) loadScope(org *sfv1.SalesforceOrg) *orgScope {
	m, _ := r.memory.LoadOrStore(org.UID, &orgMemory{})
	sc := &orgScope{org: org, mem: m.(*orgMemory)}
	sc.checkedBefore = sc.mem.checkedBefore
	if w := sc.mem.written.Load(); w != nil {
		if newerCheck(w, &org.Status) {
			usedBy, count := org.Status.UsedBy, org.Status.StageCount
			org.Status = *w.DeepCopy()
			org.Status.UsedBy, org.Status.StageCount = usedBy, count
		} else {
			sc.mem.written.CompareAndSwap(w, nil)
		}
	}
	return sc
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

// cacheCaughtUp lets the memory of a written status go once the cache has it: the org's update
// event carries the status as the cache now holds it.
func (r *SalesforceOrgReconciler) cacheCaughtUp(o client.Object) {
	org, ok := o.(*sfv1.SalesforceOrg)
	if !ok {
		return
	}
	if m, ok := r.memory.Load(org.UID); ok {
		if w := m.(*orgMemory).written.Load(); w != nil && !newerCheck(w, &org.Status) {
			m.(*orgMemory).written.CompareAndSwap(w, nil)
		}
	}
}

// recallHeld puts back the last check's clock and headroom that status did not get (holdBack),
// unless status has a newer check.
func recallHeld(sc *orgScope) {
	h, st := sc.mem.held, &sc.org.Status
	if h == nil {
		return
	}
	if st.LastCheckTime != nil && !h.checked.After(st.LastCheckTime.Time) {
		sc.mem.held = nil
		return
	}
	st.LastCheckTime, st.LastConnectedTime, st.APIRequests = h.checked, h.connected, h.api
}

// DefaultStatusHeartbeat is how stale status.lastCheckTime may grow while nothing else changes.
const DefaultStatusHeartbeat = time.Hour

// holdBack applies the status write policy to now, the status about to be written over was (the
// status as written). What a user or a tool acts on (conditions, connection, facts, versions,
// lastHandledReconcileAt) is written at once. A check that changed only its own clock
// (lastCheckTime, lastConnectedTime) and the API headroom by less than a step writes nothing
// until lastCheckTime is StatusHeartbeat old: holdBack then puts was's values of those three
// back into now and returns the held ones. Every write carries the newest of all.
func (r *SalesforceOrgReconciler) holdBack(was sfv1.SalesforceOrgStatus, now *sfv1.SalesforceOrgStatus) *heldCheck {
	if was.LastCheckTime == nil || now.LastCheckTime == nil || !now.LastCheckTime.After(was.LastCheckTime.Time) ||
		now.LastCheckTime.Sub(was.LastCheckTime.Time) >= r.statusHeartbeat() || headroomMoved(was.APIRequests, now.APIRequests) {
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

func (r *SalesforceOrgReconciler) statusHeartbeat() time.Duration {
	if r.StatusHeartbeat > 0 {
		return r.StatusHeartbeat
	}
	return DefaultStatusHeartbeat
}

// phases runs the chain and returns the success summary with the time to the next reconcile, or
// the typed error of the phase that stopped it.
func (r *SalesforceOrgReconciler) phases(ctx context.Context, sc *orgScope) (summary, time.Duration, error) {
	if err := r.usage(ctx, sc); err != nil {
		return summary{}, 0, err
	}
	if !sc.org.DeletionTimestamp.IsZero() {
		return r.deletion(ctx, sc)
	}
	if sum, deleted, err := r.deferredDeletion(ctx, sc); deleted || err != nil {
		return sum, 0, err
	}
	if v, ok := sc.org.Annotations[sfv1.ReconcileRequestedAtAnnotation]; ok && v != sc.org.Status.LastHandledReconcileAt {
		defer func() { sc.org.Status.LastHandledReconcileAt = v }()
	}
	if err := r.implementation(ctx, sc); err != nil {
		return summary{}, 0, err
	}
	if sum, idle := r.idle(sc); idle {
		return sum, 0, nil
	}
	if err := r.production(ctx, sc); err != nil {
		return summary{}, 0, err
	}
	secretVersion, err := r.dueCredential(ctx, sc)
	if err != nil {
		return summary{}, 0, err
	}
	if wait := r.dueIn(sc.org, secretVersion, sc.checkedBefore, time.Now()); wait > 0 {
		return r.summarise(ctx, sc, wait)
	}
	if err := r.chainOwner(ctx, sc); err != nil {
		return summary{}, 0, err
	}
	return r.check(ctx, sc, secretVersion)
}

// usage writes status.usedBy and stageCount from the stage index, and keeps the stages that hold the org.
func (r *SalesforceOrgReconciler) usage(ctx context.Context, sc *orgScope) error {
	stages, err := index.StagesForOrg(ctx, r.Client, sc.org.Namespace, sc.org.Name)
	if err != nil {
		return unhandled(err, "Listing the pipeline stages that use this org failed")
	}
	var names []string
	for _, s := range stages {
		if s.DeletionTimestamp.IsZero() {
			names = append(names, s.Name)
		}
	}
	sc.org.Status.UsedBy = names
	sc.org.Status.StageCount = int32(len(names))
	sc.org.Status.CredentialSource = sc.org.Source()
	sc.holders = index.Active(stages)
	return nil
}

// deletion releases the finalizer once no Active stage maps to the org. No Salesforce call.
func (r *SalesforceOrgReconciler) deletion(ctx context.Context, sc *orgScope) (summary, time.Duration, error) {
	if len(sc.holders) > 0 {
		return summary{}, 0, stall(0, sfv1.ReasonDeletionBlocked,
			"Deletion waits: the org is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive.",
			index.StageNames(sc.holders))
	}
	sandboxes, err := rules.SandboxesOf(ctx, r.Client, sc.org.Namespace, sc.org.Name)
	if err != nil {
		return summary{}, 0, unhandled(err, "Listing the sandboxes authorised through the org failed")
	}
	if len(sandboxes) > 0 {
		return summary{}, 0, stall(0, sfv1.ReasonDeletionBlocked,
			"Deletion waits: sandboxes %s are authorised through this org (spec.sandboxOf). Delete them, or give them another credential source.",
			strings.Join(sandboxes, ", "))
	}
	if sc.mem.chainID != "" {
		r.Salesforce.Forget(sc.mem.chainID)
	}
	r.memory.Delete(sc.org.UID)
	forgetOrgMetrics(sc.org.Namespace, sc.org.Name)
	if err := removeFinalizer(ctx, r.Client, sc.org, OrgFinalizer); err != nil {
		return summary{}, 0, unhandled(err, "Removing the finalizer failed")
	}
	return notReady(sfv1.ReasonProgressing, "Deleting."), 0, nil
}

// deferredDeletion replays a deletion that admission refused while stages held the org: once
// none does, the operator deletes the org itself, so one `kubectl delete -f dir` converges in any
// file order. Until then the org is reconciled as usual.
func (r *SalesforceOrgReconciler) deferredDeletion(ctx context.Context, sc *orgScope) (summary, bool, error) {
	org := sc.org
	requested, ok := org.Annotations[sfv1.DeletionRequestedAnnotation]
	if !ok {
		sc.mem.deferredDeletion = ""
		return summary{}, false, nil
	}
	sandboxes, err := rules.SandboxesOf(ctx, r.Client, org.Namespace, org.Name)
	if err != nil {
		return summary{}, false, unhandled(err, "Listing the sandboxes authorised through the org failed")
	}
	if len(sc.holders) > 0 || len(sandboxes) > 0 {
		if sc.mem.deferredDeletion != requested {
			sc.mem.deferredDeletion = requested
			waits := []string{}
			if len(sc.holders) > 0 {
				waits = append(waits, "active pipeline stages "+index.StageNames(sc.holders))
			}
			if len(sandboxes) > 0 {
				waits = append(waits, "sandboxes "+strings.Join(sandboxes, ", ")+" (sandboxOf)")
			}
			r.Notify.warning(ctx, org, sfv1.ReasonDeletionDeferred, "Delete",
				"Deletion requested at %s waits for %s; the operator deletes the org when nothing holds it. Remove the annotation %s to cancel.",
				requested, strings.Join(waits, " and "), sfv1.DeletionRequestedAnnotation)
		}
		return summary{}, false, nil
	}
	if err := r.Delete(ctx, org, client.Preconditions{UID: &org.UID}); client.IgnoreNotFound(err) != nil {
		return summary{}, false, retry(r.retryBase(), sfv1.ReasonDeletionDeferred, "Deleting the org as requested at %s failed: %v", requested, err)
	}
	r.Notify.normal(ctx, org, sfv1.ReasonDeletionReplayed, "Delete",
		"Deleted as requested at %s: nothing holds the org any more.", requested)
	return notReady(sfv1.ReasonProgressing, "Deleting, as requested at %s.", requested), true, nil
}

// implementation finds the org's implementation. A failed lookup stops the reconcile: a member
// of a suspended implementation must never be checked because a List failed.
func (r *SalesforceOrgReconciler) implementation(ctx context.Context, sc *orgScope) error {
	impl, named, err := rules.ImplementationOf(ctx, r.Client, sc.org)
	if err != nil {
		return unhandled(err, "Finding the org's implementation failed")
	}
	sc.impl, sc.implNamed = impl, named
	return nil
}

// idle says whether the org is out of use (Inactive, or its implementation suspended): then
// nothing is called, not even its Secret read.
func (r *SalesforceOrgReconciler) idle(sc *orgScope) (summary, bool) {
	org := sc.org
	var sum summary
	switch {
	case !org.IsActive() && len(sc.holders) > 0:
		sum = notReady(sfv1.ReasonInUseWhileInactive,
			"The org is Inactive but mapped to active pipeline stages %s: set them Inactive or map them to another org, or set this org Active.",
			index.StageNames(sc.holders))
	case !org.IsActive():
		sum = readyTrue(sfv1.ReasonInactive, "The org is Inactive: it is not checked.")
	case sc.impl != nil && sc.impl.Spec.Suspend:
		sum = readyTrue(sfv1.ReasonImplementationSuspended,
			"SalesforceImplementation %q is suspended: the org is not checked.", sc.impl.Name)
	default:
		return summary{}, false
	}
	org.Status.Connection = sfv1.ConnectionUnknown
	setCondition(org, sfv1.ConditionConnected, metav1.ConditionUnknown, sum.reason, sum.message)
	forgetOrgMetrics(org.Namespace, org.Name) // not checked: no series, so no alert
	return sum, true
}

// check calls Salesforce through the org's credential chain (the client re-reads the Secret
// before any exchange, claims it, and persists a rotation before it uses the new token) and
// records the outcome. A sandbox whose own token is rejected (a sandbox refresh killed it) is
// authorised again through its production org.
func (r *SalesforceOrgReconciler) check(ctx context.Context, sc *orgScope, secretVersion string) (summary, time.Duration, error) {
	now := time.Now()
	ch := r.chainFor(sc)
	sc.mem.chainID = ch.ChainID()
	res, err := r.checkChain(ctx, ch, secretVersion)
	if sc.prod != nil && salesforce.ReasonOf(err) == salesforce.ReasonCredentialRejected {
		if _, _, err = r.deriveSandboxCredential(ctx, sc); err == nil {
			ch = r.chainFor(sc)
			res, err = r.checkChain(ctx, ch, sc.writtenSecretVersion)
		}
	}
	var pe *salesforce.ProductionError
	var held *claimHeldError
	switch {
	case errors.As(err, &pe) && errors.As(pe.Err, &held), errors.As(err, &held):
		log.FromContext(ctx).V(1).Info("waiting for another process's claim on the credential", "claim", held.Error())
		return r.summarise(ctx, sc, held.after)
	case errors.As(err, &pe):
		return r.productionFailed(ctx, sc, pe.Err, now)
	}
	if err != nil && !isCheckError(err) {
		return summary{}, 0, err // the chain's own outcome (a Secret problem): status says it already
	}
	if ch.version != "" {
		secretVersion = ch.version
	}
	return r.checked(ctx, sc, res, err, now, secretVersion)
}

func (r *SalesforceOrgReconciler) checkChain(ctx context.Context, ch *orgChain, storedVersion string) (*salesforce.CheckResult, error) {
	checkCtx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	return r.Salesforce.CheckChain(checkCtx, ch, storedVersion)
}

// checked records the outcome of a check that started at now, of the Secret at secretVersion.
func (r *SalesforceOrgReconciler) checked(ctx context.Context, sc *orgScope, res *salesforce.CheckResult, err error, now time.Time, secretVersion string) (summary, time.Duration, error) {
	org := sc.org
	checkDuration.WithLabelValues(reasonOf(err)).Observe(time.Since(now).Seconds())
	sc.checked = true
	org.Status.LastCheckTime = &metav1.Time{Time: now}
	org.Status.CheckedSecretVersion = secretVersion
	if err != nil {
		return r.checkFailed(ctx, sc, err)
	}
	r.recordFacts(ctx, sc, &res.Facts, now)
	return r.summarise(ctx, sc, r.nextCheckIn(org, now))
}

func (r *SalesforceOrgReconciler) checkFailed(ctx context.Context, sc *orgScope, err error) (summary, time.Duration, error) {
	org := sc.org
	reason, msg := reasonOf(err), sentence(err)
	org.Status.ConsecutiveFailures++
	r.setDisconnected(ctx, org, reason, msg)
	if salesforce.IsRetryable(err) {
		wait := backoff(r.retryBase(), org.Status.ConsecutiveFailures, r.interval(org))
		return summary{}, 0, retry(wait, reason, "%s Retrying in %s.", msg, wait.Round(time.Second))
	}
	return summary{}, 0, stall(r.nextCheckIn(org, time.Now()), reason, "%s", msg)
}

// recordFacts writes what a successful check learned. Without a pin, a new org id (a sandbox
// refresh) is accepted and announced; with spec.orgId, summarise reports the mismatch.
func (r *SalesforceOrgReconciler) recordFacts(ctx context.Context, sc *orgScope, f *salesforce.OrgFacts, now time.Time) {
	org := sc.org
	if prev := org.Status.OrgID; prev != "" && !sameOrgID(prev, f.OrgID) && sc.prod != nil {
		r.Notify.normal(ctx, org, sfv1.ReasonSandboxRefreshed, "Check",
			"Sandbox refreshed: re-authorised through SalesforceOrg %q, org id %s → %s.", sc.prod.Name, prev, f.OrgID)
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

// summarise derives Ready from what status knows, without calling Salesforce: the last check's
// outcome, then the declared-versus-found rules. after is when the next check is due.
func (r *SalesforceOrgReconciler) summarise(ctx context.Context, sc *orgScope, after time.Duration) (summary, time.Duration, error) {
	org := sc.org
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	switch {
	case c == nil || c.Status == metav1.ConditionUnknown:
		return notReady(sfv1.ReasonProgressing, "Not checked yet."), after, nil
	case c.Status != metav1.ConditionTrue && isTransientReason(c.Reason):
		return summary{}, 0, retry(after, c.Reason, "%s", c.Message)
	case c.Status != metav1.ConditionTrue:
		return summary{}, 0, stall(after, c.Reason, "%s", c.Message)
	}
	if pin := org.Spec.OrgID; pin != "" && !sameOrgID(pin, org.Status.OrgID) {
		return summary{}, 0, stall(after, sfv1.ReasonOrgIDChanged,
			"The credential reaches org %s, but spec.orgId pins %s: a sandbox refresh gives a sandbox a new org id, or the auth URL is for another org. If the new org is right, set spec.orgId: %s; otherwise put the right auth URL in Secret %q.",
			org.Status.OrgID, pin, org.Status.OrgID, org.CredentialSecret())
	}
	if want, found := org.Spec.Type, foundType(org); want != found {
		return summary{}, 0, stall(after, sfv1.ReasonTypeMismatch,
			"spec.type is %s but the org is a %s (%s): set spec.type: %s, or point the Secret at a %s org.",
			want, found, org.Status.Edition, found, want)
	}
	if org.Spec.DevHub && !org.Status.IsDevHub {
		return summary{}, 0, stall(after, sfv1.ReasonNotADevHub,
			"spec.devHub is true but the org cannot query ScratchOrgInfo: enable Dev Hub in the org's Setup, or set devHub: false.")
	}
	if org.Spec.DefaultDevHub {
		holder, err := rules.DefaultDevHubOf(ctx, r.Client, org.Namespace, "")
		if err != nil {
			return summary{}, 0, unhandled(err, "Listing the namespace's Dev Hubs failed")
		}
		if holder != "" && holder != org.Name {
			return summary{}, 0, stall(after, sfv1.ReasonDuplicateDefaultDevHub,
				"SalesforceOrg %q is already the default Dev Hub of namespace %q: set defaultDevHub: false on one of them.",
				holder, org.Namespace)
		}
	}
	if org.Spec.ImplementationRef != nil && sc.impl == nil {
		return summary{}, 0, wait(after, sfv1.ReasonImplementationNotFound,
			"Connected, but spec.implementationRef names SalesforceImplementation %q, which does not exist: create it or remove implementationRef.", sc.implNamed)
	}
	return readyTrue(sfv1.ReasonConnected, "%s", c.Message), after, nil
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
