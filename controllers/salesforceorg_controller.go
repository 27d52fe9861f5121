package controllers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	// memory is what this manager remembers of the orgs between reconciles (salesforceorg_memory.go).
	memory orgMemory
	// secretUsers names the orgs each credential Secret serves (set up with the manager).
	secretUsers *secretUsers
	// claims are the exchange claims this process holds, released when it stops.
	claims claimRegistry
	// ownWrites are this process's latest Secret writes, whose watch events wake nobody.
	ownWrites ownSecretWrites
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// orgReconcile is one reconcile of one org: the org, this manager's memory of it, what the steps
// read (in), and what they found for summarise (found).
type orgReconcile struct {
	org    *sfv1.SalesforceOrg
	memory *rememberedOrg
	in     orgInputs
	found  orgFindings
}

// orgInputs is what the steps read from the cluster, each once, for the later steps and summarise.
type orgInputs struct {
	// holders are the Active stages (not being deleted) that map to the org.
	holders []sfv1.PipelineStage
	// deletionRequested is the time a refused deletion was requested at (a deferred deletion).
	deletionRequested string
	// impl is the org's implementation; implName its name, also when it does not exist.
	impl     *sfv1.SalesforceImplementation
	implName string
	// production is a sandboxOf org's production org, Active and Connected.
	production *sfv1.SalesforceOrg
	// defaultDevHub is the org that claims to be the namespace's default Dev Hub, when this one does.
	defaultDevHub string
	// cachedSecretVersion is the auth Secret's resourceVersion as the metadata cache has it.
	cachedSecretVersion string
}

// orgFindings is what the steps found, which summarise writes to status.
type orgFindings struct {
	// usedBy names the stages (not being deleted) that map to the org (nil: not listed).
	usedBy *[]string
	// check is the check this reconcile made (nil: none).
	check *checkRecord
	// secretWritable says whether a rotated refresh token can be saved to the auth Secret (nil: not probed).
	secretWritable *secretWritability
	// sandboxAuthSecret is the Secret that holds a sandbox's derived credential.
	sandboxAuthSecret string
	// reconcileRequest is the reconcile-now request this reconcile handled.
	reconcileRequest string
}

// checkRecord is one check: when it started, of which version of the auth Secret (nil: not a
// verdict on the Secret), and what it found.
type checkRecord struct {
	at            time.Time
	secretVersion *string
	facts         *salesforce.OrgFacts
	// salesforceFailed: Salesforce answered with a failure (it counts toward the back-off).
	salesforceFailed bool
}

// orgStep is one step of an org's reconcile. Each reads what it needs into rc.in, records what it
// found in rc.found, and returns either how the reconcile goes on or an *orgError; none sets a
// condition (summarise does). The shape is fluxcd/source-controller's (one signature, one list,
// one loop, one deferred summarise-and-patch), except that a step never patches mid-way nor marks
// a condition itself: the org is written once, so a periodic check costs one request or none.
type orgStep func(ctx context.Context, rc *orgReconcile) (stepResult, error)

// steps is the whole life of an org, in order. Each step may end the reconcile.
func (r *SalesforceOrgReconciler) steps() []orgStep {
	return []orgStep{
		r.ensureFinalizer,  // the backstop that keeps an org in use
		r.usage,            // the stages that use the org, and those that hold it
		r.deletion,         // release the finalizer once nothing holds the org
		r.deferredDeletion, // replay a deletion admission refused, once nothing holds the org
		r.reconcileRequest, // a "reconcile now" annotation
		r.implementation,   // the org's SalesforceImplementation
		r.idle,             // Inactive, or its implementation suspended: nothing is called
		r.production,       // a sandbox's production org (salesforceorg_sandbox.go)
		r.defaultDevHub,    // the namespace's default Dev Hub claimant
		r.secretInCache,    // the auth Secret's version, from metadata (salesforceorg_check.go)
		r.due,              // is a check due? (salesforceorg_schedule.go)
		r.chainOwner,       // one owner per credential chain (salesforceorg_check.go)
		r.check,            // the check through the chain (salesforceorg_check.go)
	}
}

