package controllers_test

import (
	"context"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func secretValue(t *testing.T, ns, name string) string {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return string(s.Data[sfv1.DefaultAuthSecretKey])
}

// rotate forces a token refresh that rotates, and waits until the Secret holds the new URL.
func rotate(t *testing.T, fo *sftest.Org, ns, name string) {
	t.Helper()
	fo.ExpireAccessTokens()
	waitHandled(t, ns, name, requestCheck(t, ns, name))
	eventually(t, "the Secret to hold the rotated refresh token", func() string {
		if secretValue(t, ns, name+"-auth") != fo.AuthURL() {
			return "the Secret holds an old refresh token"
		}
		return ""
	})
}

// A tool that writes a rotated-away (dead) value back into the Secret is undone from the org's
// rotation record; a person's new credential is never overwritten.
func TestRevertedCredentialIsRestoredAndAPersonsWins(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "rev", sftest.Production, sfv1.OrgTypeProduction)
	original := fo.AuthURL()
	fo.SetRotateRefreshTokens(true)
	rotate(t, fo, ns, "rev")
	rec := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rev-rotation"}, rec); err != nil {
		t.Fatalf("no rotation record: %v", err)
	}
	if len(rec.OwnerReferences) != 1 || rec.OwnerReferences[0].Name != "rev" || rec.Labels[sfv1.CredentialLabel] != "true" {
		t.Fatalf("the rotation record is not owned by the org or not labelled: %v %v", rec.OwnerReferences, rec.Labels)
	}

	putSecret(t, ns, "rev-auth", original) // External Secrets or a GitOps sync writes the dead value back
	eventually(t, "the current credential to be restored", func() string {
		if secretValue(t, ns, "rev-auth") != fo.AuthURL() {
			return "the Secret still holds the dead value"
		}
		return ""
	})
	eventually(t, "a CredentialReverted event", func() string { return findEvent(t, ns, "rev", "Warning", sfv1.ReasonCredentialReverted) })
	waitOrgReady(t, ns, "rev", metav1.ConditionTrue, sfv1.ReasonConnected)

	fo.SetRotateRefreshTokens(false)
	fresh := fo.Reauthorize() // a person logs in again
	putSecret(t, ns, "rev-auth", fresh)
	waitHandled(t, ns, "rev", requestCheck(t, ns, "rev"))
	if secretValue(t, ns, "rev-auth") != fresh {
		t.Fatal("a person's new credential was overwritten")
	}
	waitOrgReady(t, ns, "rev", metav1.ConditionTrue, sfv1.ReasonConnected)
}

// Before any rotation, the org says when a rotated token could not be saved: here an admission
// policy refuses updates to the Secret. The connection itself stays Ready.
func TestSecretNotWritableIsSaidBeforeARotation(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fail := admissionregistrationv1.Deny
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-ro"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: `object.metadata.name != "ro-auth"`, Message: "read-only Secret"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-ro"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{fail},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	mustCreate(t, policy, binding)
	defer func() { _ = k8s.Delete(ctx, binding); _ = k8s.Delete(ctx, policy) }()
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-ro", Kind: sftest.Production})
	putSecret(t, ns, "ro-auth", fo.AuthURL())
	eventually(t, "the policy to refuse updates", func() string {
		s := &corev1.Secret{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ro-auth"}, s)
		if err := k8s.Update(ctx, s, client.DryRunAll); err == nil {
			return "update allowed"
		}
		return ""
	})
	mustCreate(t, newOrg(ns, "ro", sfv1.OrgTypeProduction, "ro-auth"))
	got := waitOrgReady(t, ns, "ro", metav1.ConditionTrue, sfv1.ReasonConnected)
	c := condition(got.Status.Conditions, sfv1.ConditionSecretWritable)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != sfv1.ReasonSecretUpdateForbidden ||
		!strings.Contains(c.Message, `Secret "ro-auth"`) || !strings.Contains(c.Message, "rotation") {
		t.Fatalf("SecretWritable: %+v", c)
	}
	eventually(t, "a SecretUpdateForbidden warning", func() string { return findEvent(t, ns, "ro", "Warning", sfv1.ReasonSecretUpdateForbidden) })

	// A writable Secret says so too.
	_, ok := connectedOrg(t, ns, "rw", sftest.Production, sfv1.OrgTypeProduction)
	if c := condition(ok.Status.Conditions, sfv1.ConditionSecretWritable); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SecretWritable on a writable Secret: %+v", c)
	}
}

func ptrTo[T any](v T) *T { return &v }
