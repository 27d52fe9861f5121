package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// OrgFinalizer keeps a SalesforceOrg until no Active PipelineStage maps to it: the backstop for
// the admission webhook, which can be bypassed.
const OrgFinalizer = "salesforce.sfops.io/in-use-protection"

// Checker is the part of the Salesforce client the org reconciler uses.
type Checker interface {
	Check(ctx context.Context, cred salesforce.Credential) (*salesforce.CheckResult, error)
	Forget(cred salesforce.Credential)
}

// SalesforceOrgReconciler keeps a SalesforceOrg's status true: it validates the credential,
// checks the connection every spec.checkInterval, and records the org's facts.
type SalesforceOrgReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server: Secret data is never cached.
	APIReader  client.Reader
	Salesforce Checker
	Notify     notifier

	// RetryBase is the first back-off after a transient failure (doubling, capped at the
	// check interval). Zero means 10s.
	RetryBase time.Duration
	// CheckTimeout bounds one check. Zero means 2m.
	CheckTimeout time.Duration
	// MaxConcurrentReconciles bounds parallel checks. Zero means 8.
	MaxConcurrentReconciles int

	// memory is what a reconcile must remember and the API server must not hold, by org UID.
	memory sync.Map
}

// orgMemory is per-org state kept in the manager's memory only.
type orgMemory struct {
	mu sync.Mutex
	// secretVersion is the resourceVersion of the Secret at the last check: a new one re-checks at once.
	secretVersion string
	// pendingRotation is a rotated auth URL that could not yet be written back to the Secret.
	pendingRotation *rotation
	// lastCred is the credential last used, so it can be forgotten when the org goes.
	lastCred salesforce.Credential
}

// rotation is a refresh-token rotation: old is what the Secret held, rotated what replaces it.
type rotation struct{ old, rotated salesforce.AuthURL }

