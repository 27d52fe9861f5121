package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
)

// ImplementationFinalizer lets the controller apply spec.deletionPolicy before the implementation goes.
const ImplementationFinalizer = "salesforce.sfops.io/deletion-policy"

// SalesforceImplementationReconciler summarises an implementation's member orgs, records its
// suspension, and applies its deletion policy. It never calls Salesforce: suspension works by the
// org reconciler not checking members of a suspended implementation.
type SalesforceImplementationReconciler struct {
	client.Client
	Notify notifier
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations/finalizers,verbs=update
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs,verbs=delete

// Reconcile runs the prologue, then membership, suspension and health.
func (r *SalesforceImplementationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	impl := &sfv1.SalesforceImplementation{}
	if err := r.Get(ctx, req.NamespacedName, impl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if impl.DeletionTimestamp.IsZero() && controllerutil.AddFinalizer(impl, ImplementationFinalizer) {
		if err := r.Update(ctx, impl); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	patcher := newStatusPatcher(r.Client, impl)
	var sum summary
	defer func() {
		impl.Status.ObservedGeneration = impl.Generation
		setKstatus(&impl.Status.Conditions, impl.Generation, sum)
		if err := patcher.patch(ctx, impl); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	members, err := r.members(ctx, impl)
	if err != nil {
		sum = retrying(sfv1.ReasonProgressing, "Listing the member orgs failed: %v", err)
		return ctrl.Result{}, err
	}
	if !impl.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, impl, members, &sum)
	}

	switch {
	case impl.Spec.Suspend && impl.Status.SuspendedAt == nil:
		impl.Status.SuspendedAt = &metav1.Time{Time: time.Now()}
		r.Notify.normal(ctx, impl, sfv1.ReasonSuspended, "Suspend", "Suspended: the member orgs are not checked until suspend is false.")
	case !impl.Spec.Suspend && impl.Status.SuspendedAt != nil:
		impl.Status.SuspendedAt = nil
		r.Notify.normal(ctx, impl, "Resumed", "Resume", "Resumed: the member orgs are checked again.")
	}

	sum = r.summarize(ctx, impl, members)
	return ctrl.Result{}, nil
}

// members lists the orgs that joined through spec.implementationRef, plus the productionOrgRef org.
func (r *SalesforceImplementationReconciler) members(ctx context.Context, impl *sfv1.SalesforceImplementation) ([]sfv1.SalesforceOrg, error) {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(impl.Namespace),
		client.MatchingFields{index.OrgImplementation: impl.Name}); err != nil {
		return nil, err
	}
	members := list.Items
	if ref := impl.Spec.ProductionOrgRef; ref != nil && !containsOrg(members, ref.Name) {
		prod := &sfv1.SalesforceOrg{}
		err := r.Get(ctx, types.NamespacedName{Namespace: impl.Namespace, Name: ref.Name}, prod)
		if err == nil {
			members = append(members, *prod)
		} else if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	return members, nil
}

func containsOrg(orgs []sfv1.SalesforceOrg, name string) bool {
	for i := range orgs {
		if orgs[i].Name == name {
			return true
		}
	}
	return false
}

// summarize fills production, sandboxes and the counts, and decides Ready.
func (r *SalesforceImplementationReconciler) summarize(_ context.Context, impl *sfv1.SalesforceImplementation, members []sfv1.SalesforceOrg) summary {
	prodName := ""
	if ref := impl.Spec.ProductionOrgRef; ref != nil {
		prodName = ref.Name
	} else {
		for _, m := range members {
			if m.Spec.Type == sfv1.OrgTypeProduction {
				prodName = m.Name
				break
			}
		}
	}
	impl.Status.Production = nil
	impl.Status.Sandboxes = nil
	impl.Status.OrgCount, impl.Status.ConnectedCount = 0, 0
	var prod *sfv1.SalesforceOrg
	var down []string
	for i := range members {
		m := &members[i]
		ms := sfv1.MemberStatus{Name: m.Name, OrgID: m.Status.OrgID, Connection: m.Status.Connection}
		if ms.Connection == "" {
			ms.Connection = sfv1.ConnectionUnknown
		}
		impl.Status.OrgCount++
		if ms.Connection == sfv1.ConnectionConnected {
			impl.Status.ConnectedCount++
		}
		if m.Name == prodName {
			prod = m
			impl.Status.Production = &ms
		} else {
			impl.Status.Sandboxes = append(impl.Status.Sandboxes, ms)
		}
		if (m.Name == prodName || m.IsActive()) && ms.Connection != sfv1.ConnectionConnected {
			down = append(down, fmt.Sprintf("%s (%s)", m.Name, ms.Connection))
		}
	}

	switch {
	case impl.Spec.Suspend:
		return readyTrue(sfv1.ReasonSuspended, "Suspended since %s: the member orgs are not checked.",
			impl.Status.SuspendedAt.UTC().Format(time.RFC3339))
	case prodName != "" && prod == nil:
		return notReady(sfv1.ReasonProductionOrgNotFound,
			"productionOrgRef names SalesforceOrg %q, which does not exist (yet) in namespace %q.", prodName, impl.Namespace)
	case prod != nil && prod.Spec.Type != sfv1.OrgTypeProduction:
		return stalled(sfv1.ReasonProductionOrgWrongType,
			"productionOrgRef names SalesforceOrg %q, which is of type %s: name an org of type Production.", prodName, prod.Spec.Type)
	case len(down) > 0:
		return notReady(sfv1.ReasonMembersDisconnected, "Not connected: %s.", strings.Join(down, ", "))
	}
	return readyTrue(sfv1.ReasonConnected, "All %d member orgs are connected.", impl.Status.ConnectedCount)
}

// reconcileDelete applies the deletion policy, then releases the finalizer.
func (r *SalesforceImplementationReconciler) reconcileDelete(ctx context.Context, impl *sfv1.SalesforceImplementation, members []sfv1.SalesforceOrg, sum *summary) (ctrl.Result, error) {
	if impl.Spec.DeletionPolicy == sfv1.DeletionPolicyDelete && len(members) > 0 {
		var blocked []string
		for i := range members {
			m := &members[i]
			stages, err := index.ActiveStagesForOrg(ctx, r.Client, m.Namespace, m.Name)
			if err != nil {
				*sum = retrying(sfv1.ReasonProgressing, "Listing the pipeline stages of %q failed: %v", m.Name, err)
				return ctrl.Result{}, err
			}
			if len(stages) > 0 {
				blocked = append(blocked, fmt.Sprintf("SalesforceOrg %q is mapped to active pipeline stages %s", m.Name, index.StageNames(stages)))
				continue
			}
			if m.DeletionTimestamp.IsZero() {
				if err := r.Delete(ctx, m); client.IgnoreNotFound(err) != nil {
					*sum = retrying(sfv1.ReasonDeletingMembers, "Deleting SalesforceOrg %q failed: %v", m.Name, err)
					return ctrl.Result{}, err
				}
			}
		}
		if len(blocked) > 0 {
			*sum = stalled(sfv1.ReasonDeletionBlocked,
				"Deletion waits: %s. Remove those orgs from the stages, or set the stages Inactive.", strings.Join(blocked, "; "))
		} else {
			*sum = notReady(sfv1.ReasonDeletingMembers, "Deleting %d member orgs.", len(members))
		}
		return ctrl.Result{}, nil // member deletions and stage changes bring us back
	}
	*sum = notReady(sfv1.ReasonProgressing, "Deleting.")
	if controllerutil.RemoveFinalizer(impl, ImplementationFinalizer) {
		if err := r.Update(ctx, impl); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches implementations and their member orgs (old and new membership both).
func (r *SalesforceImplementationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.SalesforceImplementation{}).
		Watches(&sfv1.SalesforceOrg{}, handler.EnqueueRequestsFromMapFunc(r.implementationsForOrg)).
		Named("salesforceimplementation").
		Complete(r)
}

func (r *SalesforceImplementationReconciler) implementationsForOrg(ctx context.Context, o client.Object) []reconcile.Request {
	org := o.(*sfv1.SalesforceOrg)
	var reqs []reconcile.Request
	if ref := org.Spec.ImplementationRef; ref != nil {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: org.Namespace, Name: ref.Name}})
	}
	for _, name := range ImplementationsNamingProduction(ctx, r.Client, org) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: org.Namespace, Name: name}})
	}
	return reqs
}

// ImplementationsNamingProduction lists the implementations whose productionOrgRef names org.
func ImplementationsNamingProduction(ctx context.Context, c client.Reader, org *sfv1.SalesforceOrg) []string {
	var list sfv1.SalesforceImplementationList
	if err := c.List(ctx, &list, client.InNamespace(org.Namespace)); err != nil {
		return nil
	}
	var names []string
	for _, impl := range list.Items {
		if ref := impl.Spec.ProductionOrgRef; ref != nil && ref.Name == org.Name {
			names = append(names, impl.Name)
		}
	}
	return names
}
