package rules

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// Requester is who asked for a hand-out (SalesforceAccessToken), as the admission webhook
// recorded it from the request (sfv1.RequesterAnnotation).
type Requester struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// MayUse asks the API server (a SubjectAccessReview, which stores nothing) whether who holds the
// RBAC verb "use" on the SalesforceOrg org in namespace. On refusal it says why and the fix. The
// admission webhook (which refuses a hand-out) and the controller (which checks again before every
// hand-out, so a removed binding withdraws it) share it.
func MayUse(ctx context.Context, c client.Client, who Requester, namespace, org string) (bool, string, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: who.Username, UID: who.UID, Groups: who.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: sfv1.UseVerb, Group: sfv1.GroupVersion.Group,
			Resource: "salesforceorgs", Name: org,
		},
	}}
	if len(who.Extra) > 0 {
		sar.Spec.Extra = map[string]authorizationv1.ExtraValue{}
		for k, v := range who.Extra {
			sar.Spec.Extra[k] = v
		}
	}
	if err := c.Create(ctx, sar); err != nil {
		return false, "", fmt.Errorf("asking the API server whether %q may use SalesforceOrg %q failed: %w", who.Username, org, err)
	}
	if sar.Status.Allowed {
		return true, "", nil
	}
	return false, fmt.Sprintf("%q may not use SalesforceOrg %q in namespace %q: that needs the RBAC verb %q on salesforceorgs %q (API group %s). Bind the operator's ClusterRole salesforce-operator-org-user (so named by config/default and by a Helm release named salesforce-operator; other releases prefix org-user with their name) to it with a RoleBinding in %q, which grants the verb on every org of the namespace, or grant a Role with that verb on resourceNames [%q].",
		who.Username, org, namespace, sfv1.UseVerb, org, sfv1.GroupVersion.Group, namespace, org), nil
}
