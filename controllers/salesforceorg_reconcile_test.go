package controllers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Fast tests of whole reconciles of the org reconciler, with the controller-runtime
// fake client and a fake checker; the envtest suite covers the behaviour end to end.

const testAuthURL = "force://PlatformCLI::5Aep861testtoken@acme.my.salesforce.com"

type fakeChecker struct {
	mu    sync.Mutex
	calls int
	// holds: a chain checked once keeps an access token: a later check with the stored version
	// it came from uses it without loading the chain (heldCalls counts those).
	holds     bool
	heldCalls int
	held      map[string]string // chain ID → version its token came from
	facts     salesforce.OrgFacts
	err       error
	rotate    *salesforce.AuthURL
}

// CheckChain is the client's chain contract in small: the held token when the stored version is
// the one it came from, else Load, Claim for a refresh token, Persist a rotation, then check.
func (f *fakeChecker) CheckChain(ctx context.Context, ch salesforce.Chain, storedVersion string) (*salesforce.CheckResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.held[ch.ChainID()]; ok && f.holds && storedVersion != "" && v == storedVersion {
		f.heldCalls++
		if f.err != nil {
			return nil, f.err
		}
		return &salesforce.CheckResult{Facts: f.facts}, nil
	}
	cred, err := ch.Load(ctx)
	if err != nil {
		return nil, err
	}
	a, isURL := cred.(salesforce.AuthURL)
	if isURL {
		if _, err := ch.Claim(ctx, a, salesforce.RotationUnknown); err != nil {
			return nil, err
		}
	}
	f.calls++
	if f.rotate != nil && isURL {
		if err := ch.Persist(ctx, a, *f.rotate); err != nil {
			return nil, &salesforce.Error{Reason: salesforce.ReasonSecretUpdateFailed, Retryable: true, Message: err.Error()}
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	if f.held == nil {
		f.held = map[string]string{}
	}
	f.held[ch.ChainID()] = ch.Version()
	return &salesforce.CheckResult{Facts: f.facts}, nil
}

func (f *fakeChecker) Forget(string) {}

func (f *fakeChecker) Access(context.Context, salesforce.Chain, string) (salesforce.Access, error) {
	return salesforce.Access{}, errors.New("not in these tests")
}

func (f *fakeChecker) RevokeAccess(context.Context, salesforce.Chain, string, string) error {
	return errors.New("not in these tests")
}

func (f *fakeChecker) AuthorizeSandbox(context.Context, salesforce.Chain, string, string) (*salesforce.SandboxAuthorization, error) {
	return nil, errors.New("not in these tests")
}

func (f *fakeChecker) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// indexer adapts the fake client builder to index.Setup.
type indexer struct{ b *fake.ClientBuilder }

func (i indexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

func testScheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := sfv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// countingReader counts reads of full Secrets.
type countingReader struct {
	client.Reader
	mu     sync.Mutex
	gets   int
	getErr error
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		c.mu.Lock()
		c.gets++
		err := c.getErr
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

type harness struct {
	r       *SalesforceOrgReconciler
	c       client.Client
	checker *fakeChecker
	reader  *countingReader
}

func newHarness(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) *harness {
	t.Helper()
	b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithStatusSubresource(&sfv1.SalesforceOrg{}, &sfv1.PipelineStage{}, &sfv1.SalesforceImplementation{})
	if err := index.Setup(context.Background(), indexer{b}); err != nil {
		t.Fatal(err)
	}
	if err := index.SetupAuthSecret(context.Background(), indexer{b}); err != nil {
		t.Fatal(err)
	}
	if funcs != nil {
		b.WithInterceptorFuncs(*funcs)
	}
	c := b.Build()
	h := &harness{c: c, checker: &fakeChecker{facts: salesforce.OrgFacts{OrgID: "00D000000000001AAA", Username: "a@b.c", Edition: "Enterprise Edition"}}}
	h.reader = &countingReader{Reader: c}
	h.r = &SalesforceOrgReconciler{Client: c, APIReader: h.reader, SecretMetadata: c, Salesforce: h.checker, startedAt: time.Now()}
	return h
}

func (h *harness) reconcile(t *testing.T, name string) (ctrl.Result, error) {
	t.Helper()
	return h.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: name}})
}

func (h *harness) org(t *testing.T, name string) *sfv1.SalesforceOrg {
	t.Helper()
	o := &sfv1.SalesforceOrg{}
	if err := h.c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, o); err != nil {
		t.Fatal(err)
	}
	return o
}