// Reconcile runs the fixed prologue (get the org, recall this manager's memory of it, defer the
// summarise-and-patch), then the steps in order, until one ends the reconcile.
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
	rc := &orgReconcile{org: org, memory: r.memory.of(org.UID)}
	// The cache may lag this manager's own last write: start from the newest status known.
	org.Status = rc.memory.newestStatus(org.Status)
	patcher := newStatusPatcher(r.Client, org)
	rc.memory.restoreHeld(&org.Status)

	var res stepResult
	var err error
	defer func() {
		result, retErr = r.summarise(ctx, rc, res, err)
		held := holdBack(patcher.original.(*sfv1.SalesforceOrg).Status, &org.Status, r.statusHeartbeat())
		if perr := patcher.patch(ctx, org, orgStatus); perr != nil {
			retErr = errors.Join(retErr, perr)
			return
		}
		var written *sfv1.SalesforceOrgStatus
		if patcher.wrote {
			written = &org.Status
		}
		rc.memory.patched(held, rc.found.check != nil, written)
	}()
	res, err = r.runSteps(ctx, rc)
	return result, retErr
}

// runSteps runs the steps in order until one fails or ends the reconcile.
func (r *SalesforceOrgReconciler) runSteps(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	for _, step := range r.steps() {
		res, err := step(ctx, rc)
		if err != nil || res.outcome != outcomeNext {
			return res, err
		}
	}
	return stepResult{outcome: outcomeConnection}, nil
}

func orgStatus(o client.Object) any { return o.(*sfv1.SalesforceOrg).Status }

func (r *SalesforceOrgReconciler) statusHeartbeat() time.Duration {
	if r.StatusHeartbeat > 0 {
		return r.StatusHeartbeat
	}
	return DefaultStatusHeartbeat
}

// ensureFinalizer adds the finalizer to an org that is not being deleted.
func (r *SalesforceOrgReconciler) ensureFinalizer(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	if !rc.org.DeletionTimestamp.IsZero() {
		return nextStep, nil
	}
	err := addFinalizer(ctx, r.Client, rc.org, OrgFinalizer)
	switch {
	case apierrors.IsConflict(err):
		return nextStep, &orgError{kind: staleCacheKind, msg: err.Error(), cause: err}
	case err != nil:
		// Say why the org waits (the status subresource is not behind the webhooks).
		return nextStep, unhandledErr(err, "Waiting to add the finalizer %s, which keeps an org in use from being deleted", OrgFinalizer)
	}
	return nextStep, nil
}

// usage finds the stages that use the org (status.usedBy) in the stage index, and keeps those that hold it.
func (r *SalesforceOrgReconciler) usage(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	stages, err := index.StagesForOrg(ctx, r.Client, org.Namespace, org.Name)
	if err != nil {
		return nextStep, unhandledErr(err, "Listing the pipeline stages that use this org failed")
	}
	var names []string
	for _, s := range stages {
		if s.DeletionTimestamp.IsZero() {
			names = append(names, s.Name)
		}
	}
	rc.found.usedBy = &names
	rc.in.holders = index.Active(stages)
	return nextStep, nil
}

// deletion releases the finalizer of an org being deleted once no Active stage maps to it. No
// Salesforce call.
func (r *SalesforceOrgReconciler) deletion(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	if org.DeletionTimestamp.IsZero() {
		return nextStep, nil
	}
	if len(rc.in.holders) > 0 {
		return nextStep, stallingErr(0, sfv1.ReasonDeletionBlocked,
			"Deletion waits: the org is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive.",
			index.StageNames(rc.in.holders))
	}
	sandboxes, err := rules.SandboxesOf(ctx, r.Client, org.Namespace, org.Name)
	if err != nil {
		return nextStep, unhandledErr(err, "Listing the sandboxes authorised through the org failed")
	}
	if len(sandboxes) > 0 {
		return nextStep, stallingErr(0, sfv1.ReasonDeletionBlocked,
			"Deletion waits: sandboxes %s are authorised through this org (spec.sandboxOf). Delete them, or give them another credential source.",
			strings.Join(sandboxes, ", "))
	}
	if chainID := r.memory.forget(org.UID); chainID != "" {
		r.Salesforce.Forget(chainID)
	}
	forgetOrgMetrics(org.Namespace, org.Name)
	if err := removeFinalizer(ctx, r.Client, org, OrgFinalizer); err != nil {
		return nextStep, unhandledErr(err, "Removing the finalizer failed")
	}
	return stepResult{outcome: outcomeDeleting}, nil
}

