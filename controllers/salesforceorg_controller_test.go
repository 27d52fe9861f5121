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

// connectedOrg creates a fake org, its Secret and a SalesforceOrg checked every hour (so that
// only the test's own triggers cause checks), and waits until it is Connected.
func connectedOrg(t *testing.T, ns, name string, kind sftest.OrgKind, typ sfv1.OrgType) (*sftest.Org, *sfv1.SalesforceOrg) {
	t.Helper()
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-" + name, Kind: kind})
	putSecret(t, ns, name+"-auth", fo.AuthURL())
	org := newOrg(ns, name, typ, name+"-auth")
	org.Spec.CheckInterval = &metav1.Duration{Duration: time.Hour}
	mustCreate(t, org)
	return fo, waitOrgReady(t, ns, name, metav1.ConditionTrue, sfv1.ReasonConnected)
}

// requestCheck sets the "Test connection" annotation to a fresh value.
func requestCheck(t *testing.T, ns, name string) string {
	t.Helper()
	v := time.Now().Format(time.RFC3339Nano)
	patch := client.RawPatch("application/merge-patch+json",
		[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, sfv1.ReconcileRequestedAtAnnotation, v)))
	if err := k8s.Patch(context.Background(), &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, patch); err != nil {
		t.Fatal(err)
	}
	return v
}

func waitHandled(t *testing.T, ns, name, v string) *sfv1.SalesforceOrg {
	t.Helper()
	var org *sfv1.SalesforceOrg
	eventually(t, "reconcile request "+v+" handled", func() string {
		org = getOrg(t, ns, name)
		if org.Status.LastHandledReconcileAt != v {
			return "lastHandledReconcileAt=" + org.Status.LastHandledReconcileAt
		}
		return ""
	})
	return org
}

func TestOrgConnectsAndRecordsFacts(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-hub", Kind: sftest.DeveloperEdition, DevHub: true, NamespacePrefix: "acme"})
	putSecret(t, ns, "hub-auth", fo.AuthURL())
	org := newOrg(ns, "hub", sfv1.OrgTypeDeveloperEdition, "hub-auth")
	org.Spec.DevHub = true
	org.Spec.OrgID = fo.OrgID()[:15]
	mustCreate(t, org)
	got := waitOrgReady(t, ns, "hub", metav1.ConditionTrue, sfv1.ReasonConnected)

	st := got.Status
	if st.Connection != sfv1.ConnectionConnected || st.OrgID != fo.OrgID() || st.Username != fo.Username() ||
		st.Edition != "Developer Edition" || !st.IsDevHub || st.IsSandbox || st.IsScratch ||
		st.NamespacePrefix != "acme" || st.InstanceURL == "" || st.InstanceName == "" ||
		st.APIRequests == nil || st.APIRequests.Max == 0 || st.APIRequests.Remaining == 0 ||
		st.LastCheckTime == nil || st.LastConnectedTime == nil || st.ConsecutiveFailures != 0 {
		t.Errorf("facts in status: %+v", st)
	}
	for _, typ := range []string{sfv1.ConditionReady, sfv1.ConditionConnected} {
		if c := condition(st.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != got.Generation {
			t.Errorf("%s condition: %+v", typ, c)
		}
	}
	for _, typ := range []string{sfv1.ConditionReconciling, sfv1.ConditionStalled} {
		if c := condition(st.Conditions, typ); c != nil {
			t.Errorf("%s condition present on a healthy org: %+v", typ, c)
		}
	}

	wide := kubectl(t, "get", "sforg", "hub", "-n", ns, "-o", "wide")
	if !containsLine(wide, "hub", "DeveloperEdition", "Active", "Connected", fo.OrgID(), "0") ||
		!strings.Contains(wide, "Developer Edition") || !strings.Contains(wide, fo.Username()) ||
		!strings.Contains(wide, "Connected to org "+fo.OrgID()) {
		t.Errorf("kubectl get sforg -o wide:\n%s", wide)
	}
	// kubectl wait works on the Ready condition.
	kubectl(t, "wait", "--for=condition=Ready", "sforg/hub", "-n", ns, "--timeout=10s")

	// The first connection is in status alone: no event (a regained connection has one).
	if e := findEvent(t, ns, "hub", "Normal", sfv1.ReasonConnected); e == "" {
		t.Errorf("a Connected event on the first connection")
	}
}

// orgEvents lists the events regarding one object.
func orgEvents(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func findEvent(t *testing.T, ns, name, typ, reason string) string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var seen []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Type == typ && e.Reason == reason {
			return ""
		}
		seen = append(seen, e.Type+"/"+e.Reason)
	}
	return fmt.Sprintf("events of %s: %v", name, seen)
}

