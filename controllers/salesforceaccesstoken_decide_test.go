package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Fast tests of the hand-out reconciler's decisions with the controller-runtime fake client: a
// SalesforceAccessToken, its org (and Secret) and the access review's answer → Ready's reason,
// the Secret, and what was asked of the chain owner. The envtest suite
// (salesforceaccesstoken_test.go) covers admission, watches and the fake Salesforce.

type fakeOrgAccess struct {
	accessCalls int
	revoked     []string
}

func (f *fakeOrgAccess) Access(context.Context, *sfv1.SalesforceOrg) (salesforce.Access, error) {
	f.accessCalls++
	return salesforce.Access{Token: "00D000000000001!AQtoken", InstanceURL: "https://acme.my.salesforce.com", OrgID: "00D000000000001AAA"}, nil
}

func (f *fakeOrgAccess) Revoke(_ context.Context, _ *sfv1.SalesforceOrg, _, token string) error {
	f.revoked = append(f.revoked, token)
	return nil
}

// handOutClient is a fake client with the manager's indexes.
func handOutClient(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) client.Client {
	t.Helper()
	b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithStatusSubresource(&sfv1.SalesforceAccessToken{}).WithInterceptorFuncs(funcs)
	if err := index.Setup(context.Background(), fieldIndexer(func(obj client.Object, field string, fn client.IndexerFunc) { b.WithIndex(obj, field, fn) })); err != nil {
		t.Fatal(err)
	}
	return b.Build()
}

type fieldIndexer func(obj client.Object, field string, fn client.IndexerFunc)

func (f fieldIndexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	f(obj, field, fn)
	return nil
}

