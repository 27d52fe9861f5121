package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func sandboxOfOrg(ns, name, prod, sandboxName string) *sfv1.SalesforceOrg {
	return &sfv1.SalesforceOrg{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeSandbox, CheckInterval: &metav1.Duration{Duration: time.Hour},
			SandboxOf: &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: prod}, SandboxName: sandboxName}},
	}
}

// A sandbox authorised through its production org connects with no credential of its own, and
// after a sandbox refresh (new org id, its tokens dead) it is Connected again without a person:
// re-authorised, the new id recorded, an event saying so.
func TestSandboxAuthorisedThroughProduction(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	prodFake, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	sbFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox, Production: prodFake, SandboxName: "uat"})

	mustCreate(t, sandboxOfOrg(ns, "uat", "prod", "uat"))
	got := waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.OrgID != sbFake.OrgID() || got.Status.CredentialSource != sfv1.CredentialSourceSandboxOf || got.Status.SandboxAuthSecret != "uat-sandbox-auth" {
		t.Fatalf("status: org %s (want %s), source %s, secret %q", got.Status.OrgID, sbFake.OrgID(), got.Status.CredentialSource, got.Status.SandboxAuthSecret)
	}
	owned := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "uat-sandbox-auth"}, owned); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(owned, got) {
		t.Fatalf("the sandbox's Secret is not owned by its org: %v", owned.OwnerReferences)
	}

	oldID := sbFake.OrgID()
	sbFake.RefreshSandbox()
	waitHandled(t, ns, "uat", requestCheck(t, ns, "uat"))
	got = waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.OrgID != sbFake.OrgID() {
		t.Fatalf("after the refresh: status.orgId %s, want %s", got.Status.OrgID, sbFake.OrgID())
	}
	want := fmt.Sprintf("org id %s → %s", oldID, sbFake.OrgID())
	eventually(t, "a SandboxRefreshed event", func() string {
		for _, e := range orgEvents(t, ns, "uat") {
			if e.Reason == sfv1.ReasonSandboxRefreshed && strings.Contains(e.Note, want) {
				return ""
			}
		}
		return "none saying " + want
	})
	for _, e := range orgEvents(t, ns, "uat") {
		if e.Type == "Warning" {
			t.Errorf("a refresh handled without a person raised a warning: %s %s", e.Reason, e.Note)
		}
	}

	// The production org is in use while a sandbox is authorised through it.
	prod := getOrg(t, ns, "prod")
	prod.Spec.State = sfv1.StateInactive
	if err := k8s.Update(ctx, prod); err == nil || !strings.Contains(err.Error(), `sandboxes uat are authorised through it`) {
		t.Errorf("deactivating a production org with a sandboxOf sandbox: %v", err)
	}
	if err := k8s.Delete(ctx, getOrg(t, ns, "prod"), client.DryRunAll); err == nil || !strings.Contains(err.Error(), `sandboxes uat are authorised through it`) {
		t.Errorf("deleting a production org with a sandboxOf sandbox: %v", err)
	}

	// The production org disconnected: the sandbox waits, naming it.
	prodFake.RevokeRefreshTokens()
	prodFake.ExpireAccessTokens()
	waitHandled(t, ns, "prod", requestCheck(t, ns, "prod"))
	waitOrgReady(t, ns, "prod", metav1.ConditionFalse, sfv1.ReasonCredentialRejected)
	got = waitOrgReady(t, ns, "uat", metav1.ConditionFalse, sfv1.ReasonProductionOrgNotReady)
	if msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, `SalesforceOrg "prod"`) {
		t.Errorf("ProductionOrgNotReady message: %s", msg)
	}
	putSecret(t, ns, "prod-auth", prodFake.Reauthorize())
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)

	assertNoIssuedSecretIn(t, ns)
}

// While the production org says the sandbox is still activating, the sandbox is Reconciling and
// retried; it connects once activation ends.
func TestSandboxStillActivatingIsRetried(t *testing.T) {
	ns := newNamespace(t)
	prodFake, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	sbFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-qa", Kind: sftest.Sandbox, Production: prodFake, SandboxName: "qa"})
	sbFake.SetActivating(true)
	mustCreate(t, sandboxOfOrg(ns, "qa", "prod", "qa"))
	got := waitOrgReady(t, ns, "qa", metav1.ConditionFalse, sfv1.ReasonSandboxActivating)
	if c := condition(got.Status.Conditions, sfv1.ConditionReconciling); c == nil || c.Reason != sfv1.ReasonProgressingWithRetry {
		t.Errorf("an activating sandbox is not Reconciling with ProgressingWithRetry: %+v", c)
	}
	sbFake.SetActivating(false)
	waitOrgReady(t, ns, "qa", metav1.ConditionTrue, sfv1.ReasonConnected)
}