func authSecret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{sfv1.CredentialLabel: "true"}},
		Data: map[string][]byte{sfv1.DefaultAuthSecretKey: []byte(testAuthURL)}}
}

func testOrg(name string) *sfv1.SalesforceOrg {
	return &sfv1.SalesforceOrg{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: k8stypes.UID("uid-" + name), Generation: 1},
		Spec: sfv1.SalesforceOrgSpec{Type: sfv1.OrgTypeProduction, AuthSecretRef: sfv1.SecretKeyReference{Name: name + "-auth"},
			CheckInterval: &metav1.Duration{Duration: 10 * time.Minute}},
	}
}

// checkedOrg is an org whose last check, lastCheck ago, succeeded against the Secret version.
func checkedOrg(name string, lastCheck time.Duration, secretVersion string) *sfv1.SalesforceOrg {
	o := testOrg(name)
	o.Status = sfv1.SalesforceOrgStatus{
		ObservedGeneration:   1,
		Connection:           sfv1.ConnectionConnected,
		OrgID:                "00D000000000001AAA",
		Edition:              "Enterprise Edition",
		LastCheckTime:        &metav1.Time{Time: time.Now().Add(-lastCheck)},
		CheckedSecretVersion: secretVersion,
		Conditions: []metav1.Condition{{Type: sfv1.ConditionConnected, Status: metav1.ConditionTrue, Reason: sfv1.ReasonConnected,
			Message: "Connected.", ObservedGeneration: 1, LastTransitionTime: metav1.Now()}},
	}
	return o
}

// secretVersionOf creates nothing: it reads the version the fake client gave the Secret.
func secretVersionOf(t *testing.T, c client.Client, name string) string {
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s.ResourceVersion
}

// Bug 5: a reconcile with no check due reads no Secret and calls nothing.
func TestNoSecretReadWhenNoCheckIsDue(t *testing.T) {
	h := newHarness(t, nil, authSecret("a-auth"))
	v := secretVersionOf(t, h.c, "a-auth")
	if err := h.c.Create(context.Background(), checkedOrg("a", time.Minute, v)); err != nil {
		t.Fatal(err)
	}
	setStatus(t, h.c, checkedOrg("a", time.Minute, v))
	res, err := h.reconcile(t, "a")
	if err != nil {
		t.Fatal(err)
	}
	if h.reader.gets != 0 || h.checker.count() != 0 {
		t.Fatalf("no check was due, yet %d Secret reads and %d checks", h.reader.gets, h.checker.count())
	}
	if res.RequeueAfter < 8*time.Minute || res.RequeueAfter > 11*time.Minute {
		t.Fatalf("next reconcile in %s, want about the interval after the last check", res.RequeueAfter)
	}
}

