package controllers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/controllers"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// asUser is a client for user with only the RBAC the test grants (no system:masters).
func asUser(t *testing.T, user string) client.Client {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	cl, err := client.New(c, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// grantSecret lets user do verbs on one Secret of ns.
func grantSecret(t *testing.T, ns, user, secret string, verbs ...string) {
	t.Helper()
	name := "secret-" + secret + "-" + strings.Join(verbs, "-")
	mustCreate(t,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{secret}, Verbs: verbs}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}})
}

// A user who holds only the SalesforceOrg editor role cannot borrow a Secret she may not read
// (or write) through the operator: admission refuses, naming the Secret and the verb.
func TestNoOneBorrowsASecretTheyCannotUse(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	kubectl(t, "apply", "-f", "../config/rbac/salesforceorg_editor_role.yaml")
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-edits-orgs"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "salesforce-editor-role"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "alice"}}})
	payments := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-payments", Kind: sftest.Production})
	putSecret(t, ns, "payments-sf", payments.AuthURL())
	alice := asUser(t, "alice")
	eventually(t, "alice's editor role to apply", func() string {
		var l sfv1.SalesforceOrgList
		if err := alice.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return apiErrorOnly(err)
		}
		return ""
	})

	before := fakeSF.CallsFor(payments)
	err := alice.Create(ctx, newOrg(ns, "borrowed", sfv1.OrgTypeProduction, "payments-sf"))
	if err == nil || !strings.Contains(err.Error(), `alice may not get Secret "payments-sf"`) || !strings.Contains(err.Error(), "spec.authSecretRef.name") {
		t.Fatalf("borrowing another team's Secret: %v", err)
	}

	mine := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-mine", Kind: sftest.Production})
	putSecret(t, ns, "alice-sf", mine.AuthURL())
	grantSecret(t, ns, "alice", "alice-sf", "get")
	eventually(t, "a refusal for the missing update", func() string {
		err := alice.Create(ctx, newOrg(ns, "mine", sfv1.OrgTypeProduction, "alice-sf"))
		if err == nil || !strings.Contains(err.Error(), `alice may not update Secret "alice-sf"`) {
			return apiErrorOnly(err)
		}
		return ""
	})
	grantSecret(t, ns, "alice", "alice-sf", "update")
	eventually(t, "alice's own Secret to be accepted", func() string {
		if err := alice.Create(ctx, newOrg(ns, "mine", sfv1.OrgTypeProduction, "alice-sf")); err != nil {
			return apiErrorOnly(err)
		}
		return ""
	})
	waitOrgReady(t, ns, "mine", metav1.ConditionTrue, sfv1.ReasonConnected)

	// Re-pointing her org at the other team's Secret is refused too.
	o := getOrg(t, ns, "mine")
	o.Spec.AuthSecretRef.Name = "payments-sf"
	if err := alice.Update(ctx, o); err == nil || !strings.Contains(err.Error(), `may not get Secret "payments-sf"`) {
		t.Fatalf("re-pointing at another team's Secret: %v", err)
	}
	if n := fakeSF.CallsFor(payments) - before; n != 0 {
		t.Fatalf("the other team's org was called %d times", n)
	}
}

// Defence in depth when admission is bypassed: the operator reads only Secrets labelled as
// credentials, and says so without revealing anything of the Secret.
func TestUnlabelledSecretIsNeverRead(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-nolabel", Kind: sftest.Production})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"},
		Data: map[string][]byte{"db-password": []byte("x"), sfv1.DefaultAuthSecretKey: []byte(fo.AuthURL())}}
	mustCreate(t, s)
	mustCreate(t, newOrg(ns, "nolabel", sfv1.OrgTypeProduction, "plain"))
	got := waitOrgReady(t, ns, "nolabel", metav1.ConditionFalse, sfv1.ReasonSecretNotLabelled)
	msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message
	if !strings.Contains(msg, "kubectl label secret plain salesforce.sfops.io/credential=true") || strings.Contains(msg, "db-password") {
		t.Fatalf("SecretNotLabelled message: %s", msg)
	}
	if fakeSF.CallsFor(fo) != 0 {
		t.Fatal("an unlabelled Secret's credential was used")
	}
	eventually(t, "a SecretNotLabelled warning", func() string { return findEvent(t, ns, "nolabel", "Warning", sfv1.ReasonSecretNotLabelled) })

	cur := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(s), cur); err != nil {
		t.Fatal(err)
	}
	cur.Labels = map[string]string{sfv1.CredentialLabel: "true"}
	if err := k8s.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	waitOrgReady(t, ns, "nolabel", metav1.ConditionTrue, sfv1.ReasonConnected)
}

