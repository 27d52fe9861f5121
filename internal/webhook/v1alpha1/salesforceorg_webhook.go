package v1alpha1

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// +kubebuilder:webhook:path=/mutate-salesforce-sfops-io-v1alpha1-salesforceorg,mutating=true,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceorgs,verbs=create;update,versions=v1alpha1,name=msalesforceorg-v1alpha1.sfops.io,admissionReviewVersions=v1

// CreatedByHandler records who created a SalesforceOrg. On create it overwrites whatever the
// request carried (so it cannot be forged); on update it restores the record if the request
// dropped it (kubectl replace, an apply of a manifest without it), and the validator refuses any
// other change. It reads and patches metadata only, so a malformed spec still reaches schema
// validation and gets its message from there.
type CreatedByHandler struct{}

// Handle answers with a JSON patch of metadata.annotations, or nothing.
func (h *CreatedByHandler) Handle(_ context.Context, req admission.Request) admission.Response {
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	want, set := "", false
	switch req.Operation {
	case admissionv1.Create:
		want, set = req.UserInfo.Username, true
	case admissionv1.Update:
		var old metav1.PartialObjectMetadata
		if err := json.Unmarshal(req.OldObject.Raw, &old); err == nil {
			_, has := obj.Annotations[sfv1.CreatedByAnnotation]
			want, set = old.Annotations[sfv1.CreatedByAnnotation]
			set = set && !has
		}
	}
	if !set {
		return admission.Allowed("")
	}
	annotations := map[string]string{}
	for k, v := range obj.Annotations {
		annotations[k] = v
	}
	annotations[sfv1.CreatedByAnnotation] = want
	return admission.Patched("", jsonpatch.JsonPatchOperation{
		Operation: "add", Path: "/metadata/annotations", Value: annotations,
	})
}

// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-salesforceorg,mutating=false,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceorgs,verbs=create;update;delete,versions=v1alpha1,name=vsalesforceorg-v1alpha1.sfops.io,admissionReviewVersions=v1

// OrgValidator refuses what would break an org's users or the namespace's uniqueness rules.
type OrgValidator struct {
	Reader client.Reader
}

// ValidateCreate enforces one default Dev Hub per namespace and one production org per implementation.
func (v *OrgValidator) ValidateCreate(ctx context.Context, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	return nil, v.uniqueness(ctx, org, nil)
}

// ValidateUpdate refuses Active → Inactive while Active stages map to the org, and any change to
// the created-by record, besides the uniqueness rules.
func (v *OrgValidator) ValidateUpdate(ctx context.Context, old, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	if was, now := old.Annotations[sfv1.CreatedByAnnotation], org.Annotations[sfv1.CreatedByAnnotation]; was != now {
		return nil, apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceorgs").GroupResource(), org.Name,
			field.Forbidden(field.NewPath("metadata", "annotations").Key(sfv1.CreatedByAnnotation),
				"records who created the org and is set by the operator; it cannot be changed"))
	}
	if old.IsActive() && !org.IsActive() {
		stages, err := rules.StagesHolding(ctx, v.Reader, org.Namespace, org.Name)
		if err != nil {
			return nil, err
		}
		if len(stages) > 0 {
			return nil, inUse(org.Name, fmt.Sprintf(
				"SalesforceOrg %q cannot be set to Inactive: it is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive, first.",
				org.Name, index.StageNames(stages)))
		}
	}
	return nil, v.uniqueness(ctx, org, old)
}

// ValidateDelete refuses deleting an org that Active stages map to.
func (v *OrgValidator) ValidateDelete(ctx context.Context, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	stages, err := rules.StagesHolding(ctx, v.Reader, org.Namespace, org.Name)
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 || namespaceTerminating(ctx, v.Reader, org.Namespace) {
		return nil, nil
	}
	return nil, inUse(org.Name, fmt.Sprintf(
		"SalesforceOrg %q cannot be deleted: it is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive, first.",
		org.Name, index.StageNames(stages)))
}

// uniqueness: at most one default Dev Hub per namespace, at most one Production org per implementation.
func (v *OrgValidator) uniqueness(ctx context.Context, org, old *sfv1.SalesforceOrg) error {
	if org.Spec.DefaultDevHub && (old == nil || !old.Spec.DefaultDevHub) {
		holder, err := rules.DefaultDevHubOf(ctx, v.Reader, org.Namespace, org.Name)
		if err != nil {
			return err
		}
		if holder != "" {
			return apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceOrg").GroupKind(), org.Name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "defaultDevHub"), true, fmt.Sprintf(
					"SalesforceOrg %q is already the default Dev Hub of namespace %q; a namespace has at most one. Set defaultDevHub: false on one of them.",
					holder, org.Namespace)),
			})
		}
	}
	ref := org.Spec.ImplementationRef
	if old != nil && old.Spec.Type == org.Spec.Type && old.Spec.ImplementationRef != nil && ref != nil && old.Spec.ImplementationRef.Name == ref.Name {
		return nil // unchanged membership
	}
	other, err := rules.OtherProductionMember(ctx, v.Reader, org)
	if err != nil || other == "" {
		return err
	}
	return apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceOrg").GroupKind(), org.Name, field.ErrorList{
		field.Invalid(field.NewPath("spec", "implementationRef", "name"), ref.Name, fmt.Sprintf(
			"SalesforceImplementation %q already has a production org, SalesforceOrg %q; an implementation has at most one. Join it as a Sandbox, DeveloperEdition or Scratch org, or use another implementation.",
			ref.Name, other)),
	})
}

// inUse is the refusal for an org that stages still hold: 403 Forbidden, with the full sentence.
func inUse(name, msg string) error {
	err := apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceorgs").GroupResource(), name, fmt.Errorf("%s", msg))
	err.ErrStatus.Message = msg
	return err
}