func TestHandOutDecisions(t *testing.T) {
	created := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	requester := `{"username":"system:serviceaccount:ns:deployer","groups":["system:serviceaccounts"]}`
	connected := func() *sfv1.SalesforceOrg {
		return &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "uat"},
			Spec:   sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeSandbox, AuthSecretRef: sfv1.SecretKeyReference{Name: "uat-auth"}},
			Status: sfv1.SalesforceOrgStatus{Connection: sfv1.ConnectionConnected, Username: "ci@acme.example.com"}}
	}
	handOut := func(mut func(*sfv1.SalesforceAccessToken)) *sfv1.SalesforceAccessToken {
		at := &sfv1.SalesforceAccessToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "deploy", UID: "u1",
			CreationTimestamp: metav1.NewTime(created), Finalizers: []string{AccessTokenFinalizer},
			Annotations: map[string]string{sfv1.RequesterAnnotation: requester}},
			Spec: sfv1.SalesforceAccessTokenSpec{OrgRef: sfv1.LocalObjectReference{Name: "uat"}}}
		if mut != nil {
			mut(at)
		}
		return at
	}
	cases := []struct {
		name      string
		at        *sfv1.SalesforceAccessToken
		objs      []client.Object
		denied    bool
		now       time.Time
		reason    string
		stalled   bool
		secret    bool // a Secret holds the token afterwards
		accessAsk int
	}{
		{name: "issued", at: handOut(nil), objs: []client.Object{connected()}, reason: sfv1.ReasonAccessIssued, secret: true, accessAsk: 1},
		{name: "expired: nothing asked, nothing written", at: handOut(nil), objs: []client.Object{connected()}, now: created.Add(time.Hour), reason: sfv1.ReasonAccessExpired},
		{name: "no requester recorded (webhook bypassed)", at: handOut(func(a *sfv1.SalesforceAccessToken) { a.Annotations = nil }),
			objs: []client.Object{connected()}, reason: sfv1.ReasonAccessDenied, stalled: true},
		{name: "requester lost the verb", at: handOut(nil), objs: []client.Object{connected()}, denied: true, reason: sfv1.ReasonAccessDenied, stalled: true},
		{name: "org missing", at: handOut(nil), reason: sfv1.ReasonOrgNotFound, stalled: true},
		{name: "org inactive", at: handOut(nil), objs: []client.Object{func() client.Object { o := connected(); o.Spec.State = sfv1.StateInactive; return o }()},
			reason: sfv1.ReasonOrgInactive, stalled: true},
		{name: "org not connected", at: handOut(nil), objs: []client.Object{func() client.Object { o := connected(); o.Status.Connection = sfv1.ConnectionDisconnected; return o }()},
			reason: sfv1.ReasonOrgNotConnected},
		{name: "Secret name taken", at: handOut(nil), objs: []client.Object{connected(),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "deploy"}}}, reason: sfv1.ReasonSecretNameTaken, stalled: true},
		{name: "stage of another org", at: handOut(func(a *sfv1.SalesforceAccessToken) { a.Spec.StageRef = &sfv1.LocalObjectReference{Name: "prod-stage"} }),
			objs: []client.Object{connected(), &sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "prod-stage"},
				Spec: sfv1.PipelineStageSpec{Pipeline: "release", OrgRef: sfv1.LocalObjectReference{Name: "prod"}}}},
			reason: sfv1.ReasonStageOrgMismatch, stalled: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			funcs := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if sar, ok := obj.(*authorizationv1.SubjectAccessReview); ok {
					sar.Status.Allowed = !tc.denied && sar.Spec.ResourceAttributes.Verb == sfv1.UseVerb
					return nil
				}
				return c.Create(ctx, obj, opts...)
			}}
			c := handOutClient(t, funcs, append(tc.objs, tc.at)...)
			orgs := &fakeOrgAccess{}
			now := tc.now
			if now.IsZero() {
				now = created.Add(time.Minute)
			}
			r := &SalesforceAccessTokenReconciler{Client: c, APIReader: c, Orgs: orgs, Now: func() time.Time { return now }}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.at)}); err != nil {
				t.Fatal(err)
			}
			got := &sfv1.SalesforceAccessToken{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(tc.at), got); err != nil {
				t.Fatal(err)
			}
			ready := meta.FindStatusCondition(got.Status.Conditions, sfv1.ConditionReady)
			if ready == nil || ready.Reason != tc.reason {
				t.Fatalf("Ready %+v, want reason %s", ready, tc.reason)
			}
			if st := meta.IsStatusConditionTrue(got.Status.Conditions, sfv1.ConditionStalled); st != tc.stalled {
				t.Errorf("Stalled %v, want %v (%s)", st, tc.stalled, ready.Message)
			}
			if tc.reason != sfv1.ReasonAccessIssued && !strings.Contains(ready.Message, ".") {
				t.Errorf("refusal without a sentence: %q", ready.Message)
			}
			s := &corev1.Secret{}
			err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "deploy"}, s)
			holds := err == nil && string(s.Data[sfv1.AccessTokenKey]) != ""
			if holds != tc.secret {
				t.Errorf("Secret holds a token: %v, want %v", holds, tc.secret)
			}
			if orgs.accessCalls != tc.accessAsk {
				t.Errorf("asked the chain owner %d times, want %d", orgs.accessCalls, tc.accessAsk)
			}
			if strings.Contains(ready.Message, "AQtoken") {
				t.Error("the token is in the status")
			}
		})
	}
}

// An issued hand-out whose requester then loses the verb is withdrawn: Secret deleted, token
// revoked (no other hand-out shares it).
func TestHandOutWithdrawnWhenTheVerbGoes(t *testing.T) {
	allowed := true
	funcs := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if sar, ok := obj.(*authorizationv1.SubjectAccessReview); ok {
			sar.Status.Allowed = allowed
			return nil
		}
		return c.Create(ctx, obj, opts...)
	}}
	org := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "uat"},
		Status: sfv1.SalesforceOrgStatus{Connection: sfv1.ConnectionConnected}}
	at := &sfv1.SalesforceAccessToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "deploy", UID: "u1",
		CreationTimestamp: metav1.Now(), Finalizers: []string{AccessTokenFinalizer},
		Annotations: map[string]string{sfv1.RequesterAnnotation: `{"username":"alice"}`}},
		Spec: sfv1.SalesforceAccessTokenSpec{OrgRef: sfv1.LocalObjectReference{Name: "uat"}}}
	c := handOutClient(t, funcs, org, at)
	orgs := &fakeOrgAccess{}
	r := &SalesforceAccessTokenReconciler{Client: c, APIReader: c, Orgs: orgs}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(at)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	allowed = false
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "deploy"}, &corev1.Secret{}); err == nil {
		t.Error("the Secret outlived the permission")
	}
	if len(orgs.revoked) != 1 || orgs.revoked[0] != "00D000000000001!AQtoken" {
		t.Errorf("revoked %d tokens, want the hand-out's one", len(orgs.revoked))
	}
}