// Secret reads and writes never reach the reconcile's logger, at any verbosity: client-go dumps
// request and response bodies through it at levels 8 to 10.
func TestNoCredentialInDebugLogs(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "dbg", sftest.Production, sfv1.OrgTypeProduction)
	fo.SetRotateRefreshTokens(true)

	// A second reconciler, fresh as after a restart, whose context logs at levels 9 and 10. The
	// suite's manager remembers its own recent check and leaves the org alone, until a rotation
	// changes the Secret (see below).
	direct, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := salesforce.NewClient(salesforce.Options{AllowedHosts: []string{fakeSF.Host()}, RootCAs: fakeSF.CertPool(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	for _, level := range []int{9, 10} {
		logger := zap.New(zap.WriteTo(&buf), zap.Level(zapcore.Level(-level)))
		ctx := log.IntoContext(context.Background(), logger)
		// The suite's manager answers the previous level's rotation (the Secret changed) with a
		// check of its own, whose status write can land after the patch below and make the org
		// not due: then patch and reconcile again.
		eventuallyWithin(t, 5*time.Second, fmt.Sprintf("a level %d reconcile that checks", level), func() string {
			// Due for a fresh reconciler (status describes an older generation): it checks at
			// once, refreshes, rotates and writes back. (Merely overdue, its first check would
			// be spread over the interval, as after any restart.) Fresh each time: one that
			// remembers its own last check trusts that memory over the older status patched here.
			r := &controllers.SalesforceOrgReconciler{Client: direct, APIReader: direct, SecretMetadata: direct, Salesforce: sf}
			org := getOrg(t, ns, "dbg")
			patch := client.MergeFrom(org.DeepCopy())
			org.Status.LastCheckTime = &metav1.Time{Time: time.Now().Add(-2 * time.Hour)}
			org.Status.ObservedGeneration = org.Generation - 1
			if err := k8s.Status().Patch(context.Background(), org, patch); err != nil {
				t.Fatal(err)
			}
			fo.ExpireAccessTokens()
			before := fakeSF.CallsFor(fo)
			if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "dbg"}}); err != nil {
				t.Fatal(err)
			}
			if fakeSF.CallsFor(fo) == before {
				return "the reconcile made no check"
			}
			return ""
		})
	}
	out := buf.String()
	out += undump(out)
	if !strings.Contains(out, "Response Body") {
		t.Fatal("the debug logger saw no response bodies: the test does not run at the verbosity it claims")
	}
	for _, s := range fakeSF.IssuedSecrets() {
		// As sent, and as a Secret's data carries it in JSON (inside the base64 of the auth URL).
		if bytes.Contains([]byte(out), []byte(s)) || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(s))[:len(s)/2]) {
			t.Fatal("a credential issued by the fake appears in the level 9/10 log")
		}
	}
	if strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(fo.AuthURL()))) {
		t.Fatal("the auth URL appears base64-encoded in the level 9/10 log")
	}
}