func TestRevokedCredentialAndNewSecret(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "uat", sftest.Sandbox, sfv1.OrgTypeSandbox)

	fo.RevokeRefreshTokens()
	fo.ExpireAccessTokens() // the cached access token dies with the grant
	requestCheck(t, ns, "uat")
	got := waitOrgReady(t, ns, "uat", metav1.ConditionFalse, sfv1.ReasonCredentialRejected)
	if got.Status.Connection != sfv1.ConnectionDisconnected || got.Status.ConsecutiveFailures != 1 {
		t.Errorf("after revoke: connection=%s failures=%d", got.Status.Connection, got.Status.ConsecutiveFailures)
	}
	if c := condition(got.Status.Conditions, sfv1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("a rejected credential should be Stalled: %+v", c)
	}
	eventually(t, "a Warning event", func() string { return findEvent(t, ns, "uat", "Warning", sfv1.ReasonCredentialRejected) })

	// No hot loop: a terminal failure waits for the user (the interval is an hour).
	before := fakeSF.CallsFor(fo)
	consistently(t, 2*time.Second, "no retry of a rejected credential", func() string {
		if n := fakeSF.CallsFor(fo); n != before {
			return fmt.Sprintf("%d more calls", n-before)
		}
		return ""
	})

	// A fresh auth URL in the Secret reconnects at once.
	putSecret(t, ns, "uat-auth", fo.Reauthorize())
	got = waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.ConsecutiveFailures != 0 {
		t.Errorf("consecutiveFailures after recovery: %d", got.Status.ConsecutiveFailures)
	}
	// A connection regained after a loss is announced.
	eventually(t, "a Connected event", func() string { return findEvent(t, ns, "uat", "Normal", sfv1.ReasonConnected) })
}

func TestReconcileRequestAnnotationAndSteadyStateCost(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)

	for i := 0; i < 3; i++ {
		before := fakeSF.CallsFor(fo)
		v := requestCheck(t, ns, "prod")
		waitHandled(t, ns, "prod", v)
		if n := fakeSF.CallsFor(fo) - before; n != 1 {
			t.Errorf("a steady-state check cost %d HTTP requests, want 1", n)
		}
	}
}

func TestRotationIsPersistedToTheSecret(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "rot", sftest.Production, sfv1.OrgTypeProduction)
	fo.SetRotateRefreshTokens(true)
	fo.ExpireAccessTokens() // forces a token refresh, which rotates
	v := requestCheck(t, ns, "rot")
	waitHandled(t, ns, "rot", v)
	waitOrgReady(t, ns, "rot", metav1.ConditionTrue, sfv1.ReasonConnected)

	eventually(t, "the Secret to hold the rotated refresh token", func() string {
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rot-auth"}, s); err != nil {
			return err.Error()
		}
		if string(s.Data[sfv1.DefaultAuthSecretKey]) != fo.AuthURL() {
			return "the Secret still holds an old refresh token"
		}
		return ""
	})
	// The persisted token works: another forced refresh connects again.
	fo.ExpireAccessTokens()
	waitHandled(t, ns, "rot", requestCheck(t, ns, "rot"))
	waitOrgReady(t, ns, "rot", metav1.ConditionTrue, sfv1.ReasonConnected)
}

