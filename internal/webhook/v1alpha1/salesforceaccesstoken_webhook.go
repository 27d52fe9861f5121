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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// +kubebuilder:webhook:path=/mutate-salesforce-sfops-io-v1alpha1-salesforceaccesstoken,mutating=true,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceaccesstokens,verbs=create;update,versions=v1alpha1,name=msalesforceaccesstoken-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"create-or-requester-change","expression":"request.operation != 'UPDATE' || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// RequesterHandler records who asks for a SalesforceAccessToken. On create it writes the
// request's own user (name, UID, groups, extra) into sfv1.RequesterAnnotation, overwriting
// whatever the object carried, so it cannot be forged, and copies the org's shard label, so the
// hand-out is served by the manager that owns the org's credential chain. On update it restores
// the record whenever the request dropped or changed it. The validator refuses a change that got
// past this (the webhook bypassed).
type RequesterHandler struct {
	Reader client.Reader
}

// Handle answers with a JSON patch of metadata, or nothing.
func (h *RequesterHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	var obj sfv1.SalesforceAccessToken
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	annotations := map[string]string{}
	for k, v := range obj.Annotations {
		annotations[k] = v
	}
	var patches []jsonpatch.JsonPatchOperation
	switch req.Operation {
	case admissionv1.Create:
		record, err := json.Marshal(requesterOf(req))
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		annotations[sfv1.RequesterAnnotation] = string(record)
		patches = append(patches, jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: annotations})
		org := &sfv1.SalesforceOrg{}
		if obj.Spec.OrgRef.Name != "" && h.Reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: obj.Spec.OrgRef.Name}, org) == nil {
			if shard, ok := org.Labels[sfv1.ShardLabel]; ok && obj.Labels[sfv1.ShardLabel] != shard {
				labels := map[string]string{}
				for k, v := range obj.Labels {
					labels[k] = v
				}
				labels[sfv1.ShardLabel] = shard
				patches = append(patches, jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels", Value: labels})
			}
		}
	case admissionv1.Update:
		var old metav1.PartialObjectMetadata
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return admission.Allowed("")
		}
		want, had := old.Annotations[sfv1.RequesterAnnotation]
		if got, has := annotations[sfv1.RequesterAnnotation]; !had || (has && got == want) {
			return admission.Allowed("")
		}
		annotations[sfv1.RequesterAnnotation] = want
		patches = append(patches, jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: annotations})
	}
	if len(patches) == 0 {
		return admission.Allowed("")
	}
	return admission.Patched("", patches...)
}

func requesterOf(req admission.Request) rules.Requester {
	u := req.UserInfo
	who := rules.Requester{Username: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		who.Extra = map[string][]string{}
		for k, v := range u.Extra {
			who.Extra[k] = v
		}
	}
	return who
}

// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-salesforceaccesstoken,mutating=false,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceaccesstokens,verbs=create;update,versions=v1alpha1,name=vsalesforceaccesstoken-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"create-or-requester-change","expression":"request.operation != 'UPDATE' || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// AccessTokenValidator refuses a hand-out to a requester without the RBAC verb "use" on the org
// (a SubjectAccessReview of the request's own user), and any change of the requester record.
// The org's state (Inactive, suspended, not Connected) and the stage are the controller's to
// report: GitOps may apply a hand-out before its org exists.
type AccessTokenValidator struct {
	// Access creates SubjectAccessReviews.
	Access client.Client
}

// ValidateCreate runs the access review of the requester.
func (v *AccessTokenValidator) ValidateCreate(ctx context.Context, at *sfv1.SalesforceAccessToken) (admission.Warnings, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil, err
	}
	ok, why, err := rules.MayUse(ctx, v.Access, requesterOf(req), at.Namespace, at.Spec.OrgRef.Name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceaccesstokens").GroupResource(), at.Name, fmt.Errorf("%s", why))
	}
	return nil, nil
}

// ValidateUpdate refuses a change of the requester record. (The webhook sees an update only when
// its annotations change: the operator's finalizer patches never reach it.)
func (v *AccessTokenValidator) ValidateUpdate(_ context.Context, old, at *sfv1.SalesforceAccessToken) (admission.Warnings, error) {
	if old.Annotations[sfv1.RequesterAnnotation] != at.Annotations[sfv1.RequesterAnnotation] {
		return nil, apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceAccessToken").GroupKind(), at.Name, field.ErrorList{
			field.Forbidden(field.NewPath("metadata", "annotations").Key(sfv1.RequesterAnnotation),
				"the requester is recorded at creation and cannot be changed: create a new SalesforceAccessToken"),
		})
	}
	return nil, nil
}

// ValidateDelete allows every deletion.
func (v *AccessTokenValidator) ValidateDelete(context.Context, *sfv1.SalesforceAccessToken) (admission.Warnings, error) {
	return nil, nil
}