// undump decodes the hex dumps (protobuf bodies) in a JSON log back into their bytes, so a
// token split across dump lines is found too.
func undump(log string) string {
	var out strings.Builder
	for _, line := range strings.Split(log, "\n") {
		var entry struct {
			Body string `json:"body"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || !strings.HasPrefix(entry.Body, "00000000  ") {
			continue
		}
		for _, dl := range strings.Split(entry.Body, "\n") {
			if len(dl) < 10 {
				continue
			}
			hexPart := dl[10:]
			if i := strings.Index(hexPart, "|"); i >= 0 {
				hexPart = hexPart[:i]
			}
			b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
			if err == nil {
				out.Write(b)
			}
		}
		out.WriteString("\n")
	}
	return out.String()
}

// breakWebhooks points every webhook of the operator at a closed port, and returns the undo.
func breakWebhooks(t *testing.T) func() {
	t.Helper()
	ctx := context.Background()
	var vs admissionregistrationv1.ValidatingWebhookConfigurationList
	var ms admissionregistrationv1.MutatingWebhookConfigurationList
	if err := k8s.List(ctx, &vs); err != nil {
		t.Fatal(err)
	}
	if err := k8s.List(ctx, &ms); err != nil {
		t.Fatal(err)
	}
	closed := "https://127.0.0.1:1/"
	var undo []func()
	for i := range vs.Items {
		v := vs.Items[i].DeepCopy()
		orig := vs.Items[i].DeepCopy()
		for j := range v.Webhooks {
			v.Webhooks[j].ClientConfig.URL = &closed
		}
		if err := k8s.Update(ctx, v); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() { restoreWebhook(t, orig) })
	}
	for i := range ms.Items {
		m := ms.Items[i].DeepCopy()
		orig := ms.Items[i].DeepCopy()
		for j := range m.Webhooks {
			m.Webhooks[j].ClientConfig.URL = &closed
		}
		if err := k8s.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() { restoreWebhook(t, orig) })
	}
	return func() {
		for _, u := range undo {
			u()
		}
		// The API server reloads webhook configurations from a watch: wait until a user write
		// reaches the webhook again, so the next test does not meet the closed port.
		eventually(t, "the webhooks back", func() string {
			impl := &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "webhooks-back"}}
			if err := k8s.Create(ctx, impl, client.DryRunAll); err != nil && strings.Contains(err.Error(), "failed calling webhook") {
				return apiErrorOnly(err)
			}
			return ""
		})
	}
}

func restoreWebhook(t *testing.T, orig client.Object) {
	cur := orig.DeepCopyObject().(client.Object)
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(orig), cur); err != nil {
		t.Error(err)
		return
	}
	orig.SetResourceVersion(cur.GetResourceVersion())
	if err := k8s.Update(context.Background(), orig); err != nil {
		t.Error(err)
	}
}

// With the webhook endpoint gone, users' writes fail closed with a message that says so, while
// the operator's own finalizer patches and checks go on.
func TestAdmissionDownNeverStopsTheOperator(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	fo, _ := connectedOrg(t, ns, "up", sftest.Production, sfv1.OrgTypeProduction)
	restore := breakWebhooks(t)
	defer restore()

	// A user's spec change is refused, and the message says the webhook could not be called.
	eventually(t, "user writes to fail closed", func() string {
		o := getOrg(t, ns, "up")
		o.Spec.CheckInterval = &metav1.Duration{Duration: 2 * time.Hour}
		err := k8s.Update(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			return "update: " + apiErrorOnly(err)
		}
		return ""
	})

	// The operator's own metadata-only writes pass: drop the finalizer (a metadata-only patch
	// passes too) and the operator adds it back; put a new credential in the Secret and it checks
	// at once.
	o := getOrg(t, ns, "up")
	patch := client.MergeFrom(o.DeepCopy())
	o.Finalizers = nil
	if err := k8s.Patch(ctx, o, patch); err != nil {
		t.Fatalf("a finalizer-only patch while the webhook is down: %v", apiErrorOnly(err))
	}
	// Dropping the finalizer is itself an event: it comes back without waiting for a check.
	eventually(t, "the finalizer back, while the webhook is down", func() string {
		if f := getOrg(t, ns, "up").Finalizers; len(f) == 0 {
			return "no finalizer"
		}
		return ""
	})
	before := fakeSF.CallsFor(fo)
	putSecret(t, ns, "up-auth", fo.Reauthorize())
	eventually(t, "a check of the new credential, while the webhook is down", func() string {
		if fakeSF.CallsFor(fo) == before {
			return "no call"
		}
		return ""
	})
	waitOrgReady(t, ns, "up", metav1.ConditionTrue, sfv1.ReasonConnected)
}