func (r *SalesforceOrgReconciler) mem(uid types.UID) *orgMemory {
	m, _ := r.memory.LoadOrStore(uid, &orgMemory{})
	return m.(*orgMemory)
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile runs the fixed prologue, then the chain: in-use bookkeeping, credentials, connection, facts.
func (r *SalesforceOrgReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	org := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, req.NamespacedName, org); err != nil {
		if apierrors.IsNotFound(err) {
			forgetOrgMetrics(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The finalizer goes on first: its Update returns the stored object, which the status patch below diffs against.
	if org.DeletionTimestamp.IsZero() && controllerutil.AddFinalizer(org, OrgFinalizer) {
		if err := r.Update(ctx, org); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	patcher := newStatusPatcher(r.Client, org)
	var sum summary
	defer func() {
		org.Status.ObservedGeneration = org.Generation
		setKstatus(&org.Status.Conditions, org.Generation, sum)
		if err := patcher.patch(ctx, org); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	holders, err := r.recordUsage(ctx, org)
	if err != nil {
		sum = retrying(sfv1.ReasonProgressing, "Listing the pipeline stages that use this org failed: %v", err)
		return ctrl.Result{}, err
	}
	if !org.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, org, holders, &sum)
	}

	if v, ok := org.Annotations[sfv1.ReconcileRequestedAtAnnotation]; ok {
		defer func() { org.Status.LastHandledReconcileAt = v }()
	}

	// Orgs that are not meant to be checked make no call at all, not even to read their Secret.
	impl, implFound := r.implementation(ctx, org)
	if idle, s := idleReason(org, holders, impl); idle {
		sum = s
		org.Status.Connection = sfv1.ConnectionUnknown
		setConnected(org, metav1.ConditionUnknown, s.reason, s.message)
		orgConnected.WithLabelValues(org.Namespace, org.Name).Set(0)
		return ctrl.Result{}, nil
	}

	return r.reconcileConnection(ctx, org, implFound, &sum)
}

// recordUsage writes status.usedBy and stageCount from the stage index, and returns the stages
// that hold the org (Active, not being deleted).
func (r *SalesforceOrgReconciler) recordUsage(ctx context.Context, org *sfv1.SalesforceOrg) ([]sfv1.PipelineStage, error) {
	stages, err := index.StagesForOrg(ctx, r.Client, org.Namespace, org.Name)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range stages {
		if s.DeletionTimestamp.IsZero() {
			names = append(names, s.Name)
		}
	}
	org.Status.UsedBy = names
	org.Status.StageCount = int32(len(names))
	return index.Active(stages), nil
}

// reconcileDelete releases the finalizer once no Active stage maps to the org. No Salesforce call.
func (r *SalesforceOrgReconciler) reconcileDelete(ctx context.Context, org *sfv1.SalesforceOrg, active []sfv1.PipelineStage, sum *summary) (ctrl.Result, error) {
	if len(active) > 0 {
		*sum = stalled(sfv1.ReasonDeletionBlocked,
			"Deletion waits: the org is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive.",
			index.StageNames(active))
		return ctrl.Result{}, nil // the stage watch brings us back
	}
	m := r.mem(org.UID)
	m.mu.Lock()
	if m.lastCred != nil {
		r.Salesforce.Forget(m.lastCred)
	}
	m.mu.Unlock()
	r.memory.Delete(org.UID)
	forgetOrgMetrics(org.Namespace, org.Name)
	*sum = notReady(sfv1.ReasonProgressing, "Deleting.")
	if controllerutil.RemoveFinalizer(org, OrgFinalizer) {
		if err := r.Update(ctx, org); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{}, nil
}

// idleReason says whether the org is out of use (Inactive, or its implementation suspended).
// holders are the stages that hold the org.
func idleReason(org *sfv1.SalesforceOrg, holders []sfv1.PipelineStage, impl *sfv1.SalesforceImplementation) (bool, summary) {
	if !org.IsActive() {
		if len(holders) > 0 {
			return true, notReady(sfv1.ReasonInUseWhileInactive,
				"The org is Inactive but mapped to active pipeline stages %s: set them Inactive or map them to another org, or set this org Active.",
				index.StageNames(holders))
		}
		return true, readyTrue(sfv1.ReasonInactive, "The org is Inactive: it is not checked.")
	}
	if impl != nil && impl.Spec.Suspend {
		return true, readyTrue(sfv1.ReasonImplementationSuspended,
			"SalesforceImplementation %q is suspended: the org is not checked.", impl.Name)
	}
	return false, summary{}
}

// implementation is the org's implementation: the one its implementationRef names, else one whose
// productionOrgRef names it. found is false when implementationRef names one that does not exist.
func (r *SalesforceOrgReconciler) implementation(ctx context.Context, org *sfv1.SalesforceOrg) (impl *sfv1.SalesforceImplementation, found bool) {
	name := ""
	if org.Spec.ImplementationRef != nil {
		name = org.Spec.ImplementationRef.Name
	} else if names := ImplementationsNamingProduction(ctx, r.Client, org); len(names) > 0 {
		name = names[0]
	}
	if name == "" {
		return nil, true
	}
	impl = &sfv1.SalesforceImplementation{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, impl); err != nil {
		return nil, !apierrors.IsNotFound(err)
	}
	return impl, true
}

// reconcileConnection: credentials, then (when due) the check, then what the facts say.
// implFound is false when spec.implementationRef names no implementation.
func (r *SalesforceOrgReconciler) reconcileConnection(ctx context.Context, org *sfv1.SalesforceOrg, implFound bool, sum *summary) (ctrl.Result, error) {
	m := r.mem(org.UID)
	m.mu.Lock()
	defer m.mu.Unlock()

	secret, cred, s := r.readCredential(ctx, org)
	if cred == nil {
		*sum = s
		org.Status.Connection = sfv1.ConnectionDisconnected
		setConnected(org, metav1.ConditionFalse, s.reason, s.message)
		orgConnected.WithLabelValues(org.Namespace, org.Name).Set(0)
		if !s.stalled { // the API server failed us: retry
			return ctrl.Result{RequeueAfter: r.retryBase()}, nil
		}
		return ctrl.Result{RequeueAfter: r.interval(org)}, nil
	}

	// A rotation that could not be persisted is written before anything else, then the Secret re-read.
	if p := m.pendingRotation; p != nil {
		if err := r.persistRotation(ctx, org, secret, p.old, p.rotated, m); err != nil {
			*sum = retrying(sfv1.ReasonSecretUpdateFailed, "%v", err)
			return ctrl.Result{RequeueAfter: r.retryBase()}, nil
		}
		m.pendingRotation = nil
		if secret, cred, s = r.readCredential(ctx, org); cred == nil {
			*sum = s
			return ctrl.Result{RequeueAfter: r.retryBase()}, nil
		}
	}

	now := time.Now()
	if wait := r.untilDue(org, secret.ResourceVersion, m, now); wait > 0 {
		*sum = r.summarizeKnown(ctx, org, implFound)
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	m.lastCred = *cred
	m.secretVersion = secret.ResourceVersion
	checkCtx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	res, err := r.Salesforce.Check(checkCtx, *cred)
	cancel()
	org.Status.LastCheckTime = &metav1.Time{Time: now}
	checkDuration.WithLabelValues(reasonOf(err)).Observe(time.Since(now).Seconds())

	// A rotation comes first, even when the rest of the check failed: the old token is already dead.
	if res != nil && res.RotatedAuthURL != nil {
		if perr := r.persistRotation(ctx, org, secret, *cred, *res.RotatedAuthURL, m); perr != nil {
			m.pendingRotation = &rotation{old: *cred, rotated: *res.RotatedAuthURL}
			*sum = retrying(sfv1.ReasonSecretUpdateFailed, "%v", perr)
			return ctrl.Result{RequeueAfter: r.retryBase()}, nil
		}
		m.lastCred = *res.RotatedAuthURL
	}
	if err != nil {
		return r.checkFailed(ctx, org, err, sum)
	}
	r.checkSucceeded(ctx, org, &res.Facts, now, implFound, sum)
	return ctrl.Result{RequeueAfter: r.nextCheckIn(org, now)}, nil
}

// readCredential reads the Secret directly (never from a cache) and parses the auth URL.
func (r *SalesforceOrgReconciler) readCredential(ctx context.Context, org *sfv1.SalesforceOrg) (*corev1.Secret, *salesforce.AuthURL, summary) {
	name, key := org.Spec.AuthSecretRef.Name, org.AuthSecretKey()
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, stalled(sfv1.ReasonSecretNotFound,
				"Secret %q not found in namespace %q: create it with the org's SFDX auth URL under key %q (kubectl create secret generic %s --from-literal=%s=\"$(sf org display --target-org <alias> --verbose --json | jq -r .result.sfdxAuthUrl)\").",
				name, org.Namespace, key, name, key)
		}
		return nil, nil, retrying(sfv1.ReasonProgressing, "Reading Secret %q failed: %v", name, err)
	}
	raw, ok := secret.Data[key]
	if !ok {
		keys := make([]string, 0, len(secret.Data))
		for k := range secret.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, nil, stalled(sfv1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q (it has: %s): put the SFDX auth URL under %q, or set spec.authSecretRef.key to the key that holds it.",
			name, key, strings.Join(keys, ", "), key)
	}
	u, err := salesforce.ParseAuthURL(string(raw))
	if err != nil {
		return nil, nil, stalled(sfv1.ReasonAuthURLInvalid, "Secret %q key %q: %s", name, key, sentence(err))
	}
	return secret, &u, summary{}
}

// untilDue is zero when a check is due now, else how long until it is.
func (r *SalesforceOrgReconciler) untilDue(org *sfv1.SalesforceOrg, secretVersion string, m *orgMemory, now time.Time) time.Duration {
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	switch {
	case c == nil, c.Status == metav1.ConditionUnknown, // never checked, or back from Inactive or suspended
		org.Status.LastCheckTime == nil,
		org.Status.ObservedGeneration != org.Generation,
		m.secretVersion != secretVersion,
		requestedReconcile(org):
		return 0
	}
	next := org.Status.LastCheckTime.Add(r.delayAfter(org))
	if d := next.Sub(now); d > 0 {
		return d
	}
	return 0
}

func requestedReconcile(org *sfv1.SalesforceOrg) bool {
	v, ok := org.Annotations[sfv1.ReconcileRequestedAtAnnotation]
	return ok && v != org.Status.LastHandledReconcileAt
}

// delayAfter is the wait after the last check: back-off after a transient failure, else the
// interval with a jitter of up to a tenth, fixed per org and check so reconciles don't drift it.
func (r *SalesforceOrgReconciler) delayAfter(org *sfv1.SalesforceOrg) time.Duration {
	interval := r.interval(org)
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	if c != nil && c.Status == metav1.ConditionFalse && isTransientReason(c.Reason) && org.Status.ConsecutiveFailures > 0 {
		return backoff(r.retryBase(), org.Status.ConsecutiveFailures, interval)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", org.UID, org.Status.LastCheckTime.Unix())
	return interval + time.Duration(h.Sum64()%uint64(interval/10+1))
}

func (r *SalesforceOrgReconciler) nextCheckIn(org *sfv1.SalesforceOrg, now time.Time) time.Duration {
	return org.Status.LastCheckTime.Add(r.delayAfter(org)).Sub(now)
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
	case sfv1.ReasonUnreachable, sfv1.ReasonServerError, sfv1.ReasonRateLimited:
		return true
	}
	return false
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

func (r *SalesforceOrgReconciler) checkFailed(ctx context.Context, org *sfv1.SalesforceOrg, err error, sum *summary) (ctrl.Result, error) {
	reason := reasonOf(err)
	msg := sentence(err)
	prev := connectedBefore(org)
	org.Status.ConsecutiveFailures++
	org.Status.Connection = sfv1.ConnectionDisconnected
	setConnected(org, metav1.ConditionFalse, reason, msg)
	orgConnected.WithLabelValues(org.Namespace, org.Name).Set(0)
	if prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != reason {
		r.Notify.warning(ctx, org, reason, "Check", "%s", msg)
	}
	if salesforce.IsRetryable(err) {
		wait := backoff(r.retryBase(), org.Status.ConsecutiveFailures, r.interval(org))
		*sum = retrying(reason, "%s Retrying in %s.", msg, wait.Round(time.Second))
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	*sum = stalled(reason, "%s", msg)
	return ctrl.Result{RequeueAfter: r.nextCheckIn(org, time.Now())}, nil
}

func (r *SalesforceOrgReconciler) checkSucceeded(ctx context.Context, org *sfv1.SalesforceOrg, f *salesforce.OrgFacts, now time.Time, implFound bool, sum *summary) {
	expected := org.Spec.OrgID
	if expected == "" {
		expected = org.Status.OrgID
	}
	if expected != "" && !sameOrgID(expected, f.OrgID) {
		msg := fmt.Sprintf("The credential now reaches org %s, not %s: a sandbox refresh gives a sandbox a new org id, or the auth URL is for another org. If the new org is right, set spec.orgId: %s; otherwise put the right auth URL in Secret %q.",
			f.OrgID, expected, f.OrgID, org.Spec.AuthSecretRef.Name)
		org.Status.ConsecutiveFailures++
		r.setDisconnectedOnce(ctx, org, sfv1.ReasonOrgIDChanged, msg)
		*sum = stalled(sfv1.ReasonOrgIDChanged, "%s", msg)
		return
	}

	wasConnected := org.Status.Connection == sfv1.ConnectionConnected
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
	setConnected(org, metav1.ConditionTrue, sfv1.ReasonConnected, msg)
	orgConnected.WithLabelValues(org.Namespace, org.Name).Set(1)
	orgAPIRemaining.WithLabelValues(org.Namespace, org.Name).Set(float64(f.APIRequestsRemaining))
	orgLastSuccess.WithLabelValues(org.Namespace, org.Name).Set(float64(now.Unix()))
	if !wasConnected {
		r.Notify.normal(ctx, org, sfv1.ReasonConnected, "Check", "%s", msg)
	}
	*sum = r.summarizeKnown(ctx, org, implFound)
}

// setDisconnectedOnce marks the connection failed with reason, warning only on a transition.
func (r *SalesforceOrgReconciler) setDisconnectedOnce(ctx context.Context, org *sfv1.SalesforceOrg, reason, msg string) {
	prev := connectedBefore(org)
	org.Status.Connection = sfv1.ConnectionDisconnected
	setConnected(org, metav1.ConditionFalse, reason, msg)
	orgConnected.WithLabelValues(org.Namespace, org.Name).Set(0)
	if prev == nil || prev.Reason != reason {
		r.Notify.warning(ctx, org, reason, "Check", "%s", msg)
	}
}

// summarizeKnown derives Ready from what status already knows, without calling Salesforce:
// the last check's outcome, then the declared-versus-found rules.
func (r *SalesforceOrgReconciler) summarizeKnown(ctx context.Context, org *sfv1.SalesforceOrg, implFound bool) summary {
	c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected)
	if c == nil {
		return notReady(sfv1.ReasonProgressing, "Not checked yet.")
	}
	if c.Status != metav1.ConditionTrue {
		if isTransientReason(c.Reason) {
			return retrying(c.Reason, "%s", c.Message)
		}
		return stalled(c.Reason, "%s", c.Message)
	}
	if want, found := org.Spec.Type, foundType(org); want != found {
		return stalled(sfv1.ReasonTypeMismatch,
			"spec.type is %s but the org is a %s (%s): set spec.type: %s, or point the Secret at a %s org.",
			want, found, org.Status.Edition, found, want)
	}
	if org.Spec.DevHub && !org.Status.IsDevHub {
		return stalled(sfv1.ReasonNotADevHub,
			"spec.devHub is true but the org cannot query ScratchOrgInfo: enable Dev Hub in the org's Setup, or set devHub: false.")
	}
	if org.Spec.DefaultDevHub {
		if holder := r.defaultDevHubHolder(ctx, org); holder != "" && holder != org.Name {
			return stalled(sfv1.ReasonDuplicateDefaultDevHub,
				"SalesforceOrg %q is already the default Dev Hub of namespace %q: set defaultDevHub: false on one of them.",
				holder, org.Namespace)
		}
	}
	if ref := org.Spec.ImplementationRef; ref != nil && !implFound {
		return notReady(sfv1.ReasonImplementationNotFound,
			"Connected, but spec.implementationRef names SalesforceImplementation %q, which does not exist: create it or remove implementationRef.", ref.Name)
	}
	return readyTrue(sfv1.ReasonConnected, "%s", c.Message)
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

// defaultDevHubHolder is the oldest org of the namespace with defaultDevHub: true.
func (r *SalesforceOrgReconciler) defaultDevHubHolder(ctx context.Context, org *sfv1.SalesforceOrg) string {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(org.Namespace)); err != nil {
		return ""
	}
	return DefaultDevHubHolder(list.Items)
}

// DefaultDevHubHolder picks, among orgs claiming defaultDevHub, the one that holds it: the
// oldest, then by name. Shared with the admission webhook so both name the same org.
func DefaultDevHubHolder(orgs []sfv1.SalesforceOrg) string {
	var holder *sfv1.SalesforceOrg
	for i := range orgs {
		o := &orgs[i]
		if !o.Spec.DefaultDevHub || !o.DeletionTimestamp.IsZero() {
			continue
		}
		if holder == nil || o.CreationTimestamp.Before(&holder.CreationTimestamp) ||
			(o.CreationTimestamp.Equal(&holder.CreationTimestamp) && o.Name < holder.Name) {
			holder = o
		}
	}
	if holder == nil {
		return ""
	}
	return holder.Name
}

// sameOrgID compares org ids on their case-sensitive 15-character form.
func sameOrgID(a, b string) bool {
	if len(a) >= 15 && len(b) >= 15 {
		return a[:15] == b[:15]
	}
	return a == b
}

// connectedBefore copies the Connected condition before it is overwritten in place.
func connectedBefore(org *sfv1.SalesforceOrg) *metav1.Condition {
	if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected); c != nil {
		cp := *c
		return &cp
	}
	return nil
}

func setConnected(org *sfv1.SalesforceOrg, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&org.Status.Conditions, metav1.Condition{
		Type: sfv1.ConditionConnected, Status: status, Reason: reason, Message: msg, ObservedGeneration: org.Generation,
	})
}

// persistRotation writes a rotated auth URL back to the Secret. Salesforce already killed the old
// refresh token, so this comes before anything else. A Secret the user replaced meanwhile wins.
func (r *SalesforceOrgReconciler) persistRotation(ctx context.Context, org *sfv1.SalesforceOrg, secret *corev1.Secret, old, rotated salesforce.AuthURL, m *orgMemory) error {
	key := org.AuthSecretKey()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), cur); err != nil {
			return err
		}
		if u, err := salesforce.ParseAuthURL(string(cur.Data[key])); err != nil || u.RefreshToken != old.RefreshToken {
			return nil // replaced by the user: their credential wins
		}
		cur.Data[key] = []byte(rotated.Reveal())
		if err := r.Update(ctx, cur); err != nil {
			return err
		}
		m.secretVersion = cur.ResourceVersion
		return nil
	})
	if err != nil {
		msg := fmt.Sprintf("Salesforce rotated the refresh token, but writing it back to Secret %q failed (%s); the operator keeps it in memory and retries. Check the operator's RBAC for update on secrets.",
			secret.Name, apierrors.ReasonForError(err))
		r.Notify.warning(ctx, org, sfv1.ReasonSecretUpdateFailed, "PersistRotation", "%s", msg)
		return errors.New(msg)
	}
	log.FromContext(ctx).Info("rotated refresh token written back to the Secret", "secret", secret.Name)
	return nil
}

