package v1alpha1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/rules"
)

// +kubebuilder:webhook:path=/mutate-salesforce-sfops-io-v1alpha1-salesforceorg,mutating=true,failurePolicy=fail,sideEffects=None,groups=salesforce.sfops.io,resources=salesforceorgs,verbs=create;update,versions=v1alpha1,name=msalesforceorg-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-a-metadata-only-update","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// CreatedByHandler records who created a SalesforceOrg. On create it overwrites whatever the
// request carried (so it cannot be forged); on update it restores the stored record whenever the
// request dropped or changed it (kubectl replace, an apply of a manifest exported with
// `kubectl get -o yaml` and committed to Git), so such applies succeed and the record still never
// changes. The validator refuses a change that got past this (the webhook bypassed). It reads and patches metadata only, so a malformed spec still reaches schema
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
			got, has := obj.Annotations[sfv1.CreatedByAnnotation]
			want, set = old.Annotations[sfv1.CreatedByAnnotation]
			set = set && (!has || got != want)
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

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// The validating webhook also sees label changes (kubectl label): the shard label decides which
// manager exchanges an org's credential chain (see shards).
// +kubebuilder:webhook:path=/validate-salesforce-sfops-io-v1alpha1-salesforceorg,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=salesforce.sfops.io,resources=salesforceorgs,verbs=create;update;delete,versions=v1alpha1,name=vsalesforceorg-v1alpha1.sfops.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-a-metadata-only-update","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}) || (has(object.metadata.labels) ? object.metadata.labels : {}) != (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {})"}]}`

// OrgValidator refuses what would break an org's users or the namespace's uniqueness rules, and
// a credential Secret the requester may not use herself.
type OrgValidator struct {
	Reader client.Reader
	// Access asks the API server whether the requesting user may do something (SubjectAccessReview).
	Access client.Client
}

// ValidateCreate checks the requester's access to the Secret, one default Dev Hub per namespace,
// one production org per implementation, one org per credential chain and a sandbox's shard.
func (v *OrgValidator) ValidateCreate(ctx context.Context, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	if err := v.mayUseSecret(ctx, org); err != nil {
		return nil, err
	}
	if err := v.uniqueness(ctx, org, nil); err != nil {
		return nil, err
	}
	if err := v.oneChainOwner(ctx, org, nil); err != nil {
		return nil, err
	}
	return v.shards(ctx, org, nil)
}

// secretVerbs are what the operator does with an org's Secret on its behalf: read it, and, for an
// auth URL, write a rotated refresh token back. Whoever names the Secret must be allowed the same
// herself, or the operator would be her confused deputy. A sandboxOf org names no Secret.
func secretVerbs(org *sfv1.SalesforceOrg) []string {
	switch org.Source() {
	case sfv1.CredentialSourceJWT:
		return []string{"get"}
	case sfv1.CredentialSourceSandboxOf:
		return nil
	}
	return []string{"get", "update"}
}

// secretField is the path of the field that names the org's Secret.
func secretField(org *sfv1.SalesforceOrg) *field.Path {
	if org.Source() == sfv1.CredentialSourceJWT {
		return field.NewPath("spec", "jwt", "privateKeySecretRef", "name")
	}
	return field.NewPath("spec", "authSecretRef", "name")
}

// mayUseSecret refuses naming a Secret the requesting user may not get and update herself.
func (v *OrgValidator) mayUseSecret(ctx context.Context, org *sfv1.SalesforceOrg) error {
	if v.Access == nil {
		return nil
	}
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return err
	}
	u := req.UserInfo
	extra := map[string]authorizationv1.ExtraValue{}
	for k, vals := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(vals)
	}
	name := org.CredentialSecret()
	for _, verb := range secretVerbs(org) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: org.Namespace, Verb: verb, Resource: "secrets", Name: name,
			},
		}}
		if err := v.Access.Create(ctx, sar); err != nil {
			return fmt.Errorf("checking access to Secret %q: %w", name, err)
		}
		if !sar.Status.Allowed {
			return apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceorgs").GroupResource(), org.Name,
				field.Forbidden(secretField(org), fmt.Sprintf(
					"%s may not %s Secret %q in namespace %q, and the operator would %s it on your behalf; name a Secret you may get and update yourself, or ask for access to it",
					u.Username, verb, name, org.Namespace, map[string]string{"get": "read", "update": "write a rotated refresh token to"}[verb])))
		}
	}
	return nil
}

