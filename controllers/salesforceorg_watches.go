package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// SetupWithManager watches orgs, the Secrets they name (metadata only: no Secret data is cached),
// the stages that map to them, their implementations, and the namespace's other default Dev Hubs.
func (r *SalesforceOrgReconciler) SetupWithManager(mgr ctrl.Manager) error {
	conc := r.MaxConcurrentReconciles
	if conc == 0 {
		conc = 8
	}
	if r.MaxConcurrentChecks > 0 {
		r.Salesforce = &boundedChecker{Checker: r.Salesforce, slots: make(chan struct{}, r.MaxConcurrentChecks)}
	}
	if r.SecretMetadata == nil {
		r.SecretMetadata = mgr.GetCache()
	}
	r.secretUsers = newSecretUsers()
	if err := mgr.Add(releaseClaimsOnStop{r: r}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.SalesforceOrg{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate{},
			finalizerDroppedPredicate{name: OrgFinalizer}))).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.orgsForSecret)).
		Watches(&sfv1.PipelineStage{}, handler.EnqueueRequestsFromMapFunc(orgForStage)).
		Watches(&sfv1.SalesforceImplementation{}, handler.EnqueueRequestsFromMapFunc(r.orgsForImplementation),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletionPredicate{}))).
		Watches(&sfv1.SalesforceOrg{}, r.orgNeighbours()).
		WithOptions(controller.Options{MaxConcurrentReconciles: conc}).
		Named("salesforceorg").
		Complete(r)
}

// orgNeighbours is one handler of org events for what other orgs' events tell this controller
// (one informer listener instead of four: each keeps a notification buffer as large as the
// biggest burst it saw, ~256 KiB after the first list of 10,000 orgs). On every event it keeps
// the Secret-to-orgs map and wakes the sandboxes authorised through the org; on a spec change the
// namespace's other default Dev Hub claimants; on any update it lets the reconciler's memory of a
// status write go once the cache has it. Like EnqueueRequestsFromMapFunc, an update maps both the
// old and the new object.
func (r *SalesforceOrgReconciler) orgNeighbours() handler.TypedEventHandler[client.Object, reconcile.Request] {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	enqueue := func(ctx context.Context, q queue, o client.Object, specChanged bool) {
		reqs := r.sandboxesOf(ctx, o)
		if specChanged {
			reqs = append(reqs, r.otherDefaultDevHubs(ctx, o)...)
		}
		for _, req := range reqs {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			r.secretUsers.add(e.Object.(*sfv1.SalesforceOrg))
			enqueue(ctx, q, e.Object, true)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			was, now := e.ObjectOld.(*sfv1.SalesforceOrg), e.ObjectNew.(*sfv1.SalesforceOrg)
			r.secretUsers.update(was, now)
			r.memory.cacheCaughtUp(now)
			specChanged := was.Generation != now.Generation
			enqueue(ctx, q, was, specChanged)
			enqueue(ctx, q, now, specChanged)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			r.secretUsers.remove(e.Object.(*sfv1.SalesforceOrg))
			enqueue(ctx, q, e.Object, true)
		},
	}
}

func (r *SalesforceOrgReconciler) orgsForSecret(_ context.Context, o client.Object) []reconcile.Request {
	if r.ownWrites.echo(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, o.GetResourceVersion()) {
		return nil
	}
	var reqs []reconcile.Request
	for _, name := range r.secretUsers.orgs(o.GetNamespace(), o.GetName()) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
	}
	return reqs
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

// otherDefaultDevHubs re-evaluates the namespace's other default Dev Hub claimants when one's
// spec changes (not on every status patch).
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

// sandboxesOf wakes the sandboxes authorised through an org when it changes (its connection, its
// state), and, for a sandbox that goes, its production org (whose deletion may wait for it).
func (r *SalesforceOrgReconciler) sandboxesOf(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.orgsMatching(ctx, o.GetNamespace(), index.OrgSandboxOf, o.GetName())
	if sb := o.(*sfv1.SalesforceOrg).Spec.SandboxOf; sb != nil && !o.GetDeletionTimestamp().IsZero() {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: sb.ProductionOrgRef.Name}})
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

// finalizerDroppedPredicate passes updates that take the operator's finalizer off an object that
// is not being deleted (someone removed it by hand, or a GitOps tool replaced metadata), so the
// controller puts it back at once instead of at the object's next check.
type finalizerDroppedPredicate struct {
	predicate.Funcs
	name string
}

func (p finalizerDroppedPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectNew.GetDeletionTimestamp().IsZero() &&
		controllerutil.ContainsFinalizer(e.ObjectOld, p.name) && !controllerutil.ContainsFinalizer(e.ObjectNew, p.name)
}

// boundedChecker lets at most cap(slots) calls to Salesforce run at once.
type boundedChecker struct {
	Checker
	slots chan struct{}
}

// slotHeld marks a context whose call already holds a slot: a sandbox's check that authorises
// it through its production org inside the check must not wait for a second slot.
type slotHeld struct{}

// acquire waits for a slot; it fails only when ctx ends first. held reports a slot that ctx's
// call already holds (nothing to release).
func (b *boundedChecker) acquire(ctx context.Context) (context.Context, bool, error) {
	if ctx.Value(slotHeld{}) != nil {
		return ctx, false, nil
	}
	select {
	case b.slots <- struct{}{}:
		return context.WithValue(ctx, slotHeld{}, true), true, nil
	case <-ctx.Done():
		return ctx, false, &salesforce.Error{Reason: salesforce.ReasonUnreachable, Retryable: true, Message: "the check was cancelled while it waited for its turn"}
	}
}

func (b *boundedChecker) release() { <-b.slots }

func (b *boundedChecker) CheckChain(ctx context.Context, ch salesforce.Chain, storedVersion string) (*salesforce.CheckResult, error) {
	ctx, took, err := b.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if took {
		defer b.release()
	}
	return b.Checker.CheckChain(ctx, ch, storedVersion)
}

func (b *boundedChecker) AuthorizeSandbox(ctx context.Context, prod salesforce.Chain, storedVersion, sandboxName string) (*salesforce.SandboxAuthorization, error) {
	ctx, took, err := b.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if took {
		defer b.release()
	}
	return b.Checker.AuthorizeSandbox(ctx, prod, storedVersion, sandboxName)
}