func TestExpiredAccessTokenIsRefreshedTransparently(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "exp", sftest.Production, sfv1.OrgTypeProduction)
	fo.ExpireAccessTokens()
	before := fakeSF.CallsFor(fo)
	got := waitHandled(t, ns, "exp", requestCheck(t, ns, "exp"))
	if c := condition(got.Status.Conditions, sfv1.ConditionReady); c.Status != metav1.ConditionTrue {
		t.Errorf("after an expired access token: %+v", c)
	}
	if n := fakeSF.CallsFor(fo) - before; n != 3 {
		t.Errorf("401 → refresh → retry cost %d requests, want 3", n)
	}
}

func TestTransientFailuresBackOffAndRecover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   sftest.FailMode
		reason string
	}{
		{"5xx", sftest.Fail5xx, sfv1.ReasonServerError},
		{"html", sftest.FailHTML, sfv1.ReasonServerError},
		{"timeout", sftest.FailSlow, sfv1.ReasonUnreachable},
		{"dropped", sftest.FailDrop, sfv1.ReasonUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			fo, _ := connectedOrg(t, ns, "flaky", sftest.Production, sfv1.OrgTypeProduction)
			fakeSF.SetSlowDelay(3 * time.Second) // beyond the suite's 2s client timeout
			failAllFor(fo, tc.mode)
			requestCheck(t, ns, "flaky")
			got := waitOrgReady(t, ns, "flaky", metav1.ConditionFalse, tc.reason)
			if c := condition(got.Status.Conditions, sfv1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("a transient failure should be Reconciling: %+v", c)
			}
			if !strings.Contains(condition(got.Status.Conditions, sfv1.ConditionReady).Message, "Retrying in") {
				t.Errorf("message does not say when it retries: %s", condition(got.Status.Conditions, sfv1.ConditionReady).Message)
			}
			// The retries back off (300ms, 600ms, 1.2s... in this suite) and recover once Salesforce does.
			eventually(t, "a second failed attempt", func() string {
				if n := getOrg(t, ns, "flaky").Status.ConsecutiveFailures; n < 2 {
					return fmt.Sprintf("consecutiveFailures=%d", n)
				}
				return ""
			})
			stopFailing(fo)
			got = waitOrgReady(t, ns, "flaky", metav1.ConditionTrue, sfv1.ReasonConnected)
			if got.Status.ConsecutiveFailures != 0 {
				t.Errorf("consecutiveFailures after recovery: %d", got.Status.ConsecutiveFailures)
			}
		})
	}
}

// failAllFor makes every call of this org fail in mode (per org: other tests' orgs share the fake).
func failAllFor(fo *sftest.Org, mode sftest.FailMode) { fo.FailAlways(mode) }

func stopFailing(fo *sftest.Org) { fo.FailAlways(0) }