func (r *SalesforceOrgReconciler) interval(org *sfv1.SalesforceOrg) time.Duration {
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

// SetupWithManager watches orgs, the Secrets they name (metadata only: no Secret data is cached),
// the stages that map to them, and their implementations.
func (r *SalesforceOrgReconciler) SetupWithManager(mgr ctrl.Manager) error {
	conc := r.MaxConcurrentReconciles
	if conc == 0 {
		conc = 8
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.SalesforceOrg{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate{}))).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.orgsForSecret)).
		Watches(&sfv1.PipelineStage{}, handler.EnqueueRequestsFromMapFunc(orgForStage)).
		Watches(&sfv1.SalesforceImplementation{}, handler.EnqueueRequestsFromMapFunc(r.orgsForImplementation),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletionPredicate{}))).
		Watches(&sfv1.SalesforceOrg{}, handler.EnqueueRequestsFromMapFunc(r.otherDefaultDevHubs)).
		WithOptions(controller.Options{MaxConcurrentReconciles: conc}).
		Named("salesforceorg").
		Complete(r)
}

func (r *SalesforceOrgReconciler) orgsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return r.orgsMatching(ctx, o.GetNamespace(), index.OrgAuthSecret, o.GetName())
}

func (r *SalesforceOrgReconciler) orgsForImplementation(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.orgsMatching(ctx, o.GetNamespace(), index.OrgImplementation, o.GetName())
	if ref := o.(*sfv1.SalesforceImplementation).Spec.ProductionOrgRef; ref != nil {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
	}
	return reqs
}

func (r *SalesforceOrgReconciler) orgsMatching(ctx context.Context, ns, field, value string) []reconcile.Request {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{field: value}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, o := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&o)})
	}
	return reqs
}

// otherDefaultDevHubs re-evaluates the namespace's other default Dev Hub claimants when one changes.
func (r *SalesforceOrgReconciler) otherDefaultDevHubs(ctx context.Context, o client.Object) []reconcile.Request {
	if org, ok := o.(*sfv1.SalesforceOrg); !ok || !org.Spec.DefaultDevHub {
		return nil
	}
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, other := range list.Items {
		if other.Name != o.GetName() && other.Spec.DefaultDevHub {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&other)})
		}
	}
	return reqs
}

func orgForStage(_ context.Context, o client.Object) []reconcile.Request {
	s := o.(*sfv1.PipelineStage)
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.OrgRef.Name}}}
}

// deletionPredicate passes updates that start a deletion (finalizers pending).
type deletionPredicate struct{ predicate.Funcs }

func (deletionPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
}
