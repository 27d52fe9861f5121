package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// ImplementationFinalizer lets the controller apply deletionPolicy: Delete before the
// implementation goes. Under Orphan there is nothing to do at deletion, so there is no finalizer.
const ImplementationFinalizer = "salesforce.sfops.io/deletion-policy"

// SalesforceImplementationReconciler summarises an implementation's member orgs, records its
// suspension, and applies its deletion policy. It never calls Salesforce: suspension works by the
// org reconciler not checking members of a suspended implementation.
type SalesforceImplementationReconciler struct {
	client.Client
	Notify notifier
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceimplementations/finalizers,verbs=update
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=salesforceorgs,verbs=delete

// Reconcile runs the prologue, then membership, suspension and health.
func (r *SalesforceImplementationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	impl := &sfv1.SalesforceImplementation{}
	if err := r.Get(ctx, req.NamespacedName, impl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if impl.DeletionTimestamp.IsZero() {
		var err error
		if impl.Spec.DeletionPolicy == sfv1.DeletionPolicyDelete {
			err = addFinalizer(ctx, r.Client, impl, ImplementationFinalizer)
		} else {
			err = removeFinalizer(ctx, r.Client, impl, ImplementationFinalizer)
		}
		if err != nil {
			return ctrl.Result{}, err
		}
	}
	patcher := newStatusPatcher(r.Client, impl)
	var sum summary
	defer func() {
		impl.Status.ObservedGeneration = impl.Generation
		setKstatus(&impl.Status.Conditions, impl.Generation, sum)
		if err := patcher.patch(ctx, impl, func(o client.Object) any { return o.(*sfv1.SalesforceImplementation).Status }); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	members, err := rules.Members(ctx, r.Client, impl)
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

	claimedBy, err := rules.ProductionClaimedBy(ctx, r.Client, impl)
	if err != nil {
		sum = retrying(sfv1.ReasonProgressing, "Listing the implementations failed: %v", err)
		return ctrl.Result{}, err
	}
	sum = r.summarize(impl, members, claimedBy)
	return ctrl.Result{}, nil
}

// summarize fills production, sandboxes and the counts, and decides Ready. Counts and the Ready
// message speak of the members that are meant to be connected: the production org and the
// Active members.
func (r *SalesforceImplementationReconciler) summarize(impl *sfv1.SalesforceImplementation, members []sfv1.SalesforceOrg, claimedBy string) summary {
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
	expected := 0
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
		if m.Name == prodName || m.IsActive() {
			expected++
			if ms.Connection != sfv1.ConnectionConnected {
				down = append(down, fmt.Sprintf("%s (%s)", m.Name, ms.Connection))
			}
		}
	}

	switch {
	case impl.Spec.Suspend:
		return readyTrue(sfv1.ReasonSuspended, "Suspended since %s: the member orgs are not checked.",
			impl.Status.SuspendedAt.UTC().Format(time.RFC3339))
	case claimedBy != "" && claimedBy < impl.Name:
		return stalled(sfv1.ReasonProductionOrgClaimed,
			"productionOrgRef names SalesforceOrg %q, which is already the production org of SalesforceImplementation %q: name another org.", prodName, claimedBy)
	case prodName != "" && prod == nil:
		return notReady(sfv1.ReasonProductionOrgNotFound,
			"productionOrgRef names SalesforceOrg %q, which does not exist (yet) in namespace %q, or belongs to another implementation.", prodName, impl.Namespace)
	case prod != nil && prod.Spec.Type != sfv1.OrgTypeProduction:
		return stalled(sfv1.ReasonProductionOrgWrongType,
			"productionOrgRef names SalesforceOrg %q, which is of type %s: name an org of type Production.", prodName, prod.Spec.Type)
	case len(down) > 0:
		return notReady(sfv1.ReasonMembersDisconnected, "Not connected: %s.", strings.Join(down, ", "))
	}
	return readyTrue(sfv1.ReasonConnected, "All %d active member orgs are connected.", expected)
}

// reconcileDelete applies the deletion policy, then releases the finalizer.
func (r *SalesforceImplementationReconciler) reconcileDelete(ctx context.Context, impl *sfv1.SalesforceImplementation, members []sfv1.SalesforceOrg, sum *summary) (ctrl.Result, error) {
	if impl.Spec.DeletionPolicy == sfv1.DeletionPolicyDelete && len(members) > 0 {
		var blocked []string
		for i := range members {
			m := &members[i]
			stages, err := rules.StagesHolding(ctx, r.Client, m.Namespace, m.Name)
			if err != nil {
				*sum = retrying(sfv1.ReasonProgressing, "%v", err)
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
	return ctrl.Result{}, removeFinalizer(ctx, r.Client, impl, ImplementationFinalizer)
}

// SetupWithManager watches implementations, their member orgs (old and new membership both), and
// the stages of those orgs (a stage set Inactive can unblock a deletion).
func (r *SalesforceImplementationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.SalesforceImplementation{}).
		Watches(&sfv1.SalesforceOrg{}, handler.EnqueueRequestsFromMapFunc(r.implementationsForOrg)).
		Watches(&sfv1.PipelineStage{}, handler.EnqueueRequestsFromMapFunc(r.implementationsForStage),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletionPredicate{}))).
		Named("salesforceimplementation").
		Complete(r)
}

func (r *SalesforceImplementationReconciler) implementationsForOrg(ctx context.Context, o client.Object) []reconcile.Request {
	org := o.(*sfv1.SalesforceOrg)
	var reqs []reconcile.Request
	if ref := org.Spec.ImplementationRef; ref != nil {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: org.Namespace, Name: ref.Name}})
	}
	claims, _ := rules.ImplementationsNamingProduction(ctx, r.Client, org.Namespace, org.Name)
	for _, impl := range claims {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&impl)})
	}
	return reqs
}

func (r *SalesforceImplementationReconciler) implementationsForStage(ctx context.Context, o client.Object) []reconcile.Request {
	s := o.(*sfv1.PipelineStage)
	org := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.OrgRef.Name}, org); err != nil {
		return nil
	}
	return r.implementationsForOrg(ctx, org)
}