// A sandbox refresh gives the sandbox a new org id. Unpinned, the org follows it and says so in
// an event; pinned with spec.orgId, it stalls as OrgIDChanged until the pin is moved. Only spec
// pins: status.orgId is what the credential reaches, never a hidden pin.
func TestSandboxRefreshIsOrgIDChanged(t *testing.T) {
	ns := newNamespace(t)
	fo, org := connectedOrg(t, ns, "sbx", sftest.Sandbox, sfv1.OrgTypeSandbox)
	oldID := org.Status.OrgID
	fo.RefreshSandbox()
	putSecret(t, ns, "sbx-auth", fo.AuthURL()) // the user logs in again to the refreshed sandbox
	eventually(t, "the unpinned org to follow the refresh", func() string {
		got := getOrg(t, ns, "sbx")
		if got.Status.OrgID != fo.OrgID() {
			return "status.orgId=" + got.Status.OrgID
		}
		return ""
	})
	waitOrgReady(t, ns, "sbx", metav1.ConditionTrue, sfv1.ReasonConnected)
	eventually(t, "an OrgIDChanged event naming both ids", func() string {
		for _, e := range orgEvents(t, ns, "sbx") {
			if e.Reason == sfv1.ReasonOrgIDChanged && strings.Contains(e.Note, fo.OrgID()) && strings.Contains(e.Note, oldID) {
				return ""
			}
		}
		return "no such event"
	})

	// Pinned: the next refresh stalls, and moving the pin accepts it declaratively.
	got := getOrg(t, ns, "sbx")
	got.Spec.OrgID = fo.OrgID()
	if err := k8s.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	waitOrgReady(t, ns, "sbx", metav1.ConditionTrue, sfv1.ReasonConnected)
	pinned := fo.OrgID()
	fo.RefreshSandbox()
	putSecret(t, ns, "sbx-auth", fo.AuthURL())
	got = waitOrgReady(t, ns, "sbx", metav1.ConditionFalse, sfv1.ReasonOrgIDChanged)
	msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message
	if got.Status.OrgID != fo.OrgID() || !strings.Contains(msg, fo.OrgID()) || !strings.Contains(msg, pinned) || !strings.Contains(msg, "spec.orgId") {
		t.Errorf("OrgIDChanged: status.orgId=%s message=%s", got.Status.OrgID, msg)
	}
	got.Spec.OrgID = fo.OrgID()
	if err := k8s.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	got = waitOrgReady(t, ns, "sbx", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.OrgID != fo.OrgID() {
		t.Errorf("status.orgId=%s after accepting %s", got.Status.OrgID, fo.OrgID())
	}
}

func TestTypeMismatchAndNotADevHub(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-sbx", Kind: sftest.Sandbox})
	putSecret(t, ns, "sbx-auth", fo.AuthURL())
	mustCreate(t, newOrg(ns, "declared-prod", sfv1.OrgTypeProduction, "sbx-auth"))
	got := waitOrgReady(t, ns, "declared-prod", metav1.ConditionFalse, sfv1.ReasonTypeMismatch)
	if msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, "spec.type is Production but the org is a Sandbox") {
		t.Errorf("TypeMismatch message: %s", msg)
	}

	scratch := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-scratch", Kind: sftest.Scratch})
	putSecret(t, ns, "scratch-auth", scratch.AuthURL())
	mustCreate(t, newOrg(ns, "declared-sandbox", sfv1.OrgTypeSandbox, "scratch-auth"))
	waitOrgReady(t, ns, "declared-sandbox", metav1.ConditionFalse, sfv1.ReasonTypeMismatch)

	prod := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-prod", Kind: sftest.Production})
	putSecret(t, ns, "prod-auth", prod.AuthURL())
	hub := newOrg(ns, "not-hub", sfv1.OrgTypeProduction, "prod-auth")
	hub.Spec.DevHub = true
	mustCreate(t, hub)
	waitOrgReady(t, ns, "not-hub", metav1.ConditionFalse, sfv1.ReasonNotADevHub)
}

func TestInactiveOrgMakesNoCalls(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-idle", Kind: sftest.Production})
	putSecret(t, ns, "idle-auth", fo.AuthURL())
	org := newOrg(ns, "idle", sfv1.OrgTypeProduction, "idle-auth")
	org.Spec.State = sfv1.StateInactive
	mustCreate(t, org)
	got := waitOrgReady(t, ns, "idle", metav1.ConditionTrue, sfv1.ReasonInactive)
	if got.Status.Connection != sfv1.ConnectionUnknown {
		t.Errorf("an Inactive org's connection: %s", got.Status.Connection)
	}
	if c := condition(got.Status.Conditions, sfv1.ConditionConnected); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != sfv1.ReasonInactive {
		t.Errorf("Connected condition of an Inactive org: %+v", c)
	}
	waitHandled(t, ns, "idle", requestCheck(t, ns, "idle"))
	if n := fakeSF.CallsFor(fo); n != 0 {
		t.Errorf("an Inactive org made %d calls to Salesforce", n)
	}
	// Back to Active: checked at once.
	got.Spec.State = sfv1.StateActive
	if err := k8s.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	waitOrgReady(t, ns, "idle", metav1.ConditionTrue, sfv1.ReasonConnected)
}