// deferredDeletion replays a deletion that admission refused while stages held the org: once
// none does, the operator deletes the org itself, so one `kubectl delete -f dir` converges in any
// file order. Until then the org is reconciled as usual.
func (r *SalesforceOrgReconciler) deferredDeletion(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	requested, ok := org.Annotations[sfv1.DeletionRequestedAnnotation]
	if !ok {
		rc.memory.announcedDeletion = ""
		return nextStep, nil
	}
	rc.in.deletionRequested = requested
	sandboxes, err := rules.SandboxesOf(ctx, r.Client, org.Namespace, org.Name)
	if err != nil {
		return nextStep, unhandledErr(err, "Listing the sandboxes authorised through the org failed")
	}
	if holders := rc.in.holders; len(holders) > 0 || len(sandboxes) > 0 {
		if rc.memory.announcedDeletion != requested {
			rc.memory.announcedDeletion = requested
			waits := []string{}
			if len(holders) > 0 {
				waits = append(waits, "active pipeline stages "+index.StageNames(holders))
			}
			if len(sandboxes) > 0 {
				waits = append(waits, "sandboxes "+strings.Join(sandboxes, ", ")+" (sandboxOf)")
			}
			r.Notify.warning(ctx, org, sfv1.ReasonDeletionDeferred, "Delete",
				"Deletion requested at %s waits for %s; the operator deletes the org when nothing holds it. Remove the annotation %s to cancel.",
				requested, strings.Join(waits, " and "), sfv1.DeletionRequestedAnnotation)
		}
		return nextStep, nil
	}
	if err := r.Delete(ctx, org, client.Preconditions{UID: &org.UID}); client.IgnoreNotFound(err) != nil {
		return nextStep, retryingErr(r.retryBase(), sfv1.ReasonDeletionDeferred, "Deleting the org as requested at %s failed: %v", requested, err)
	}
	r.Notify.normal(ctx, org, sfv1.ReasonDeletionReplayed, "Delete",
		"Deleted as requested at %s: nothing holds the org any more.", requested)
	return stepResult{outcome: outcomeDeletionReplayed}, nil
}

// reconcileRequest notes a "reconcile now" request, which summarise echoes to
// status.lastHandledReconcileAt (the schedule reads the request until then).
func (r *SalesforceOrgReconciler) reconcileRequest(_ context.Context, rc *orgReconcile) (stepResult, error) {
	if requestedReconcile(rc.org) {
		rc.found.reconcileRequest = rc.org.Annotations[sfv1.ReconcileRequestedAtAnnotation]
	}
	return nextStep, nil
}

// implementation finds the org's implementation. A failed lookup stops the reconcile: a member
// of a suspended implementation must never be checked because a List failed.
func (r *SalesforceOrgReconciler) implementation(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	impl, name, err := rules.ImplementationOf(ctx, r.Client, rc.org)
	if err != nil {
		return nextStep, unhandledErr(err, "Finding the org's implementation failed")
	}
	rc.in.impl, rc.in.implName = impl, name
	return nextStep, nil
}

// idle ends the reconcile of an org out of use (Inactive, or its implementation suspended):
// nothing is called, not even its Secret read.
func (r *SalesforceOrgReconciler) idle(_ context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	switch {
	case !org.IsActive() && len(rc.in.holders) > 0:
		return stepResult{outcome: outcomeInUseWhileInactive}, nil
	case !org.IsActive():
		return stepResult{outcome: outcomeInactive}, nil
	case rc.in.impl != nil && rc.in.impl.Spec.Suspend:
		return stepResult{outcome: outcomeSuspended}, nil
	}
	return nextStep, nil
}

// defaultDevHub finds the namespace's default Dev Hub claimant, when the org claims to be it:
// summarise stalls the second claimant.
func (r *SalesforceOrgReconciler) defaultDevHub(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	if !rc.org.Spec.DefaultDevHub {
		return nextStep, nil
	}
	holder, err := rules.DefaultDevHubOf(ctx, r.Client, rc.org.Namespace, "")
	if err != nil {
		return nextStep, unhandledErr(err, "Listing the namespace's Dev Hubs failed")
	}
	rc.in.defaultDevHub = holder
	return nextStep, nil
}
