package controllers_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/localenv"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// The suite runs one real kube-apiserver (envtest) with the CRDs and webhooks installed, one
// manager with every controller and webhook, and one fake Salesforce over HTTPS on loopback.
// Each test works in its own namespace.
var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	k8s        client.Client
	fakeSF     *sftest.Server
	kubeconfig string
	// mgrRequests logs every request the manager sends to the API server.
	mgrRequests = &requestLog{}
	// mgrCache is the manager's own cache, for tests of what it holds.
	mgrCache cache.Cache
	logs     = &syncBuffer{}
)

// syncBuffer collects every log line of the manager, so a test can prove no credential leaks.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	var w io.Writer = logs
	if os.Getenv("SFOPS_TEST_LOGS") != "" {
		w = io.MultiWriter(logs, os.Stderr)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(w), zap.UseDevMode(false)))

	var err error
	if testEnv, err = localenv.New("..", true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()

	if fakeSF, err = sftest.NewStandaloneServer("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, "starting the fake Salesforce:", err)
		return 1
	}
	defer fakeSF.Close()

	wh := testEnv.WebhookInstallOptions
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.Wrap(mgrRequests.wrap)
	mgr, err := operator.New(mgrCfg, operator.Options{
		MetricsAddr:       "0",
		ProbeAddr:         "0",
		EnableWebhooks:    true,
		WebhookHost:       wh.LocalServingHost,
		WebhookPort:       wh.LocalServingPort,
		WebhookCertDir:    wh.LocalServingCertDir,
		AllowedHosts:      []string{fakeSF.Host()},
		RootCAs:           fakeSF.CertPool(),
		RetryBase:         300 * time.Millisecond,
		SalesforceTimeout: 2 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up the operator:", err)
		return 1
	}
	k8s = mgr.GetClient()
	mgrCache = mgr.GetCache()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		fmt.Fprintln(os.Stderr, "the manager's cache did not sync")
		return 1
	}
	// A direct client, so tests read what the API server holds, not the manager's cache.
	direct, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k8s = unconditional{direct}

	dir, err := os.MkdirTemp("", "sfops-kubeconfig-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, testEnv.KubeConfig, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// unconditional updates last-writer-wins (as kubectl apply does): on a conflict it takes the
// current resourceVersion and tries again, so a test's spec edit never fails because the
// controller patched status meanwhile (an update never writes status).
type unconditional struct{ client.Client }

func (u unconditional) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	for attempt := 0; ; attempt++ {
		err := u.Client.Update(ctx, obj, opts...)
		if !apierrors.IsConflict(err) || attempt == 10 {
			return err
		}
		cur := obj.DeepCopyObject().(client.Object)
		if err := u.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
	}
}

// ---- helpers ----

// newNamespace creates a namespace of the test's own.
func newNamespace(t *testing.T) string {
	t.Helper()
	return testkit.Namespace(t, k8s, "t")
}

// putSecret creates or replaces the auth Secret, labelled as a credential. The value is never logged.
func putSecret(t *testing.T, ns, name, authURL string) {
	t.Helper()
	testkit.PutSecret(t, k8s, ns, name, authURL)
}

// apiErrorOnly keeps test output free of request bodies.
func apiErrorOnly(err error) string { return testkit.APIError(err) }

func newOrg(ns, name string, typ sfv1.OrgType, secret string) *sfv1.SalesforceOrg {
	return &sfv1.SalesforceOrg{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sfv1.SalesforceOrgSpec{
			Type:          typ,
			AuthSecretRef: sfv1.SecretKeyReference{Name: secret},
		},
	}
}

func newStage(ns, name, pipeline, org string) *sfv1.PipelineStage {
	return &sfv1.PipelineStage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       sfv1.PipelineStageSpec{Pipeline: pipeline, OrgRef: sfv1.LocalObjectReference{Name: org}},
	}
}

func mustCreate(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), apiErrorOnly(err))
		}
	}
}

// eventually polls cond every 100ms for up to 30s; cond returns "" when satisfied, else what it saw.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	eventuallyWithin(t, 30*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, limit time.Duration, what string, cond func() string) {
	t.Helper()
	testkit.Eventually(t, limit, what, cond)
}

// consistently checks cond stays satisfied for d.
func consistently(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if got := cond(); got != "" {
			t.Fatalf("expected %s to hold, but: %s", what, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get reads obj's current state from the API server, failing the test if it cannot.
func get[T client.Object](t *testing.T, obj T, ns, name string) T {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("getting %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

func getOrg(t *testing.T, ns, name string) *sfv1.SalesforceOrg {
	t.Helper()
	return get(t, &sfv1.SalesforceOrg{}, ns, name)
}

func getStage(t *testing.T, ns, name string) *sfv1.PipelineStage {
	t.Helper()
	return get(t, &sfv1.PipelineStage{}, ns, name)
}

func getImpl(t *testing.T, ns, name string) *sfv1.SalesforceImplementation {
	t.Helper()
	return get(t, &sfv1.SalesforceImplementation{}, ns, name)
}

func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// conditioned is any of the three kinds.
type conditioned interface {
	client.Object
	GetConditions() []metav1.Condition
}

// waitReady waits until obj's Ready condition, for its current generation, has status and
// reason, and returns the object as last read.
func waitReady[T conditioned](t *testing.T, obj T, status metav1.ConditionStatus, reason string) T {
	t.Helper()
	eventually(t, fmt.Sprintf("%T %s Ready=%s/%s", obj, obj.GetName(), status, reason), func() string {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err.Error()
		}
		c := condition(obj.GetConditions(), sfv1.ConditionReady)
		if c == nil {
			return "no Ready condition"
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Sprintf("Ready=%s reason=%s gen=%d/%d: %s", c.Status, c.Reason, c.ObservedGeneration, obj.GetGeneration(), c.Message)
		}
		return ""
	})
	return obj
}

func waitOrgReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *sfv1.SalesforceOrg {
	t.Helper()
	return waitReady(t, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, status, reason)
}

func waitStageReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *sfv1.PipelineStage {
	t.Helper()
	return waitReady(t, &sfv1.PipelineStage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, status, reason)
}

func waitImplReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *sfv1.SalesforceImplementation {
	t.Helper()
	return waitReady(t, &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, status, reason)
}

// kubectl runs the real kubectl against the test apiserver and returns its standard output.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// kubectlErr runs kubectl expecting failure and returns its standard error.
func kubectlErr(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err == nil {
		t.Fatalf("kubectl %s succeeded, expected a refusal: %s", strings.Join(args, " "), out.String())
	}
	return errb.String()
}

// kubectlIn runs kubectl with stdin and returns its standard output. Its arguments and output
// may be printed on failure, so stdin is never echoed.
func kubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}
