package controllers_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// shippedOrgUserRole installs config/rbac's org-user ClusterRole, as shipped.
var shippedOrgUserRole sync.Once

// pipelineAccount creates a ServiceAccount bound (RoleBinding in ns) to the shipped
// org-user ClusterRole, and returns a client that acts as it.
func pipelineAccount(t testing.TB, ns, name string) client.Client {
	t.Helper()
	shippedOrgUserRole.Do(func() {
		raw, err := os.ReadFile("../config/rbac/org_user_role.yaml")
		if err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.ClusterRole{}
		if err := yaml.Unmarshal(raw, role); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(context.Background(), role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(apiErrorOnly(err))
		}
	})
	mustCreate(t,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-uses-orgs"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "org-user"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}})
	return asServiceAccount(t, ns, name)
}

func asServiceAccount(t testing.TB, ns, name string) client.Client {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	cl, err := client.New(c, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func newAccessToken(ns, name, org string) *sfv1.SalesforceAccessToken {
	return &sfv1.SalesforceAccessToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       sfv1.SalesforceAccessTokenSpec{OrgRef: sfv1.LocalObjectReference{Name: org}},
	}
}

func waitAccessReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *sfv1.SalesforceAccessToken {
	t.Helper()
	return waitReady(t, &sfv1.SalesforceAccessToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, status, reason)
}

// handOutSecret reads a hand-out's Secret ("" token when it does not exist).
func handOutSecret(t *testing.T, ns, name string) (*corev1.Secret, bool) {
	t.Helper()
	s := &corev1.Secret{}
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	return s, true
}

func waitSecretGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "Secret "+name+" deleted", func() string {
		if _, ok := handOutSecret(t, ns, name); ok {
			return "it still exists"
		}
		return ""
	})
}

