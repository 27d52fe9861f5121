package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// AccessTokenFinalizer holds a SalesforceAccessToken until its Secret is deleted and its token
// revoked.
const AccessTokenFinalizer = "salesforce.sfops.io/access-token"

// accessRecheck is how often a live hand-out is checked again (the org's state, the requester's
// permission, the session): a withdrawn permission or a dead session is noticed within it. The
// org, its implementation and the stage wake the hand-out at once when they change.
const accessRecheck = 5 * time.Minute

// SalesforceAccessTokenReconciler hands out short-lived access to an org. It asks the org's chain
// owner (the org reconciler) for the chain session's access token, writes it, with where to use
// it, into a Secret it owns, and keeps it fresh until the lifetime ends or the object goes; then
// it deletes the Secret and revokes the token. It withdraws every hand-out of an org at once
// when the org turns Inactive, its implementation is suspended, or it is deleted.
//
// All hand-outs of one chain share one session (Salesforce answers every refresh of a chain with
// its live access token), so revoking a token would end every other hand-out holding it: a
// withdrawal revokes the token only when no other live hand-out of the org holds it. Issuing and
// withdrawing for one org run under one lock, so a token is never revoked while another hand-out
// of it is being written.
type SalesforceAccessTokenReconciler struct {
	client.Client
	// APIReader reads Secrets straight from the API server: Secret data is never cached.
	APIReader client.Reader
	// Orgs is the chain owner.
	Orgs   orgAccess
	Notify notifier
	// Now is the clock (tests set it); nil means time.Now.
	Now func() time.Time

	orgLocks sync.Map // namespace/org → *sync.Mutex
	// pending holds tokens whose revocation failed, by hand-out UID, retried at every reconcile
	// of the hand-out (in memory: a restart forgets them; the session then ends by its own timeout).
	pending sync.Map
}