// ValidateUpdate refuses Active → Inactive while Active stages map to the org, and any change to
// the created-by record, besides the uniqueness rules.
func (v *OrgValidator) ValidateUpdate(ctx context.Context, old, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	if old.CredentialSecret() != org.CredentialSecret() {
		if err := v.mayUseSecret(ctx, org); err != nil {
			return nil, err
		}
	}
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
		if err := v.noSandboxes(ctx, org, "set to Inactive"); err != nil {
			return nil, err
		}
	}
	if err := v.uniqueness(ctx, org, old); err != nil {
		return nil, err
	}
	if err := v.oneChainOwner(ctx, org, old); err != nil {
		return nil, err
	}
	return v.shards(ctx, org, old)
}

// ValidateDelete refuses deleting an org that Active stages map to.
func (v *OrgValidator) ValidateDelete(ctx context.Context, org *sfv1.SalesforceOrg) (admission.Warnings, error) {
	stages, err := rules.StagesHolding(ctx, v.Reader, org.Namespace, org.Name)
	if err != nil {
		return nil, err
	}
	if namespaceTerminating(ctx, v.Reader, org.Namespace) {
		return nil, nil
	}
	var refusal error
	if len(stages) > 0 {
		refusal = inUse(org.Name, fmt.Sprintf(
			"SalesforceOrg %q cannot be deleted: it is mapped to active pipeline stages %s. Remove it from those stages, or set them Inactive, first.",
			org.Name, index.StageNames(stages)))
	} else if refusal = v.noSandboxes(ctx, org, "deleted"); refusal == nil {
		return nil, nil
	}
	var st *apierrors.StatusError
	if errors.As(refusal, &st) && st.ErrStatus.Reason == metav1.StatusReasonForbidden && v.rememberDeletion(ctx, org) {
		st.ErrStatus.Message += fmt.Sprintf(" The deletion is remembered: the operator deletes the org as soon as nothing holds it (remove the annotation %s to cancel).",
			sfv1.DeletionRequestedAnnotation)
	}
	return nil, refusal
}

// noSandboxes refuses to let a production org go while sandboxes are authorised through it.
func (v *OrgValidator) noSandboxes(ctx context.Context, org *sfv1.SalesforceOrg, what string) error {
	sandboxes, err := rules.SandboxesOf(ctx, v.Reader, org.Namespace, org.Name)
	if err != nil || len(sandboxes) == 0 {
		return err
	}
	return inUse(org.Name, fmt.Sprintf(
		"SalesforceOrg %q cannot be %s: sandboxes %s are authorised through it (spec.sandboxOf). Delete them, or give them another credential source, first.",
		org.Name, what, strings.Join(sandboxes, ", ")))
}

// rememberDeletion records a refused deletion on the org (deletion replay), unless the request
// is a dry run. It reports whether the record is there.
func (v *OrgValidator) rememberDeletion(ctx context.Context, org *sfv1.SalesforceOrg) bool {
	if v.Access == nil {
		return false
	}
	if _, ok := org.Annotations[sfv1.DeletionRequestedAnnotation]; ok {
		return true
	}
	if req, err := admission.RequestFromContext(ctx); err != nil || (req.DryRun != nil && *req.DryRun) {
		return false
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, sfv1.DeletionRequestedAnnotation, time.Now().UTC().Format(time.RFC3339))
	err := v.Access.Patch(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: org.Name}},
		client.RawPatch(types.MergePatchType, []byte(patch)))
	return err == nil
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