func setStatus(t *testing.T, c client.Client, want *sfv1.SalesforceOrg) {
	t.Helper()
	o := &sfv1.SalesforceOrg{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(want), o); err != nil {
		t.Fatal(err)
	}
	o.Status = want.Status
	if err := c.Status().Update(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// Bug 3: a new manager (empty memory) checks neither orgs checked recently nor, all at once, the
// overdue ones: those are spread over the interval. A changed Secret is still checked at once.
func TestRestartSpreadsOverdueChecksAndChecksChangedSecrets(t *testing.T) {
	h := newHarness(t, nil, authSecret("o1-auth"), authSecret("o2-auth"), authSecret("o3-auth"), authSecret("new-auth"))
	delays := map[time.Duration]bool{}
	for _, name := range []string{"o1", "o2", "o3"} {
		v := secretVersionOf(t, h.c, name+"-auth")
		if err := h.c.Create(context.Background(), checkedOrg(name, 3*time.Hour, v)); err != nil {
			t.Fatal(err)
		}
		setStatus(t, h.c, checkedOrg(name, 3*time.Hour, v))
		res, err := h.reconcile(t, name)
		if err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter <= 0 || res.RequeueAfter > 10*time.Minute {
			t.Fatalf("overdue org %s: next check in %s, want within the interval", name, res.RequeueAfter)
		}
		delays[res.RequeueAfter.Round(time.Second)] = true
	}
	if h.checker.count() != 0 || h.reader.gets != 0 {
		t.Fatalf("a restart checked overdue orgs at once: %d checks, %d Secret reads", h.checker.count(), h.reader.gets)
	}
	if len(delays) < 2 {
		t.Fatalf("overdue checks are not spread: %v", delays)
	}

	// The Secret changed while no manager ran: checked at once.
	if err := h.c.Create(context.Background(), checkedOrg("new", time.Minute, "stale-version")); err != nil {
		t.Fatal(err)
	}
	setStatus(t, h.c, checkedOrg("new", time.Minute, "stale-version"))
	if _, err := h.reconcile(t, "new"); err != nil {
		t.Fatal(err)
	}
	if h.checker.count() != 1 {
		t.Fatalf("a changed Secret was not checked at once: %d checks", h.checker.count())
	}
	if got := h.org(t, "new").Status.CheckedSecretVersion; got != secretVersionOf(t, h.c, "new-auth") {
		t.Fatalf("checkedSecretVersion %q is not the Secret's version", got)
	}
}

// Bug 4: a reconcile that could not read the Secret does not claim the generation.
func TestObservedGenerationOnlyWhenHandled(t *testing.T) {
	h := newHarness(t, nil, authSecret("a-auth"))
	o := checkedOrg("a", time.Minute, "other")
	if err := h.c.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	setStatus(t, h.c, o)
	cur := h.org(t, "a")
	cur.Spec.OrgID = "00D000000000001AAA"
	cur.Generation = 2 // the fake client does not count generations
	if err := h.c.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	gen := h.org(t, "a").Generation
	h.reader.getErr = errors.New("etcdserver: request timed out")
	if _, err := h.reconcile(t, "a"); err == nil {
		t.Fatal("a failed Secret read must be returned, so the work queue retries it")
	}
	got := h.org(t, "a")
	if got.Status.ObservedGeneration == gen {
		t.Fatalf("observedGeneration %d advanced without a check", got.Status.ObservedGeneration)
	}
	if c := findCondition(got.Status.Conditions, sfv1.ConditionReady); c != nil && c.ObservedGeneration == gen {
		t.Fatal("Ready claims the new generation without a check")
	}
	h.reader.getErr = nil
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	if got := h.org(t, "a"); got.Status.ObservedGeneration != gen || h.checker.count() != 1 {
		t.Fatalf("after the read works: observedGeneration %d (want %d), %d checks", got.Status.ObservedGeneration, gen, h.checker.count())
	}
}

// Bug 4 and 10: the pin is compared in the summary, from spec only, with no check needed.
func TestPinIsComparedInTheSummary(t *testing.T) {
	h := newHarness(t, nil, authSecret("a-auth"))
	v := secretVersionOf(t, h.c, "a-auth")
	o := checkedOrg("a", time.Minute, v)
	o.Spec.OrgID = "00D000000000002AAA"
	if err := h.c.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	o.Status.ObservedGeneration = h.org(t, "a").Generation
	setStatus(t, h.c, o)
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	if c := findCondition(h.org(t, "a").Status.Conditions, sfv1.ConditionReady); c == nil || c.Reason != sfv1.ReasonOrgIDChanged {
		t.Fatalf("a pin that does not match status.orgId: Ready %+v", c)
	}
	if h.checker.count() != 0 {
		t.Fatal("comparing the pin needed a check")
	}

	// Without a pin, status.orgId pins nothing.
	h2 := newHarness(t, nil, authSecret("b-auth"))
	v = secretVersionOf(t, h2.c, "b-auth")
	b := checkedOrg("b", time.Minute, v)
	b.Status.OrgID = "00D000000000009AAA"
	if err := h2.c.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	setStatus(t, h2.c, b)
	if _, err := h2.reconcile(t, "b"); err != nil {
		t.Fatal(err)
	}
	if c := findCondition(h2.org(t, "b").Status.Conditions, sfv1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("status.orgId acted as a pin: Ready %+v", c)
	}
}

// staleReader serves a fixed old copy of the org, as a cache that has not seen our status patch.
type staleClient struct {
	client.Client
	stale *sfv1.SalesforceOrg
}

func (s staleClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if o, ok := obj.(*sfv1.SalesforceOrg); ok && key.Name == s.stale.Name {
		s.stale.DeepCopyInto(o)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

// Bug 6: the rotation write-back wakes the org at once; if the cache still serves the org as it
// was before the check, the reconcile must not check again.
func TestOwnWriteBackDoesNotCauseASecondCheck(t *testing.T) {
	h := newHarness(t, nil, authSecret("a-auth"))
	if err := h.c.Create(context.Background(), testOrg("a")); err != nil {
		t.Fatal(err)
	}
	rotated, err := salesforce.ParseAuthURL("force://PlatformCLI::5Aep861rotatedtoken@acme.my.salesforce.com")
	if err != nil {
		t.Fatal(err)
	}
	h.checker.rotate = &rotated
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	stale := h.org(t, "a")
	stale.Status = sfv1.SalesforceOrgStatus{} // as a cache that has not seen the status patch
	if h.checker.count() != 1 {
		t.Fatalf("first reconcile: %d checks", h.checker.count())
	}
	s := &corev1.Secret{}
	_ = h.c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "a-auth"}, s)
	if string(s.Data[sfv1.DefaultAuthSecretKey]) != rotated.Reveal() {
		t.Fatal("the rotated URL was not written back")
	}
	h.checker.rotate = nil
	h.r.Client = staleClient{Client: h.c, stale: stale}
	if _, err := h.reconcile(t, "a"); err != nil {
		t.Fatal(err)
	}
	if h.checker.count() != 1 {
		t.Fatalf("a stale cached org after our own write-back caused another check (%d)", h.checker.count())
	}
}

// Bug 7: when the implementation lookup fails, the org is not checked (it may belong to a
// suspended implementation).
func TestImplementationLookupFailureStopsTheCheck(t *testing.T) {
	funcs := &interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*sfv1.SalesforceImplementationList); ok {
			return errors.New("the cache is not synced")
		}
		return c.List(ctx, list, opts...)
	}}
	h := newHarness(t, funcs, authSecret("a-auth"), testOrg("a"))
	if _, err := h.reconcile(t, "a"); err == nil {
		t.Fatal("the failed lookup must be returned")
	}
	if h.checker.count() != 0 {
		t.Fatal("an org whose implementation is unknown was checked")
	}
}