func TestBadCredentialsStallWithAClearMessage(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newOrg(ns, "nosecret", sfv1.OrgTypeProduction, "nope"))
	got := waitOrgReady(t, ns, "nosecret", metav1.ConditionFalse, sfv1.ReasonSecretNotFound)
	msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message
	if !strings.Contains(msg, `Secret "nope" not found`) || !strings.Contains(msg, `key "sfdxAuthUrl"`) || !strings.Contains(msg, "sf org auth show-sfdx-auth-url") {
		t.Errorf("missing Secret message: %s", msg)
	}
	if c := condition(got.Status.Conditions, sfv1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("missing Secret is not Stalled: %+v", c)
	}

	putSecret(t, ns, "wrongkey", "x")
	s := &corev1.Secret{}
	_ = k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "wrongkey"}, s)
	s.Data = map[string][]byte{"authUrl": []byte("force://x")}
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, newOrg(ns, "wrongkey", sfv1.OrgTypeProduction, "wrongkey"))
	got = waitOrgReady(t, ns, "wrongkey", metav1.ConditionFalse, sfv1.ReasonSecretKeyNotFound)
	if msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, `has no key "sfdxAuthUrl"`) ||
		!strings.Contains(msg, "spec.authSecretRef.key") || strings.Contains(msg, "authUrl") {
		t.Errorf("missing key message: %s", msg)
	}

	before := fakeSF.TotalCalls()
	putSecret(t, ns, "malformed-auth", "force://PlatformCLI::5Aep861_secret_refresh_token@https://acme.my.salesforce.com")
	mustCreate(t, newOrg(ns, "malformed", sfv1.OrgTypeProduction, "malformed-auth"))
	got = waitOrgReady(t, ns, "malformed", metav1.ConditionFalse, sfv1.ReasonAuthURLInvalid)
	msg = condition(got.Status.Conditions, sfv1.ConditionReady).Message
	if !strings.Contains(msg, `Secret "malformed-auth" key "sfdxAuthUrl"`) || strings.Contains(msg, "5Aep861_secret_refresh_token") {
		t.Errorf("malformed URL message: %s", msg)
	}
	if n := fakeSF.TotalCalls() - before; n != 0 {
		t.Errorf("invalid credentials made %d calls to Salesforce", n)
	}
	// Each credential problem raised one Warning event, once: not one per reconcile.
	waitHandled(t, ns, "malformed", requestCheck(t, ns, "malformed"))
	waitHandled(t, ns, "malformed", requestCheck(t, ns, "malformed"))
	for org, reason := range map[string]string{"nosecret": sfv1.ReasonSecretNotFound, "wrongkey": sfv1.ReasonSecretKeyNotFound, "malformed": sfv1.ReasonAuthURLInvalid} {
		eventually(t, "a "+reason+" warning", func() string { return findEvent(t, ns, org, "Warning", reason) })
		for _, e := range orgEvents(t, ns, org) {
			if e.Reason == reason && e.Series != nil && e.Series.Count > 1 {
				t.Errorf("%s: the %s warning was raised %d times", org, reason, e.Series.Count)
			}
		}
	}
	// Fixing the Secret reconnects at once.
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-fixed", Kind: sftest.Production})
	putSecret(t, ns, "malformed-auth", fo.AuthURL()+"\n")
	waitOrgReady(t, ns, "malformed", metav1.ConditionTrue, sfv1.ReasonConnected)
}

