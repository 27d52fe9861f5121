package controllers_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// Bug 7: two implementations may not name one production org.
func TestTwoImplementationsCannotNameOneProductionOrg(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newImpl(ns, "acme", "prod"))
	err := k8s.Create(context.Background(), newImpl(ns, "acme2", "prod"))
	want := `SalesforceOrg "prod" is already the production org of SalesforceImplementation "acme"`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "spec.productionOrgRef.name") {
		t.Fatalf("a second implementation naming the same production org: %v", err)
	}
	mustCreate(t, newImpl(ns, "other", "prod-b"))
	other := getImpl(t, ns, "other")
	other.Spec.ProductionOrgRef.Name = "prod"
	if err := k8s.Update(context.Background(), other); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("re-pointing an implementation at a claimed production org: %v", err)
	}
}

// Bug 8: an Active stage cannot map to a member of an already-suspended implementation.
func TestActiveStageRefusedOnASuspendedImplementationsOrg(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newImpl(ns, "acme", "prod"))
	member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	member(t, ns, "uat", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
	impl := getImpl(t, ns, "acme")
	impl.Spec.Suspend = true
	if err := k8s.Update(context.Background(), impl); err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"uat", "prod"} {
		err := k8s.Create(context.Background(), newStage(ns, "release-"+org, "release", org))
		want := `SalesforceOrg "` + org + `" belongs to SalesforceImplementation "acme", which is suspended`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("an Active stage on suspended member %s: %v", org, err)
		}
	}
	inactive := newStage(ns, "release-uat", "release", "uat")
	inactive.Spec.State = sfv1.StateInactive
	mustCreate(t, inactive)
}

// Bug 9: under deletionPolicy Orphan there is nothing to do at deletion, so no finalizer; under
// Delete there is one, and switching back removes it.
func TestImplementationFinalizerOnlyUnderDelete(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newImpl(ns, "acme", ""))
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
	if f := getImpl(t, ns, "acme").Finalizers; len(f) != 0 {
		t.Fatalf("finalizers under Orphan: %v", f)
	}
	impl := getImpl(t, ns, "acme")
	impl.Spec.DeletionPolicy = sfv1.DeletionPolicyDelete
	if err := k8s.Update(context.Background(), impl); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the finalizer under Delete", func() string {
		if f := getImpl(t, ns, "acme").Finalizers; len(f) != 1 {
			return "none"
		}
		return ""
	})
}

// Bug 2: the manager's cache of Secret metadata holds no annotations, so the credential that a
// client-side `kubectl apply` puts in last-applied-configuration is never in memory.
func TestSecretMetadataCacheHoldsNoCredential(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-ca", Kind: sftest.Production})
	manifest := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"ca-auth","namespace":"` + ns +
		`","labels":{"salesforce.sfops.io/credential":"true"}},"stringData":{"sfdxAuthUrl":"` + fo.AuthURL() + `"}}`
	kubectlIn(t, manifest, "apply", "-f", "-")
	org := newOrg(ns, "ca", sfv1.OrgTypeProduction, "ca-auth")
	mustCreate(t, org)
	waitOrgReady(t, ns, "ca", metav1.ConditionTrue, sfv1.ReasonConnected)

	stored := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ca-auth"}, stored); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stored.Annotations[corev1.LastAppliedConfigAnnotation], "sfdxAuthUrl") {
		t.Fatal("the test's Secret was not created by client-side apply")
	}
	cached := &metav1.PartialObjectMetadata{}
	cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := mgrCache.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ca-auth"}, cached); err != nil {
		t.Fatal(err)
	}
	if len(cached.Annotations) != 0 || len(cached.ManagedFields) != 0 {
		t.Fatalf("the cached Secret metadata keeps %d annotations and %d managedFields entries", len(cached.Annotations), len(cached.ManagedFields))
	}
}