// oneChainOwner refuses to keep org's credential chain (its refresh token) where another org
// keeps its own: on create, and on update when the chain's location changed (an org that got
// past admission onto a shared key is reported by the controller, not locked out of updates).
func (v *OrgValidator) oneChainOwner(ctx context.Context, org, old *sfv1.SalesforceOrg) error {
	chain, ok := rules.ChainKey(org)
	if !ok {
		return nil
	}
	if old != nil {
		if was, wasOK := rules.ChainKey(old); wasOK && was == chain {
			return nil
		}
	}
	sharers, err := rules.ChainSharers(ctx, v.Reader, org)
	if err != nil || len(sharers) == 0 {
		return err
	}
	owner := &sharers[0]
	path := field.NewPath("spec", "authSecretRef", "name")
	if org.Source() == sfv1.CredentialSourceSandboxOf {
		path = field.NewPath("spec", "sandboxOf")
	}
	return apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceOrg").GroupKind(), org.Name, field.ErrorList{
		field.Invalid(path, chain.Secret, rules.ChainInUseMessage(org, owner.Name, !owner.DeletionTimestamp.IsZero())),
	})
}

// shards keeps a sandboxOf org in its production org's shard (sharding.sfops.io/key). Only the
// sandbox side is refused: creating a sandboxOf org in another shard than its production org, or
// changing its shard label or its sandboxOf so that it lands in one. A production org may be
// relabelled, with a warning naming the sandboxes it leaves behind, which the controller reports
// as ShardMismatch until they follow: refusing both sides would deadlock a move, since kubectl
// relabels one object at a time. `kubectl label sforg <production> <sandboxes...> ...` moves
// them together, production first. A sandbox left behind may still be edited, with a warning.
func (v *OrgValidator) shards(ctx context.Context, org, old *sfv1.SalesforceOrg) (admission.Warnings, error) {
	var warnings admission.Warnings
	relabelled := old == nil || !rules.SameShard(old, org)
	if sb := org.Spec.SandboxOf; sb != nil {
		msg, err := rules.ShardConflict(ctx, v.Reader, org)
		if err != nil {
			return nil, err
		}
		sameProduction := old != nil && old.Spec.SandboxOf != nil && old.Spec.SandboxOf.ProductionOrgRef.Name == sb.ProductionOrgRef.Name
		switch {
		case msg == "":
		case relabelled || !sameProduction:
			path := field.NewPath("spec", "sandboxOf", "productionOrgRef", "name")
			var value any = sb.ProductionOrgRef.Name
			if relabelled {
				path, value = field.NewPath("metadata", "labels").Key(sfv1.ShardLabel), field.OmitValueType{}
				if shard, ok := org.Labels[sfv1.ShardLabel]; ok {
					value = shard
				}
			}
			if relabelled && sameProduction {
				msg += fmt.Sprintf(" To move both, relabel the production org first: %s.", rules.MoveTogetherCommand(sb.ProductionOrgRef.Name, org))
			}
			return nil, apierrors.NewInvalid(sfv1.GroupVersion.WithKind("SalesforceOrg").GroupKind(), org.Name, field.ErrorList{
				field.Invalid(path, value, msg),
			})
		default:
			warnings = append(warnings, msg)
		}
	}
	if relabelled {
		_, msg, err := rules.SandboxesLeftBehind(ctx, v.Reader, org)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			warnings = append(warnings, msg)
		}
	}
	return warnings, nil
}

// inUse is the refusal for an org that stages still hold: 403 Forbidden, with the full sentence.
func inUse(name, msg string) error {
	err := apierrors.NewForbidden(sfv1.GroupVersion.WithResource("salesforceorgs").GroupResource(), name, fmt.Errorf("%s", msg))
	err.ErrStatus.Message = msg
	return err
}