func TestDuplicateDefaultDevHubIsReported(t *testing.T) {
	ns := newNamespace(t)
	hub1 := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-hub1", Kind: sftest.DeveloperEdition, DevHub: true})
	putSecret(t, ns, "hub1-auth", hub1.AuthURL())
	first := newOrg(ns, "hub1", sfv1.OrgTypeDeveloperEdition, "hub1-auth")
	first.Spec.DevHub, first.Spec.DefaultDevHub = true, true
	mustCreate(t, first)
	waitOrgReady(t, ns, "hub1", metav1.ConditionTrue, sfv1.ReasonConnected)

	// The webhook refuses a second one up front...
	second := newOrg(ns, "hub2", sfv1.OrgTypeDeveloperEdition, "hub1-auth")
	second.Spec.DevHub, second.Spec.DefaultDevHub = true, true
	err := k8s.Create(context.Background(), second)
	if err == nil || !strings.Contains(err.Error(), `SalesforceOrg "hub1" is already the default Dev Hub of namespace`) {
		t.Fatalf("second defaultDevHub: %v", err)
	}
}

func TestFiftyOrgsConnectAtOnce(t *testing.T) {
	ns := newNamespace(t)
	const n = 50
	for i := 0; i < n; i++ {
		fo := fakeSF.AddOrg(sftest.OrgSpec{Name: fmt.Sprintf("%s-%d", ns, i), Kind: sftest.Sandbox})
		putSecret(t, ns, fmt.Sprintf("org%d-auth", i), fo.AuthURL())
		mustCreate(t, newOrg(ns, fmt.Sprintf("org%d", i), sfv1.OrgTypeSandbox, fmt.Sprintf("org%d-auth", i)))
	}
	eventuallyWithin(t, 60*time.Second, "50 orgs Connected", func() string {
		var list sfv1.SalesforceOrgList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		connected := 0
		for _, o := range list.Items {
			if o.Status.Connection == sfv1.ConnectionConnected {
				connected++
			}
		}
		if connected != n {
			return fmt.Sprintf("%d of %d connected", connected, n)
		}
		return ""
	})
}

// TestNoCredentialLeaks runs last in this file's order of concerns: every token the fake ever
// issued, to any test, must be absent from the manager's logs, every event and every status.
func TestNoCredentialLeaks(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-leak", Kind: sftest.Production})
	// Client-side apply, as many users create Secrets: the whole Secret, credential included, goes
	// into its last-applied-configuration annotation.
	kubectlIn(t, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"leak-auth","namespace":"`+ns+
		`","labels":{"salesforce.sfops.io/credential":"true"}},"stringData":{"sfdxAuthUrl":"`+fo.AuthURL()+`"}}`, "apply", "-f", "-")
	org := newOrg(ns, "leak", sfv1.OrgTypeProduction, "leak-auth")
	org.Spec.CheckInterval = &metav1.Duration{Duration: time.Hour}
	mustCreate(t, org)
	waitOrgReady(t, ns, "leak", metav1.ConditionTrue, sfv1.ReasonConnected)
	fo.SetRotateRefreshTokens(true)
	fo.ExpireAccessTokens()
	waitHandled(t, ns, "leak", requestCheck(t, ns, "leak"))
	fo.RevokeRefreshTokens()
	fo.ExpireAccessTokens()
	waitHandled(t, ns, "leak", requestCheck(t, ns, "leak"))

	secrets := fakeSF.IssuedSecrets()
	if len(secrets) < 3 {
		t.Fatalf("the fake issued only %d secrets", len(secrets))
	}
	var haystacks []string
	haystacks = append(haystacks, logs.String())
	var events eventsv1.EventList
	if err := k8s.List(context.Background(), &events); err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		haystacks = append(haystacks, e.Note, e.Reason)
	}
	var orgs sfv1.SalesforceOrgList
	if err := k8s.List(context.Background(), &orgs); err != nil {
		t.Fatal(err)
	}
	for _, o := range orgs.Items {
		haystacks = append(haystacks, fmt.Sprintf("%+v", o.Status), fmt.Sprintf("%v", o.Annotations))
	}
	// What the manager keeps in memory of Secrets: their metadata, never a credential.
	cached := &metav1.PartialObjectMetadataList{}
	cached.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := mgrCache.List(context.Background(), cached); err != nil {
		t.Fatal(err)
	}
	for _, m := range cached.Items {
		haystacks = append(haystacks, fmt.Sprintf("%+v", m.ObjectMeta))
	}
	for _, s := range secrets {
		for i, h := range haystacks {
			if strings.Contains(h, s) {
				t.Errorf("a credential issued by the fake appears in haystack %d (logs are 0)", i)
				break
			}
		}
	}
}

