package v1alpha1

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-salesforceimplementation,mutating=false,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceimplementations,verbs=create;update,versions=v1alpha1,name=vsalesforceimplementation-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-a-metadata-only-update","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// ImplementationValidator refuses two implementations naming one production org, and suspending
// an implementation whose orgs active stages use (for the same reason an org in use cannot be
// made Inactive).
type ImplementationValidator struct {
	Reader client.Reader
}

// ValidateCreate refuses a productionOrgRef that another implementation already names.
func (v *ImplementationValidator) ValidateCreate(ctx context.Context, impl *sfv1.SalesforceImplementation) (admission.Warnings, error) {
	return nil, v.productionUnclaimed(ctx, impl)
}

// ValidateUpdate refuses a new productionOrgRef that another implementation names, and
// suspend: false → true while active stages map to a member org.
func (v *ImplementationValidator) ValidateUpdate(ctx context.Context, old, impl *sfv1.SalesforceImplementation) (admission.Warnings, error) {
	if ref := impl.Spec.ProductionOrgRef; ref != nil && (old.Spec.ProductionOrgRef == nil || old.Spec.ProductionOrgRef.Name != ref.Name) {
		if err := v.productionUnclaimed(ctx, impl); err != nil {
			return nil, err
		}
	}
	if old.Spec.Suspend || !impl.Spec.Suspend {
		return nil, nil
	}
	stages, err := rules.StagesHoldingMembers(ctx, v.Reader, impl)
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

func (v *ImplementationValidator) productionUnclaimed(ctx context.Context, impl *sfv1.SalesforceImplementation) error {
	other, err := rules.ProductionClaimedBy(ctx, v.Reader, impl)
	if err != nil || other == "" {
		return err
	}
	ref := impl.Spec.ProductionOrgRef
	return apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceImplementation").GroupKind(), impl.Name, field.ErrorList{
		field.Invalid(field.NewPath("spec", "productionOrgRef", "name"), ref.Name, fmt.Sprintf(
			"SalesforceOrg %q is already the production org of SalesforceImplementation %q; a production org belongs to one implementation. Name another org, or remove it from %q first.",
			ref.Name, other, other)),
	})
}
