package controllers

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
)

// PipelineStageReconciler reports whether a stage's org exists, is Active and is Connected.
// It follows the org through a watch, never by polling, and never calls Salesforce.
type PipelineStageReconciler struct {
	client.Client
	Notify notifier
}

// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=pipelinestages,verbs=get;list;watch
// +kubebuilder:rbac:groups=salesforce.sfops.io,resources=pipelinestages/status,verbs=get;update;patch

// Reconcile resolves spec.orgRef and mirrors the org's state into the stage's status.
func (r *PipelineStageReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	stage := &sfv1.PipelineStage{}
	if err := r.Get(ctx, req.NamespacedName, stage); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !stage.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	patcher := newStatusPatcher(r.Client, stage)
	var sum summary
	defer func() {
		stage.Status.ObservedGeneration = stage.Generation
		setKstatus(&stage.Status.Conditions, stage.Generation, sum)
		if err := patcher.patch(ctx, stage, func(o client.Object) any { return o.(*sfv1.PipelineStage).Status }); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	org := &sfv1.SalesforceOrg{}
	orgName := stage.Spec.OrgRef.Name
	if err := r.Get(ctx, types.NamespacedName{Namespace: stage.Namespace, Name: orgName}, org); err != nil {
		if !apierrors.IsNotFound(err) {
			sum = retrying(sfv1.ReasonProgressing, "Reading SalesforceOrg %q failed: %v", orgName, err)
			return ctrl.Result{}, err
		}
		stage.Status.OrgConnection = sfv1.ConnectionUnknown
		sum = notReady(sfv1.ReasonOrgNotFound, "SalesforceOrg %q does not exist (yet) in namespace %q.", orgName, stage.Namespace)
		return ctrl.Result{}, nil
	}
	stage.Status.OrgConnection = org.Status.Connection
	if stage.Status.OrgConnection == "" {
		stage.Status.OrgConnection = sfv1.ConnectionUnknown
	}
	prev := meta.FindStatusCondition(stage.Status.Conditions, sfv1.ConditionReady)

	switch {
	case !stage.IsActive():
		sum = readyTrue(sfv1.ReasonInactive, "The stage is Inactive: it does not hold SalesforceOrg %q.", orgName)
	case !org.IsActive():
		sum = notReady(sfv1.ReasonOrgInactive,
			"SalesforceOrg %q is Inactive: inactive connections cannot be mapped to a stage. Set the org Active, or map the stage to another org.", orgName)
	case org.Status.Connection != sfv1.ConnectionConnected:
		why := "it has not been checked yet"
		if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionReady); c != nil && c.Message != "" {
			why = c.Message
		}
		sum = notReady(sfv1.ReasonOrgDisconnected, "SalesforceOrg %q is not Connected: %s", orgName, why)
	default:
		sum = readyTrue(sfv1.ReasonConnected, "Mapped to SalesforceOrg %q (org %s), which is Connected.", orgName, org.Status.OrgID)
	}
	if sum.reason == sfv1.ReasonOrgInactive && (prev == nil || prev.Reason != sfv1.ReasonOrgInactive) {
		r.Notify.warning(ctx, stage, sfv1.ReasonOrgInactive, "Resolve", "%s", sum.message)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches stages, and orgs through the index from org name to stages.
func (r *PipelineStageReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&sfv1.PipelineStage{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&sfv1.SalesforceOrg{}, handler.EnqueueRequestsFromMapFunc(r.stagesForOrg)).
		Named("pipelinestage").
		Complete(r)
}

func (r *PipelineStageReconciler) stagesForOrg(ctx context.Context, o client.Object) []reconcile.Request {
	stages, err := index.StagesForOrg(ctx, r.Client, o.GetNamespace(), o.GetName())
	if err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(stages))
	for i := range stages {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&stages[i])})
	}
	return reqs
}