type pendingRevocation struct {
	org                *sfv1.SalesforceOrg
	instanceURL, token string
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceaccesstokens,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceaccesstokens/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceaccesstokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=delete
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Reconcile issues, refreshes or withdraws one hand-out.
func (r *SalesforceAccessTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	at := &sfv1.SalesforceAccessToken{}
	if err := r.Get(ctx, req.NamespacedName, at); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !at.DeletionTimestamp.IsZero() {
		if err := r.withdraw(ctx, at, "the SalesforceAccessToken was deleted"); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, removeFinalizer(ctx, r.Client, at, AccessTokenFinalizer)
	}
	if err := addFinalizer(ctx, r.Client, at, AccessTokenFinalizer); err != nil {
		return ctrl.Result{}, err
	}
	r.retryRevocation(ctx, at)

	patcher := newStatusPatcher(r.Client, at)
	var sum summary
	defer func() {
		at.Status.ObservedGeneration = at.Generation
		setKstatus(&at.Status.Conditions, at.Generation, sum)
		if err := patcher.patch(ctx, at, func(o client.Object) any { return o.(*sfv1.SalesforceAccessToken).Status }); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	expires := at.ExpiresAt()
	at.Status.ExpiresAt = &metav1.Time{Time: expires}
	who, err := recordedRequester(at)
	if err == nil {
		at.Status.Requester = who.Username
	}

	org, refusal, err := r.decide(ctx, at, who, err)
	if err != nil {
		sum = retrying(sfv1.ReasonProgressing, "Deciding on the hand-out failed: %v", err)
		return ctrl.Result{}, err
	}
	if refusal != nil {
		sum = *refusal
		if werr := r.withdraw(ctx, at, sum.message); werr != nil {
			return ctrl.Result{}, werr
		}
		switch {
		case sum.reason == sfv1.ReasonAccessExpired:
			return ctrl.Result{}, nil
		case sum.reconciling:
			return ctrl.Result{RequeueAfter: min(accessRecheck, time.Until(expires)+time.Second)}, nil
		}
		return ctrl.Result{RequeueAfter: time.Until(expires) + time.Second}, nil
	}

	sum, err = r.issue(ctx, at, org, who, expires)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: min(accessRecheck, time.Until(expires)+time.Second)}, nil
}

func (r *SalesforceAccessTokenReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// decide returns the org when a hand-out may be held now, or the refusal (with reason and fix)
// that withdraws it. Refusals a person must fix are Stalled; waiting for the org to connect is
// Reconciling.
func (r *SalesforceAccessTokenReconciler) decide(ctx context.Context, at *sfv1.SalesforceAccessToken, who rules.Requester, whoErr error) (*sfv1.SalesforceOrg, *summary, error) {
	refuse := func(s summary) (*sfv1.SalesforceOrg, *summary, error) { return nil, &s, nil }
	orgName := at.Spec.OrgRef.Name
	if !r.now().Before(at.ExpiresAt()) {
		return refuse(notReady(sfv1.ReasonAccessExpired, "The access ended at %s (lifetime %s): its Secret was deleted and its token revoked. Create a new SalesforceAccessToken for more.",
			at.ExpiresAt().UTC().Format(time.RFC3339), at.Lifetime()))
	}
	if whoErr != nil {
		return refuse(stalled(sfv1.ReasonAccessDenied, "%v", whoErr))
	}
	org := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: orgName}, org); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		return refuse(stalled(sfv1.ReasonOrgNotFound, "SalesforceOrg %q does not exist in namespace %q: name an existing org in spec.orgRef.", orgName, at.Namespace))
	}
	if !org.DeletionTimestamp.IsZero() {
		return refuse(stalled(sfv1.ReasonOrgDeleted, "SalesforceOrg %q is being deleted: its hand-outs were withdrawn.", orgName))
	}
	if !org.IsActive() {
		return refuse(stalled(sfv1.ReasonOrgInactive, "SalesforceOrg %q is Inactive: nobody gets access to an Inactive org. Set it Active (spec.state) to use it.", orgName))
	}
	impl, err := rules.Suspended(ctx, r.Client, org)
	if err != nil {
		return nil, nil, err
	}
	if impl != nil {
		return refuse(stalled(sfv1.ReasonImplementationSuspended, "SalesforceImplementation %q of SalesforceOrg %q is suspended: nobody gets access to its orgs. Set its spec.suspend to false to use them.", impl.Name, orgName))
	}
	if ref := at.Spec.StageRef; ref != nil {
		stage := &sfv1.PipelineStage{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: ref.Name}, stage); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, nil, err
			}
			return refuse(stalled(sfv1.ReasonStageNotFound, "PipelineStage %q does not exist in namespace %q: name an existing stage in spec.stageRef, or leave it out.", ref.Name, at.Namespace))
		}
		switch {
		case !stage.IsActive() || !stage.DeletionTimestamp.IsZero():
			return refuse(stalled(sfv1.ReasonStageInactive, "PipelineStage %q is Inactive: an inactive stage gets no access. Set the stage Active, or name another stage.", ref.Name))
		case stage.Spec.OrgRef.Name != orgName:
			return refuse(stalled(sfv1.ReasonStageOrgMismatch, "PipelineStage %q maps to SalesforceOrg %q, not %q: name the stage's org in spec.orgRef, or the stage that maps to %q.",
				ref.Name, stage.Spec.OrgRef.Name, orgName, orgName))
		}
	}
	allowed, why, err := rules.MayUse(ctx, r.Client, who, at.Namespace, orgName)
	if err != nil {
		return nil, nil, err
	}
	if !allowed {
		return refuse(stalled(sfv1.ReasonAccessDenied, "%s", why))
	}
	if org.Status.Connection != sfv1.ConnectionConnected {
		why := "it has not been checked yet"
		if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionReady); c != nil && c.Message != "" {
			why = c.Message
		}
		return refuse(retrying(sfv1.ReasonOrgNotConnected, "SalesforceOrg %q is not Connected (%s); access is issued once it is.", orgName, why))
	}
	return org, nil, nil
}

// recordedRequester reads the admission record of who asked.
func recordedRequester(at *sfv1.SalesforceAccessToken) (rules.Requester, error) {
	var who rules.Requester
	raw, ok := at.Annotations[sfv1.RequesterAnnotation]
	if !ok || json.Unmarshal([]byte(raw), &who) != nil || who.Username == "" {
		return who, fmt.Errorf("no requester is recorded (annotation %s, written by the operator's admission webhook): the webhook did not see this object's creation. Make sure the webhook is installed, then delete and create the SalesforceAccessToken again", sfv1.RequesterAnnotation)
	}
	return who, nil
}