// assertNoIssuedSecretIn checks that no token the fake ever issued appears in the manager's logs,
// or in the events and statuses of namespace ns.
func assertNoIssuedSecretIn(t *testing.T, ns string) {
	t.Helper()
	haystacks := []string{logs.String()}
	var events eventsv1.EventList
	if err := k8s.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		haystacks = append(haystacks, e.Note)
	}
	var orgs sfv1.SalesforceOrgList
	if err := k8s.List(context.Background(), &orgs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, o := range orgs.Items {
		haystacks = append(haystacks, fmt.Sprintf("%+v", o.Status))
	}
	for _, s := range fakeSF.IssuedSecrets() {
		for i, h := range haystacks {
			if strings.Contains(h, s) {
				t.Errorf("a credential issued by the fake appears in haystack %d (logs are 0)", i)
			}
		}
	}
}

// A production org on JWT bearer authorises its sandboxes with the same app and key, for the
// sandbox user: the operator keeps only the user and login URL, never a copy of the key.
func TestSandboxAuthorisedThroughAJWTProduction(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	prodFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-prod", Kind: sftest.Production})
	key, user, keyPEM := prodFake.JWT()
	putKeySecret(t, ns, "prod-jwt", map[string][]byte{"tls.key": keyPEM})
	mustCreate(t, jwtOrg(ns, "prod", sfv1.OrgTypeProduction, key, user, "prod-jwt"))
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	sbFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox, Production: prodFake, SandboxName: "uat"})

	mustCreate(t, sandboxOfOrg(ns, "uat", "prod", "uat"))
	got := waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.OrgID != sbFake.OrgID() || got.Status.Username != sbFake.Username() {
		t.Fatalf("status: org %s as %s, want %s as %s", got.Status.OrgID, got.Status.Username, sbFake.OrgID(), sbFake.Username())
	}
	owned := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "uat-sandbox-auth"}, owned); err != nil {
		t.Fatal(err)
	}
	for k, v := range owned.Data {
		if strings.Contains(string(v), "PRIVATE KEY") {
			t.Fatalf("the sandbox's Secret holds a copy of the production key under %q", k)
		}
	}
	oldID := sbFake.OrgID()
	sbFake.RefreshSandbox()
	waitHandled(t, ns, "uat", requestCheck(t, ns, "uat"))
	got = waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.OrgID == oldID || got.Status.OrgID != sbFake.OrgID() {
		t.Fatalf("after the refresh: status.orgId %s, want %s", got.Status.OrgID, sbFake.OrgID())
	}
	eventually(t, "a SandboxRefreshed event", func() string { return findEvent(t, ns, "uat", "Normal", sfv1.ReasonSandboxRefreshed) })
}

// A failure of the production org's credential lands on the production org: its sandbox says
// ProductionOrgNotReady naming it (never "log in again" for itself), and reconnects within
// seconds of the production org reconnecting.
func TestProductionFailureLandsOnProduction(t *testing.T) {
	ns := newNamespace(t)
	prodFake, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	prodFake.SetRotateRefreshTokens(true)
	sbFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-qa", Kind: sftest.Sandbox, Production: prodFake, SandboxName: "qa"})
	mustCreate(t, sandboxOfOrg(ns, "qa", "prod", "qa"))
	waitOrgReady(t, ns, "qa", metav1.ConditionTrue, sfv1.ReasonConnected)

	prodFake.RevokeRefreshTokens() // the production org's user logged out everywhere
	sbFake.RevokeRefreshTokens()   // the sandbox must be authorised through production again
	waitHandled(t, ns, "qa", requestCheck(t, ns, "qa"))
	got := waitOrgReady(t, ns, "qa", metav1.ConditionFalse, sfv1.ReasonProductionOrgNotReady)
	c := condition(got.Status.Conditions, sfv1.ConditionReady)
	if !strings.Contains(c.Message, `SalesforceOrg "prod"`) || strings.Contains(c.Message, "sf org login") {
		t.Fatalf("the sandbox's message: %s", c.Message)
	}

	fresh := prodFake.Reauthorize() // a person reconnects the production org
	putSecret(t, ns, "prod-auth", fresh)
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	eventuallyWithin(t, 10*time.Second, "the sandbox connected again", func() string {
		if c := condition(getOrg(t, ns, "qa").Status.Conditions, sfv1.ConditionConnected); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("Connected: %+v", c)
		}
		return ""
	})
	if n := prodFake.SpentTokensPresented() + sbFake.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
}
