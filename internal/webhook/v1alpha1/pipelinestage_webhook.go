package v1alpha1

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-pipelinestage,mutating=false,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=pipelinestages,verbs=create;update,versions=v1alpha1,name=vpipelinestage-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-a-metadata-only-update","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// StageValidator refuses mapping an Active stage to an Inactive org, or to a member of a
// suspended implementation. A stage may name an org that
// does not exist yet: GitOps applies in any order, and the stage is simply not Ready until it does.
type StageValidator struct {
	Reader client.Reader
}

// ValidateCreate checks the stage's org.
func (v *StageValidator) ValidateCreate(ctx context.Context, s *sfv1.PipelineStage) (admission.Warnings, error) {
	return v.check(ctx, s)
}

// ValidateUpdate checks the org again only when the mapping or the state changes, so an unrelated
// edit never fails because of what happened to the org meanwhile.
func (v *StageValidator) ValidateUpdate(ctx context.Context, old, s *sfv1.PipelineStage) (admission.Warnings, error) {
	if old.Spec.OrgRef == s.Spec.OrgRef && old.IsActive() == s.IsActive() {
		return nil, nil
	}
	return v.check(ctx, s)
}

// ValidateDelete allows every deletion.
func (v *StageValidator) ValidateDelete(context.Context, *sfv1.PipelineStage) (admission.Warnings, error) {
	return nil, nil
}

func (v *StageValidator) check(ctx context.Context, s *sfv1.PipelineStage) (admission.Warnings, error) {
	if !s.IsActive() {
		return nil, nil
	}
	org := &sfv1.SalesforceOrg{}
	err := v.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.OrgRef.Name}, org)
	if apierrors.IsNotFound(err) {
		return admission.Warnings{fmt.Sprintf("SalesforceOrg %q does not exist yet; the stage will not be Ready until it does", s.Spec.OrgRef.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	if !org.IsActive() {
		return nil, apierrors.NewInvalid(sfv1.GroupVersion.WithKind("PipelineStage").GroupKind(), s.Name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "orgRef", "name"), s.Spec.OrgRef.Name, fmt.Sprintf(
				"SalesforceOrg %q is Inactive, and inactive connections cannot be mapped to a stage. Set the org Active first, or give the stage state: Inactive.",
				org.Name)),
		})
	}
	impl, err := rules.Suspended(ctx, v.Reader, org)
	if err != nil {
		return nil, err
	}
	if impl != nil {
		return nil, apierrors.NewInvalid(sfv1.GroupVersion.WithKind("PipelineStage").GroupKind(), s.Name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "orgRef", "name"), s.Spec.OrgRef.Name, fmt.Sprintf(
				"SalesforceOrg %q belongs to SalesforceImplementation %q, which is suspended: its orgs are not checked, so an active stage cannot use them. Resume the implementation (suspend: false) first, or give the stage state: Inactive.",
				org.Name, impl.Name)),
		})
	}
	return nil, nil
}