// issue writes (or keeps) the hand-out's Secret with a live access token of the org.
func (r *SalesforceAccessTokenReconciler) issue(ctx context.Context, at *sfv1.SalesforceAccessToken, org *sfv1.SalesforceOrg, who rules.Requester, expires time.Time) (summary, error) {
	unlock := r.lockOrg(at.Namespace, org.Name)
	defer unlock()
	key := types.NamespacedName{Namespace: at.Namespace, Name: at.TargetSecret()}
	existing := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, existing)
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return retrying(sfv1.ReasonProgressing, "Reading Secret %q failed: %v", key.Name, err), err
	case !metav1.IsControlledBy(existing, at):
		return stalled(sfv1.ReasonSecretNameTaken, "Secret %q exists and is not this SalesforceAccessToken's: the operator never writes into a Secret it did not create. Name another Secret in spec.secretName, or delete that one.", key.Name), nil
	}

	access, err := r.Orgs.Access(ctx, org)
	if err != nil {
		handoutsTotal.WithLabelValues(at.Namespace, org.Name, "failed").Inc()
		reason := string(salesforce.ReasonOf(err))
		if reason == "" {
			reason = sfv1.ReasonOrgNotConnected
		}
		return retrying(reason, "Getting access to SalesforceOrg %q failed: %v", org.Name, err), err
	}
	data := map[string][]byte{
		sfv1.AccessTokenKey:       []byte(access.Token),
		sfv1.AccessTargetOrgKey:   []byte(access.Token),
		sfv1.AccessInstanceURLKey: []byte(access.InstanceURL),
		sfv1.AccessOrgIDKey:       []byte(access.OrgID),
		sfv1.AccessUsernameKey:    []byte(org.Status.Username),
		sfv1.AccessExpiresAtKey:   []byte(expires.UTC().Format(time.RFC3339)),
	}
	fresh := existing == nil || string(existing.Data[sfv1.AccessTokenKey]) != access.Token
	switch {
	case existing == nil:
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{sfv1.AccessTokenLabel: org.Name}},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if err := ctrl.SetControllerReference(at, s, r.Scheme()); err != nil {
			return retrying(sfv1.ReasonProgressing, "%v", err), err
		}
		if err := r.Create(quiet(ctx), s); err != nil {
			return retrying(sfv1.ReasonProgressing, "Creating Secret %q failed: %s", key.Name, err.Error()), err
		}
	case !secretDataEqual(existing.Data, data):
		upd := existing.DeepCopy()
		upd.Data = data
		if err := r.Update(quiet(ctx), upd); err != nil {
			return retrying(sfv1.ReasonProgressing, "Updating Secret %q failed: %s", key.Name, err.Error()), err
		}
	}
	until := expires.UTC().Format(time.RFC3339)
	if fresh {
		now := metav1.NewTime(r.now())
		at.Status.IssuedAt = &now
		handoutsTotal.WithLabelValues(at.Namespace, org.Name, "issued").Inc()
		r.Notify.normal(ctx, org, "AccessHandedOut", "HandOut", "Access handed out to %s through SalesforceAccessToken %q (Secret %q) until %s.", who.Username, at.Name, key.Name, until)
	}
	at.Status.SecretName, at.Status.InstanceURL, at.Status.Username = key.Name, access.InstanceURL, org.Status.Username
	return readyTrue(sfv1.ReasonAccessIssued, "Secret %q holds access to SalesforceOrg %q for %s until %s.", key.Name, org.Name, who.Username, until), nil
}

func secretDataEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}

