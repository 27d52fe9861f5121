package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/controllers"
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

// rotationRecordOf reads the org's rotation record: <org>-rotation-<the first 8 hex digits of its UID>.
func rotationRecordOf(t *testing.T, ns, org string) *corev1.Secret {
	t.Helper()
	uid := strings.ReplaceAll(string(getOrg(t, ns, org).UID), "-", "")[:8]
	rec := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: org + "-rotation-" + uid}, rec); err != nil {
		t.Fatalf("no rotation record: %v", err)
	}
	return rec
}

// A Secret that happens to have the name older versions gave the rotation record (here, the
// user's own auth Secret) is never taken over: no data replaced, no owner reference.
func TestRotationRecordNeverTakesOverASecret(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-own", Kind: sftest.Production})
	putSecret(t, ns, "own-rotation", fo.AuthURL()) // the user's auth Secret, named as the legacy record
	mustCreate(t, newOrg(ns, "own", sfv1.OrgTypeProduction, "own-rotation"))
	waitOrgReady(t, ns, "own", metav1.ConditionTrue, sfv1.ReasonConnected)
	fo.SetRotateRefreshTokens(true)
	fo.ExpireAccessTokens()
	waitHandled(t, ns, "own", requestCheck(t, ns, "own"))
	eventually(t, "the Secret to hold the rotated refresh token", func() string {
		if secretValue(t, ns, "own-rotation") != fo.AuthURL() {
			return "the Secret holds an old refresh token"
		}
		return ""
	})
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "own-rotation"}, s); err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 0 || len(s.Data) != 1 {
		t.Fatalf("the user's Secret was taken over: owners %v, %d keys", s.OwnerReferences, len(s.Data))
	}
	rotationRecordOf(t, ns, "own")
	if n := fo.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
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
	rec := rotationRecordOf(t, ns, "rev")
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
	// Nothing is exchanged that could not be saved: the org stalls before the token request,
	// saying what refuses the write, and the credential stays alive.
	got := waitOrgReady(t, ns, "ro", metav1.ConditionFalse, sfv1.ReasonSecretUpdateForbidden)
	c := condition(got.Status.Conditions, sfv1.ConditionSecretWritable)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != sfv1.ReasonSecretUpdateForbidden ||
		!strings.Contains(c.Message, `Secret "ro-auth"`) || !strings.Contains(c.Message, "admission policy") {
		t.Fatalf("SecretWritable: %+v", c)
	}
	if s := condition(got.Status.Conditions, sfv1.ConditionStalled); s == nil || s.Status != metav1.ConditionTrue ||
		!strings.Contains(s.Message, "read-only Secret") || strings.Contains(s.Message, "RBAC:") {
		t.Fatalf("Stalled: %+v", s)
	}
	if n := fakeSF.CallsFor(fo); n != 0 {
		t.Fatalf("%d Salesforce requests for a credential that could not be saved", n)
	}
	eventually(t, "a SecretUpdateForbidden warning", func() string { return findEvent(t, ns, "ro", "Warning", sfv1.ReasonSecretUpdateForbidden) })

	// Fixed (the policy goes), a requested check connects with the credential that waited.
	_ = k8s.Delete(ctx, binding)
	_ = k8s.Delete(ctx, policy)
	eventually(t, "the policy to allow updates", func() string {
		s := &corev1.Secret{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ro-auth"}, s)
		if err := k8s.Update(ctx, s, client.DryRunAll); err != nil {
			return "update refused"
		}
		return ""
	})
	requestCheck(t, ns, "ro")
	got = waitOrgReady(t, ns, "ro", metav1.ConditionTrue, sfv1.ReasonConnected)
	if c := condition(got.Status.Conditions, sfv1.ConditionSecretWritable); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SecretWritable once the policy is gone: %+v", c)
	}

	// A writable Secret says so too.
	_, ok := connectedOrg(t, ns, "rw", sftest.Production, sfv1.OrgTypeProduction)
	if c := condition(ok.Status.Conditions, sfv1.ConditionSecretWritable); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("SecretWritable on a writable Secret: %+v", c)
	}
}

func ptrTo[T any](v T) *T { return &v }

// Another process's live claim on the Secret (a leader or shard hand-over, an upgrade) holds this
// one's exchange back until the claim ends; meanwhile the org stays as it was (Ready True).
func TestForeignClaimHoldsTheExchangeBack(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo, _ := connectedOrg(t, ns, "claimed", sftest.Production, sfv1.OrgTypeProduction)
	fo.SetRotateRefreshTokens(true)
	granted := fo.RefreshesGranted()
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "claimed-auth"}, s); err != nil {
		t.Fatal(err)
	}
	ends := time.Now().Add(time.Second)
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[controllers.ExchangeClaimAnnotation] = "other-process-1 " + ends.UTC().Format(time.RFC3339)
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	fo.ExpireAccessTokens()
	requestCheck(t, ns, "claimed")
	for time.Now().Before(ends.Add(4 * time.Second)) {
		if fo.RefreshesGranted() != granted {
			t.Fatal("the refresh token was exchanged while another process's claim was live")
		}
		if c := condition(getOrg(t, ns, "claimed").Status.Conditions, sfv1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			t.Fatalf("Ready while waiting for a claim: %+v", c)
		}
		time.Sleep(200 * time.Millisecond)
	}
	eventually(t, "the exchange once the claim ended", func() string {
		if fo.RefreshesGranted() == granted {
			return "no exchange yet"
		}
		return ""
	})
	waitOrgReady(t, ns, "claimed", metav1.ConditionTrue, sfv1.ReasonConnected)
	if n := fo.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
}