// A pipeline's ServiceAccount, bound to the shipped role, gets a Secret with a live access token
// and where to use it, never the refresh token; deleting the hand-out deletes the Secret and
// revokes the token at Salesforce, and the org stays Connected.
func TestHandOutIssuedToABoundServiceAccountAndWithdrawnOnDelete(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo, org := connectedOrg(t, ns, "uat", sftest.Sandbox, sfv1.OrgTypeSandbox)
	deployer := pipelineAccount(t, ns, "deployer")

	forged := newAccessToken(ns, "deploy-1", "uat")
	forged.Annotations = map[string]string{sfv1.RequesterAnnotation: `{"username":"system:admin"}`}
	if err := deployer.Create(ctx, forged); err != nil {
		t.Fatalf("the bound ServiceAccount was refused: %v", apiErrorOnly(err))
	}
	at := waitAccessReady(t, ns, "deploy-1", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	if want := "system:serviceaccount:" + ns + ":deployer"; at.Status.Requester != want || !strings.Contains(at.Annotations[sfv1.RequesterAnnotation], want) {
		t.Errorf("requester %q (annotation %s), want %s: a forged record must be overwritten", at.Status.Requester, at.Annotations[sfv1.RequesterAnnotation], want)
	}
	if at.Status.ExpiresAt == nil || at.Status.ExpiresAt.Sub(at.CreationTimestamp.Time) != time.Hour {
		t.Errorf("expiresAt %v, want creation + 1h", at.Status.ExpiresAt)
	}
	s, ok := handOutSecret(t, ns, "deploy-1")
	if !ok {
		t.Fatal("no Secret")
	}
	tok := string(s.Data[sfv1.AccessTokenKey])
	if !fakeSF.AccessTokenLive(tok) || string(s.Data[sfv1.AccessTargetOrgKey]) != tok {
		t.Error("the Secret's token does not open a session, or SF_TARGET_ORG is not the token")
	}
	if got := string(s.Data[sfv1.AccessInstanceURLKey]); got != fakeSF.URL() {
		t.Errorf("instance URL %q", got)
	}
	if string(s.Data[sfv1.AccessOrgIDKey]) != org.Status.OrgID || string(s.Data[sfv1.AccessUsernameKey]) != org.Status.Username || len(s.Data[sfv1.AccessExpiresAtKey]) == 0 {
		t.Errorf("org id / username / expiry keys wrong: %v", keysOf(s.Data))
	}
	authURL := fo.AuthURL()
	refresh := authURL[strings.LastIndex(authURL[:strings.LastIndex(authURL, "@")], ":")+1 : strings.LastIndex(authURL, "@")]
	for k, v := range s.Data {
		if strings.Contains(string(v), refresh) || strings.Contains(string(v), "force://") {
			t.Errorf("key %s holds the refresh token", k)
		}
	}
	if !metav1.IsControlledBy(s, at) {
		t.Error("the Secret is not controlled by its SalesforceAccessToken")
	}
	if e := eventNote(t, ns, "uat", "AccessHandedOut", "deploy-1"); !strings.Contains(e, "deployer") || strings.Contains(e, tok) {
		t.Errorf("hand-out event: %q", e)
	}

	// The requester record cannot be changed afterwards.
	cur := get(t, &sfv1.SalesforceAccessToken{}, ns, "deploy-1")
	cur.Annotations[sfv1.RequesterAnnotation] = `{"username":"someone-else"}`
	if err := k8s.Update(ctx, cur); err == nil {
		if got := get(t, &sfv1.SalesforceAccessToken{}, ns, "deploy-1").Annotations[sfv1.RequesterAnnotation]; !strings.Contains(got, "deployer") {
			t.Errorf("the requester record changed to %s", got)
		}
	}

	if err := deployer.Delete(ctx, at); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitSecretGone(t, ns, "deploy-1")
	eventually(t, "token revoked", func() string {
		if fakeSF.AccessTokenLive(tok) {
			return "still live"
		}
		return ""
	})
	if e := eventNote(t, ns, "uat", "AccessWithdrawn", "deploy-1"); !strings.Contains(e, "revoked") || strings.Contains(e, tok) {
		t.Errorf("withdrawal event: %q", e)
	}
	for _, result := range []string{"issued", "withdrawn"} {
		if v, ok := metricValue(t, "salesforce_access_handouts_total", map[string]string{"namespace": ns, "org": "uat", "result": result}); !ok || v != 1 {
			t.Errorf("salesforce_access_handouts_total{result=%q} = %v (found %v), want 1", result, v, ok)
		}
	}
	v := requestCheck(t, ns, "uat")
	if org := waitHandled(t, ns, "uat", v); org.Status.Connection != sfv1.ConnectionConnected {
		t.Errorf("the org is %s after the revocation", org.Status.Connection)
	}
	if strings.Contains(logs.String(), tok) {
		t.Error("the access token appears in the manager's log")
	}
}

// eventNote waits for an event of reason regarding the object name whose note mentions about,
// and returns its note.
func eventNote(t *testing.T, ns, name, reason, about string) string {
	t.Helper()
	var note string
	eventually(t, reason+" event about "+about, func() string {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason && strings.Contains(e.Note, strconv.Quote(about)) {
				note = e.Note
				return ""
			}
		}
		return "none yet"
	})
	return note
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// Without the verb "use" on the org, admission refuses, naming the verb and the fix.
func TestHandOutRefusedWithoutTheUseVerb(t *testing.T) {
	ns := newNamespace(t)
	connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	// May create SalesforceAccessTokens, but holds no "use".
	mustCreate(t,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "intruder"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "create-only"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{sfv1.GroupVersion.Group}, Resources: []string{"salesforceaccesstokens"}, Verbs: []string{"create", "get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "create-only"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "create-only"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "intruder", Namespace: ns}}})
	err := asServiceAccount(t, ns, "intruder").Create(context.Background(), newAccessToken(ns, "steal", "prod"))
	if !apierrors.IsForbidden(err) {
		t.Fatalf("want Forbidden, got %v", apiErrorOnly(err))
	}
	for _, want := range []string{`verb "use"`, `salesforceorgs "prod"`, "salesforce-operator-org-user"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err.Error(), want)
		}
	}
}

// Every refusal withdraws: the Secret goes, the token is revoked, Ready says why and the fix.
// A live hand-out is withdrawn at once when its org turns Inactive or its implementation is
// suspended.
func TestHandOutRefusalsAndWithdrawals(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	connectedOrg(t, ns, "uat", sftest.Sandbox, sfv1.OrgTypeSandbox)
	mustCreate(t, newStage(ns, "release-uat", "release", "uat"))

	// A stage that maps to another org, and an inactive stage.
	wrong := newAccessToken(ns, "wrong-stage", "prod")
	wrong.Spec.StageRef = &sfv1.LocalObjectReference{Name: "release-uat"}
	mustCreate(t, wrong)
	if at := waitAccessReady(t, ns, "wrong-stage", metav1.ConditionFalse, sfv1.ReasonStageOrgMismatch); !strings.Contains(condition(at.Status.Conditions, sfv1.ConditionReady).Message, `maps to SalesforceOrg "uat"`) ||
		condition(at.Status.Conditions, sfv1.ConditionStalled) == nil {
		t.Errorf("stage mismatch: %+v", at.Status.Conditions)
	}
	missing := newAccessToken(ns, "no-org", "nothing")
	mustCreate(t, missing)
	waitAccessReady(t, ns, "no-org", metav1.ConditionFalse, sfv1.ReasonOrgNotFound)

	// A live hand-out through the stage, withdrawn when the stage goes Inactive.
	staged := newAccessToken(ns, "through-stage", "uat")
	staged.Spec.StageRef = &sfv1.LocalObjectReference{Name: "release-uat"}
	mustCreate(t, staged)
	waitAccessReady(t, ns, "through-stage", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	s, _ := handOutSecret(t, ns, "through-stage")
	tok := string(s.Data[sfv1.AccessTokenKey])
	stage := getStage(t, ns, "release-uat")
	stage.Spec.State = sfv1.StateInactive
	if err := k8s.Update(ctx, stage); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitAccessReady(t, ns, "through-stage", metav1.ConditionFalse, sfv1.ReasonStageInactive)
	waitSecretGone(t, ns, "through-stage")
	if fakeSF.AccessTokenLive(tok) {
		t.Error("the withdrawn token is still live")
	}

	// A live hand-out of prod, withdrawn when prod's implementation is suspended, issued again
	// when it resumes, and withdrawn when prod turns Inactive.
	mustCreate(t, &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
		Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme", ProductionOrgRef: &sfv1.LocalObjectReference{Name: "prod"}}})
	mustCreate(t, newAccessToken(ns, "prod-access", "prod"))
	waitAccessReady(t, ns, "prod-access", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	impl := getImpl(t, ns, "acme")
	impl.Spec.Suspend = true
	if err := k8s.Update(ctx, impl); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitAccessReady(t, ns, "prod-access", metav1.ConditionFalse, sfv1.ReasonImplementationSuspended)
	waitSecretGone(t, ns, "prod-access")
	impl = getImpl(t, ns, "acme")
	impl.Spec.Suspend = false
	if err := k8s.Update(ctx, impl); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitAccessReady(t, ns, "prod-access", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	org := getOrg(t, ns, "prod")
	org.Spec.State = sfv1.StateInactive
	if err := k8s.Update(ctx, org); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	at := waitAccessReady(t, ns, "prod-access", metav1.ConditionFalse, sfv1.ReasonOrgInactive)
	if msg := condition(at.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, "Set it Active") {
		t.Errorf("inactive message gives no fix: %s", msg)
	}
	waitSecretGone(t, ns, "prod-access")
	if e := eventNote(t, ns, "prod", "AccessWithdrawn", "prod-access"); e == "" {
		t.Errorf("no withdrawal event on the org: %q", e)
	}

	// An org that is not Connected: no token, Reconciling until it is.
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-dead", Kind: sftest.Sandbox})
	putSecret(t, ns, "dead-auth", fo.AuthURL())
	fo.RevokeRefreshTokens()
	mustCreate(t, newOrg(ns, "dead", sfv1.OrgTypeSandbox, "dead-auth"))
	mustCreate(t, newAccessToken(ns, "dead-access", "dead"))
	at = waitAccessReady(t, ns, "dead-access", metav1.ConditionFalse, sfv1.ReasonOrgNotConnected)
	if condition(at.Status.Conditions, sfv1.ConditionReconciling) == nil {
		t.Error("waiting for the org to connect is not Reconciling")
	}
	if _, ok := handOutSecret(t, ns, "dead-access"); ok {
		t.Error("a Secret was written for an org that is not Connected")
	}

	// Deleting the org withdraws its hand-outs at once.
	mustCreate(t, newAccessToken(ns, "uat-access", "uat"))
	waitAccessReady(t, ns, "uat-access", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	s, _ = handOutSecret(t, ns, "uat-access")
	tok = string(s.Data[sfv1.AccessTokenKey])
	if err := k8s.Delete(ctx, newStage(ns, "release-uat", "release", "uat")); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	if err := k8s.Delete(ctx, getOrg(t, ns, "uat")); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitSecretGone(t, ns, "uat-access")
	eventually(t, "the deleted org's hand-out revoked", func() string {
		if fakeSF.AccessTokenLive(tok) {
			return "still live"
		}
		return ""
	})
}

// Fifty hand-outs of one rotating org at once (reuse detection and the concurrent-refresh refusal
// on): no spent token is presented, no refresh is refused, every hand-out holds the chain's one
// session, and withdrawing one leaves the others (and the org) working.
func TestFiftyParallelHandOutsOfOneRotatingOrg(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-prod", Kind: sftest.Production})
	fo.SetRotateRefreshTokens(true)
	putSecret(t, ns, "prod-auth", fo.AuthURL())
	mustCreate(t, newOrg(ns, "prod", sfv1.OrgTypeProduction, "prod-auth"))
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	fo.ExpireAccessTokens() // every hand-out needs the chain exchanged again: one exchange, not fifty
	refreshesBefore := fo.RefreshesGranted()

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- k8s.Create(ctx, newAccessToken(ns, fmt.Sprintf("job-%02d", i), "prod"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(apiErrorOnly(err))
		}
	}
	tokens := map[string]int{}
	for i := range n {
		name := fmt.Sprintf("job-%02d", i)
		waitAccessReady(t, ns, name, metav1.ConditionTrue, sfv1.ReasonAccessIssued)
		s, _ := handOutSecret(t, ns, name)
		tokens[string(s.Data[sfv1.AccessTokenKey])]++
	}
	if got := fo.RefreshesGranted() - refreshesBefore; got != 1 {
		t.Errorf("%d refresh exchanges for %d hand-outs of one chain, want 1", got, n)
	}
	if len(tokens) != 1 {
		t.Errorf("%d distinct tokens over %d hand-outs, want the chain's one session", len(tokens), n)
	}
	if fo.SpentTokensPresented() != 0 || fo.ConcurrentRefreshesRefused() != 0 || fo.ChainsRevoked() != 0 {
		t.Fatalf("spent tokens presented %d, refreshes refused %d, chains revoked %d: want 0",
			fo.SpentTokensPresented(), fo.ConcurrentRefreshesRefused(), fo.ChainsRevoked())
	}

	// Withdrawing one leaves the shared session live for the other 49.
	if err := k8s.Delete(ctx, newAccessToken(ns, "job-00", "prod")); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitSecretGone(t, ns, "job-00")
	var tok string
	for k := range tokens {
		tok = k
	}
	if !fakeSF.AccessTokenLive(tok) || fo.AccessTokensRevoked() != 0 {
		t.Fatalf("withdrawing one hand-out revoked the session the other 49 hold (live %v, revoked %d)", fakeSF.AccessTokenLive(tok), fo.AccessTokensRevoked())
	}
	if e := eventNote(t, ns, "prod", "AccessWithdrawn", "job-00"); !strings.Contains(e, "49 other live hand-out") {
		t.Errorf("withdrawal event does not say why the token lives on: %q", e)
	}
	waitAccessReady(t, ns, "job-01", metav1.ConditionTrue, sfv1.ReasonAccessIssued)

	// The last one to go revokes it, once; the org stays Connected.
	if err := k8s.DeleteAllOf(ctx, &sfv1.SalesforceAccessToken{}, client.InNamespace(ns)); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	eventually(t, "every hand-out gone", func() string {
		var list sfv1.SalesforceAccessTokenList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		if len(list.Items) > 0 {
			return fmt.Sprintf("%d left", len(list.Items))
		}
		return ""
	})
	if fakeSF.AccessTokenLive(tok) || fo.AccessTokensRevoked() != 1 {
		t.Errorf("after the last withdrawal: live %v, revoked %d times (want once)", fakeSF.AccessTokenLive(tok), fo.AccessTokensRevoked())
	}
	v := requestCheck(t, ns, "prod")
	if org := waitHandled(t, ns, "prod", v); org.Status.Connection != sfv1.ConnectionConnected {
		t.Errorf("the org is %s", org.Status.Connection)
	}
	if fo.SpentTokensPresented() != 0 || fo.ChainsRevoked() != 0 {
		t.Errorf("spent %d revoked chains %d", fo.SpentTokensPresented(), fo.ChainsRevoked())
	}
}

// A sandbox authorised through its production org gets hand-outs of its own session (the
// operator's sandbox credential), with no auth Secret of its own anywhere near the requester.
func TestHandOutOfASandboxAuthorisedThroughProduction(t *testing.T) {
	ns := newNamespace(t)
	prodFake, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	sbFake := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox, Production: prodFake, SandboxName: "uat"})
	mustCreate(t, sandboxOfOrg(ns, "uat", "prod", "uat"))
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	deployer := pipelineAccount(t, ns, "deployer")
	if err := deployer.Create(context.Background(), newAccessToken(ns, "uat-deploy", "uat")); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	waitAccessReady(t, ns, "uat-deploy", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	s, _ := handOutSecret(t, ns, "uat-deploy")
	if got := string(s.Data[sfv1.AccessOrgIDKey]); got != sbFake.OrgID() || !fakeSF.AccessTokenLive(string(s.Data[sfv1.AccessTokenKey])) {
		t.Errorf("the hand-out opens org %s (want the sandbox %s), or its token is dead", got, sbFake.OrgID())
	}
}

// The schema refuses a lifetime out of bounds and a change of the org, naming the fix.
func TestHandOutSchema(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	short := newAccessToken(ns, "short", "uat")
	short.Spec.Lifetime = &metav1.Duration{Duration: time.Minute}
	if err := k8s.Create(ctx, short); err == nil || !strings.Contains(err.Error(), "lifetime must be between 5m and 12h") {
		t.Errorf("a 1m lifetime: %v", apiErrorOnly(err))
	}
	at := newAccessToken(ns, "fixed", "uat")
	mustCreate(t, at)
	at = get(t, &sfv1.SalesforceAccessToken{}, ns, "fixed")
	at.Spec.OrgRef.Name = "prod"
	if err := k8s.Update(ctx, at); err == nil || !strings.Contains(err.Error(), "orgRef cannot be changed") {
		t.Errorf("changing orgRef: %v", apiErrorOnly(err))
	}
}

// A hand-out whose session ended (timed out, ended by an administrator) is written again with a
// live token at its next check (every 5 minutes, or at once on a reconcile request).
func TestHandOutKeptFreshWhenItsSessionEnds(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo, _ := connectedOrg(t, ns, "uat", sftest.Sandbox, sfv1.OrgTypeSandbox)
	mustCreate(t, newAccessToken(ns, "long-job", "uat"))
	waitAccessReady(t, ns, "long-job", metav1.ConditionTrue, sfv1.ReasonAccessIssued)
	s, _ := handOutSecret(t, ns, "long-job")
	old := string(s.Data[sfv1.AccessTokenKey])
	fo.ExpireAccessTokens()
	patch := client.RawPatch("application/merge-patch+json",
		[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, sfv1.ReconcileRequestedAtAnnotation, time.Now().Format(time.RFC3339Nano))))
	if err := k8s.Patch(ctx, newAccessToken(ns, "long-job", "uat"), patch); err != nil {
		t.Fatal(apiErrorOnly(err))
	}
	eventually(t, "a live token in the Secret", func() string {
		s, _ := handOutSecret(t, ns, "long-job")
		if tok := string(s.Data[sfv1.AccessTokenKey]); tok == old || !fakeSF.AccessTokenLive(tok) {
			return "still the ended session"
		}
		return ""
	})
}

// A hand-out is served by the shard that owns its org's credential chain: admission copies the
// org's shard label onto it.
func TestHandOutFollowsItsOrgsShard(t *testing.T) {
	ns := newNamespace(t)
	org := newOrg(ns, "sharded", sfv1.OrgTypeSandbox, "sharded-auth")
	org.Labels = map[string]string{sfv1.ShardLabel: "shard-b"}
	mustCreate(t, org, newAccessToken(ns, "follows", "sharded"))
	if got := get(t, &sfv1.SalesforceAccessToken{}, ns, "follows").Labels[sfv1.ShardLabel]; got != "shard-b" {
		t.Errorf("the hand-out's shard label is %q, want its org's shard-b", got)
	}
}