// Two orgs on one Secret key (admission bypassed): the older keeps the chain, the newer stalls
// with SecretKeyInUse naming it, and nothing reaches Salesforce for it.
func TestSecondOrgOnOneSecretKeyStalls(t *testing.T) {
	first, second := testOrg("first"), testOrg("second")
	first.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	second.CreationTimestamp = metav1.NewTime(time.Now().Truncate(time.Second))
	second.Spec.AuthSecretRef.Name = "first-auth"
	h := newHarness(t, nil, authSecret("first-auth"), first, second)
	h.r.secretUsers = newSecretUsers()
	h.r.secretUsers.add(first)
	h.r.secretUsers.add(second)
	if _, err := h.reconcile(t, "second"); err != nil {
		t.Fatal(err)
	}
	if h.checker.count() != 0 {
		t.Fatalf("%d checks for an org whose Secret key another org owns", h.checker.count())
	}
	c := findCondition(h.org(t, "second").Status.Conditions, sfv1.ConditionReady)
	if c == nil || c.Reason != sfv1.ReasonSecretKeyInUse || !strings.Contains(c.Message, `SalesforceOrg "first"`) {
		t.Fatalf("Ready: %+v", c)
	}
	if _, err := h.reconcile(t, "first"); err != nil {
		t.Fatal(err)
	}
	if h.checker.count() != 1 {
		t.Fatalf("the older org was not checked (%d checks)", h.checker.count())
	}
}

// A graceful stop ends the claims this process still holds (once no reconcile is in progress),
// and leaves another process's claim alone.
func TestGracefulStopReleasesOwnClaims(t *testing.T) {
	own, other := authSecret("own-auth"), authSecret("other-auth")
	until := time.Now().Add(time.Minute)
	own.Annotations = map[string]string{ExchangeClaimAnnotation: processHolder + " " + until.UTC().Format(time.RFC3339)}
	other.Annotations = map[string]string{ExchangeClaimAnnotation: "someone-else " + until.UTC().Format(time.RFC3339)}
	h := newHarness(t, nil, own, other)
	h.r.claims.add(k8stypes.NamespacedName{Namespace: "ns", Name: "own-auth"}, until)
	h.r.claims.add(k8stypes.NamespacedName{Namespace: "ns", Name: "other-auth"}, until)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (releaseClaimsOnStop{r: h.r}).Start(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"own-auth": false, "other-auth": true} {
		s := &corev1.Secret{}
		if err := h.c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, s); err != nil {
			t.Fatal(err)
		}
		if _, has := s.Annotations[ExchangeClaimAnnotation]; has != want {
			t.Errorf("%s: claim there %v, want %v", name, has, want)
		}
	}
}