// Every error class of the client becomes its condition reason, Stalled when only a person can
// fix it and Reconciling when a retry can.
func TestErrorClassesBecomeReasons(t *testing.T) {
	for _, tc := range []struct {
		name      string
		break_    func(fo *sftest.Org)
		reason    string
		transient bool
	}{
		{"inactive user", func(fo *sftest.Org) { fo.SetInactiveUser(true) }, sfv1.ReasonCredentialRejected, false},
		{"rate limited", func(fo *sftest.Org) { fo.SetRateLimited(true) }, sfv1.ReasonRateLimited, true},
		{"api disabled", func(fo *sftest.Org) { fo.SetAPIDisabled(true) }, sfv1.ReasonAPIDisabled, false},
		{"org gone", func(fo *sftest.Org) { fo.Delete() }, sfv1.ReasonOrgGone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			fo, _ := connectedOrg(t, ns, "o", sftest.Production, sfv1.OrgTypeProduction)
			tokensBefore := fakeSF.Calls("token")
			tc.break_(fo)
			requestCheck(t, ns, "o")
			got := waitOrgReady(t, ns, "o", metav1.ConditionFalse, tc.reason)
			stalledC := condition(got.Status.Conditions, sfv1.ConditionStalled)
			reconcilingC := condition(got.Status.Conditions, sfv1.ConditionReconciling)
			if tc.transient != (reconcilingC != nil) || tc.transient == (stalledC != nil) {
				t.Errorf("transient=%v but Stalled=%v Reconciling=%v", tc.transient, stalledC != nil, reconcilingC != nil)
			}
			if tc.reason == sfv1.ReasonRateLimited {
				// Rate limiting never re-authenticates, however often it retries.
				eventually(t, "a retry", func() string {
					if getOrg(t, ns, "o").Status.ConsecutiveFailures < 2 {
						return "one failure so far"
					}
					return ""
				})
				if n := fakeSF.Calls("token") - tokensBefore; n != 0 {
					t.Errorf("rate limiting caused %d token requests", n)
				}
				fo.SetRateLimited(false)
				waitOrgReady(t, ns, "o", metav1.ConditionTrue, sfv1.ReasonConnected)
			}
		})
	}
}

// An auth URL for a host outside Salesforce's domains is refused before any byte is sent.
func TestHostNotAllowed(t *testing.T) {
	ns := newNamespace(t)
	before := fakeSF.TotalCalls()
	putSecret(t, ns, "evil-auth", "force://PlatformCLI::5Aep861_not_a_real_token@login.example.com")
	mustCreate(t, newOrg(ns, "evil", sfv1.OrgTypeProduction, "evil-auth"))
	got := waitOrgReady(t, ns, "evil", metav1.ConditionFalse, sfv1.ReasonHostNotAllowed)
	if msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, "login.example.com") || strings.Contains(msg, "5Aep861") {
		t.Errorf("HostNotAllowed message: %s", msg)
	}
	if c := condition(got.Status.Conditions, sfv1.ConditionStalled); c == nil {
		t.Errorf("HostNotAllowed should be Stalled")
	}
	if n := fakeSF.TotalCalls() - before; n != 0 {
		t.Errorf("%d calls made", n)
	}
}
