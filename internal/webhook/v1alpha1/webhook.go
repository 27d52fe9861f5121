// Package v1alpha1 holds the admission webhooks of salesforce.sfops.io/v1alpha1: the rules that
// need other objects (an org in use cannot be deactivated or deleted; one default Dev Hub per
// namespace; one production org per implementation; one org per Secret key holding a refresh
// token; a sandbox in its production org's shard) and the created-by record. Single-object
// rules live in the CRD schema, not here. The webhooks read through the uncached API reader, with
// the CRDs' selectable fields as server-side field selectors, so a refusal never rests on a stale
// cache; they never read Secrets and never call Salesforce.
package v1alpha1

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// Setup registers every webhook with the manager's webhook server.
func Setup(mgr ctrl.Manager) error {
	r := mgr.GetAPIReader()
	mgr.GetWebhookServer().Register("/mutate-salesforce-sfops-io-v1alpha1-salesforceorg",
		&webhook.Admission{Handler: &CreatedByHandler{}})
	if err := ctrl.NewWebhookManagedBy(mgr, &sfv1.SalesforceOrg{}).
		WithValidator(&OrgValidator{Reader: r, Access: mgr.GetClient()}).
		Complete(); err != nil {
		return err
	}
	mgr.GetWebhookServer().Register("/mutate-salesforce-sfops-io-v1alpha1-salesforceaccesstoken",
		&webhook.Admission{Handler: &RequesterHandler{Reader: r}})
	if err := ctrl.NewWebhookManagedBy(mgr, &sfv1.SalesforceAccessToken{}).
		WithValidator(&AccessTokenValidator{Access: mgr.GetClient()}).
		Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &sfv1.PipelineStage{}).
		WithValidator(&StageValidator{Reader: r}).
		Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &sfv1.SalesforceImplementation{}).
		WithValidator(&ImplementationValidator{Reader: r}).
		Complete()
}

// namespaceTerminating reports whether the namespace is being deleted: everything in it goes, so
// the in-use rules must not keep the namespace from terminating (the finalizer still orders it).
func namespaceTerminating(ctx context.Context, r client.Reader, namespace string) bool {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false
	}
	return !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating
}

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