// withdraw deletes the hand-out's Secret and revokes its token, unless another live hand-out of
// the org holds the same token (one session per chain): then the last one to go revokes it.
func (r *SalesforceAccessTokenReconciler) withdraw(ctx context.Context, at *sfv1.SalesforceAccessToken, why string) error {
	key := types.NamespacedName{Namespace: at.Namespace, Name: at.TargetSecret()}
	if at.Status.SecretName != "" {
		key.Name = at.Status.SecretName
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			at.Status.SecretName = ""
			return nil
		}
		return err
	}
	if !metav1.IsControlledBy(secret, at) {
		return nil // never ours: nothing to withdraw
	}
	orgName := secret.Labels[sfv1.AccessTokenLabel]
	unlock := r.lockOrg(at.Namespace, orgName)
	defer unlock()
	org := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: orgName}, org); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		org = nil
	}
	token, inst := string(secret.Data[sfv1.AccessTokenKey]), string(secret.Data[sfv1.AccessInstanceURLKey])
	sharers, err := r.sharers(ctx, at, orgName, token)
	if err != nil {
		return err
	}
	if err := r.Delete(quiet(ctx), secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %q: %s", key.Name, err.Error())
	}
	at.Status.SecretName, at.Status.IssuedAt = "", nil
	who := at.Status.Requester
	if who == "" {
		who = "an unrecorded requester"
	}
	var outcome string
	switch {
	case sharers > 0:
		outcome = fmt.Sprintf("the token stays live for %d other live hand-out(s) of the org, which share its Salesforce session; the last of them revokes it", sharers)
	default:
		if err := r.Orgs.Revoke(ctx, org, inst, token); err != nil {
			r.pending.Store(at.UID, pendingRevocation{org: org, instanceURL: inst, token: token})
			handoutsTotal.WithLabelValues(at.Namespace, orgName, "revoke_failed").Inc()
			outcome = fmt.Sprintf("revoking the token at Salesforce failed (%v); it is retried", err)
		} else {
			outcome = "the token was revoked at Salesforce"
		}
	}
	handoutsTotal.WithLabelValues(at.Namespace, orgName, "withdrawn").Inc()
	var target client.Object = at
	if org != nil {
		target = org
	}
	r.Notify.normal(ctx, target, "AccessWithdrawn", "Withdraw", "Access of %s through SalesforceAccessToken %q withdrawn (%s): Secret %q deleted, %s.", who, at.Name, why, key.Name, outcome)
	return nil
}

// sharers counts the other live hand-outs of the org whose Secret holds token.
func (r *SalesforceAccessTokenReconciler) sharers(ctx context.Context, at *sfv1.SalesforceAccessToken, org, token string) (int, error) {
	var list corev1.SecretList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(at.Namespace), client.MatchingLabels{sfv1.AccessTokenLabel: org}); err != nil {
		return 0, err
	}
	n := 0
	for i := range list.Items {
		s := &list.Items[i]
		if metav1.IsControlledBy(s, at) || !s.DeletionTimestamp.IsZero() {
			continue
		}
		if string(s.Data[sfv1.AccessTokenKey]) == token {
			n++
		}
	}
	return n, nil
}

// retryRevocation retries a revocation that failed at an earlier withdrawal.
func (r *SalesforceAccessTokenReconciler) retryRevocation(ctx context.Context, at *sfv1.SalesforceAccessToken) {
	v, ok := r.pending.Load(at.UID)
	if !ok {
		return
	}
	p := v.(pendingRevocation)
	if err := r.Orgs.Revoke(ctx, p.org, p.instanceURL, p.token); err != nil {
		log.FromContext(ctx).Info("revoking a withdrawn hand-out's token failed again", "error", err.Error())
		return
	}
	r.pending.Delete(at.UID)
}

func (r *SalesforceAccessTokenReconciler) lockOrg(namespace, org string) func() {
	m, _ := r.orgLocks.LoadOrStore(namespace+"/"+org, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// SetupWithManager watches hand-outs, and wakes an org's hand-outs when the org, its
// implementation or a named stage changes.
func (r *SalesforceAccessTokenReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.SalesforceAccessToken{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&sfv1.SalesforceOrg{}, handler.EnqueueRequestsFromMapFunc(r.forOrg)).
		Watches(&sfv1.PipelineStage{}, handler.EnqueueRequestsFromMapFunc(r.forStage)).
		Watches(&sfv1.SalesforceImplementation{}, handler.EnqueueRequestsFromMapFunc(r.forImplementation)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(concurrency, 1)}).
		Named("salesforceaccesstoken").
		Complete(r)
}

func (r *SalesforceAccessTokenReconciler) requests(ctx context.Context, namespace, field, name string) []reconcile.Request {
	list, err := index.AccessTokensFor(ctx, r.Client, namespace, field, name)
	if err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list))
	for i := range list {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list[i])})
	}
	return reqs
}

func (r *SalesforceAccessTokenReconciler) forOrg(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, o.GetNamespace(), index.AccessOrgRef, o.GetName())
}

func (r *SalesforceAccessTokenReconciler) forStage(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, o.GetNamespace(), index.AccessStageRef, o.GetName())
}

func (r *SalesforceAccessTokenReconciler) forImplementation(ctx context.Context, o client.Object) []reconcile.Request {
	orgs, err := rules.Members(ctx, r.Client, o.(*sfv1.SalesforceImplementation))
	if err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range orgs {
		reqs = append(reqs, r.forOrg(ctx, &orgs[i])...)
	}
	return reqs
}
