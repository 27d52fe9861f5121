package v1alpha1

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
)

// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-salesforceimplementation,mutating=false,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceimplementations,verbs=update,versions=v1alpha1,name=vsalesforceimplementation-v1alpha1.sfops.io,admissionReviewVersions=v1

// ImplementationValidator refuses suspending an implementation whose orgs active stages use,
// for the same reason an org in use cannot be made Inactive.
type ImplementationValidator struct {
	Reader client.Reader
}

// ValidateCreate allows every creation: a new implementation has no members yet.
func (v *ImplementationValidator) ValidateCreate(context.Context, *sfv1.SalesforceImplementation) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate refuses suspend: false → true while active stages map to a member org.
func (v *ImplementationValidator) ValidateUpdate(ctx context.Context, old, impl *sfv1.SalesforceImplementation) (admission.Warnings, error) {
	if old.Spec.Suspend || !impl.Spec.Suspend {
		return nil, nil
	}
	stages, err := activeStagesOfMembers(ctx, v.Reader, impl)
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, nil
	}
	msg := fmt.Sprintf(
		"SalesforceImplementation %q cannot be suspended: its orgs are mapped to active pipeline stages %s. Remove them from those stages, or set them Inactive, first.",
		impl.Name, index.StageNames(stages))
	err2 := apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceimplementations").GroupResource(), impl.Name, fmt.Errorf("%s", msg))
	err2.ErrStatus.Message = msg
	return nil, err2
}

// ValidateDelete allows every deletion: deletionPolicy Delete waits for stages in the controller.
func (v *ImplementationValidator) ValidateDelete(context.Context, *sfv1.SalesforceImplementation) (admission.Warnings, error) {
	return nil, nil
}

// activeStagesOfMembers lists the Active stages of every member org (by implementationRef, plus
// the productionOrgRef).
func activeStagesOfMembers(ctx context.Context, r client.Reader, impl *sfv1.SalesforceImplementation) ([]sfv1.PipelineStage, error) {
	var members sfv1.SalesforceOrgList
	if err := r.List(ctx, &members, client.InNamespace(impl.Namespace),
		client.MatchingFields{index.OrgImplementation: impl.Name}); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, m := range members.Items {
		names[m.Name] = true
	}
	if ref := impl.Spec.ProductionOrgRef; ref != nil {
		names[ref.Name] = true
	}
	var all []sfv1.PipelineStage
	for name := range names {
		stages, err := activeStagesOf(ctx, r, impl.Namespace, name)
		if err != nil {
			return nil, err
		}
		all = append(all, stages...)
	}
	return all, nil
}
