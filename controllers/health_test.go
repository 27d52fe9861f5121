package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// What Argo CD and Flux say about the operator's objects, in each state the operator puts them in.
// Argo CD: the Lua health checks of config/argocd, applied to an argocd-cm with the README's
// command and run in gopher-lua as Argo CD runs them. Flux: kstatus, which its health checks
// (Kustomization wait/healthChecks, HelmRelease wait) compute for custom resources: Current passes,
// InProgress waits until the timeout, Failed fails at once.

// argoHealthScripts applies config/argocd's patch to an argocd-cm, as the README says, and returns
// the health scripts it holds by kind.
func argoHealthScripts(t *testing.T) map[string]string {
	t.Helper()
	ns := newNamespace(t)
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-cm"}})
	kubectl(t, "-n", ns, "patch", "configmap", "argocd-cm", "--type", "merge", "--patch-file", "../config/argocd/argocd-cm-patch.yaml")
	cm := get(t, &corev1.ConfigMap{}, ns, "argocd-cm")
	scripts := map[string]string{}
	for _, kind := range []string{"SalesforceOrg", "PipelineStage", "SalesforceImplementation"} {
		key := "resource.customizations.health." + sfv1.GroupVersion.Group + "_" + kind
		if scripts[kind] = cm.Data[key]; scripts[kind] == "" {
			t.Fatalf("argocd-cm has no %s after the patch", key)
		}
	}
	return scripts
}

// argoHealth runs a health script as Argo CD does (util/lua): only the package, base and table
// libraries, a one-second limit, the object as the global obj, a table returned.
func argoHealth(t *testing.T, script string, obj *unstructured.Unstructured) (string, string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		t.Fatalf("the health script failed on %s: %v", obj.GetName(), err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health script returned %s, not a table", l.Get(-1).Type())
	}
	st, msg := lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
	switch st {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		t.Fatalf("the health script returned status %q, which Argo CD reads as Unknown", st)
	}
	return st, msg
}

// toLua converts an object as Argo CD's decodeValue does (integers from the API are int64).
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// live reads an object from the API server as Argo CD's and Flux's caches hold it.
func live(t *testing.T, kind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(sfv1.GroupVersion.WithKind(kind))
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestArgoCDAndFluxHealth(t *testing.T) {
	scripts := argoHealthScripts(t)
	ns := newNamespace(t)

	type state struct {
		name    string
		obj     *unstructured.Unstructured
		argo    string
		kstatus status.Status
		// message is a part of Argo CD's message, which says why.
		message string
	}
	var states []state
	add := func(name string, obj *unstructured.Unstructured, argo string, ks status.Status, message string) {
		states = append(states, state{name, obj, argo, ks, message})
	}

	// Connected, and the stage that maps to it.
	_, _ = connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	add("org Connected", live(t, "SalesforceOrg", ns, "prod"), "Healthy", status.CurrentStatus, "Connected to org")
	mustCreate(t, newStage(ns, "release-prod", "release", "prod"))
	waitStageReady(t, ns, "release-prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	add("stage Connected", live(t, "PipelineStage", ns, "release-prod"), "Healthy", status.CurrentStatus, "is Connected")

	// A spec change the operator has not acted on yet, and an object it has not seen at all.
	pending := live(t, "SalesforceOrg", ns, "prod")
	pending.SetGeneration(pending.GetGeneration() + 1)
	add("org spec not yet observed", pending, "Progressing", status.InProgressStatus, "observe generation")
	created := live(t, "SalesforceOrg", ns, "prod")
	unstructured.RemoveNestedField(created.Object, "status")
	// kstatus has nothing to go on before the first status (no observedGeneration, no conditions):
	// Flux reads an object the operator has not reconciled yet as Current.
	add("org not yet reconciled", created, "Progressing", status.CurrentStatus, "Waiting for the operator")

	// Stalled: Salesforce refused the credential; nothing changes until a person fixes it.
	revoked, _ := connectedOrg(t, ns, "revoked", sftest.Sandbox, sfv1.OrgTypeSandbox)
	revoked.RevokeRefreshTokens()
	revoked.ExpireAccessTokens()
	requestCheck(t, ns, "revoked")
	waitOrgReady(t, ns, "revoked", metav1.ConditionFalse, sfv1.ReasonCredentialRejected)
	add("org Stalled", live(t, "SalesforceOrg", ns, "revoked"), "Degraded", status.FailedStatus, sfv1.ReasonCredentialRejected+": ")

	// Reconciling: an outage, retried with back-off.
	flaky, _ := connectedOrg(t, ns, "flaky", sftest.Sandbox, sfv1.OrgTypeSandbox)
	failAllFor(flaky, sftest.Fail5xx)
	t.Cleanup(func() { stopFailing(flaky) })
	requestCheck(t, ns, "flaky")
	waitOrgReady(t, ns, "flaky", metav1.ConditionFalse, sfv1.ReasonServerError)
	retrying := live(t, "SalesforceOrg", ns, "flaky")
	if c := condition(getOrg(t, ns, "flaky").Status.Conditions, sfv1.ConditionReconciling); c == nil || c.Reason != sfv1.ReasonProgressingWithRetry {
		t.Fatalf("a retried outage should be Reconciling/ProgressingWithRetry: %+v", c)
	}
	add("org Reconciling (retrying)", retrying, "Degraded", status.InProgressStatus, "Retrying in")

	// Inactive: declared, deliberately not checked.
	idle := newOrg(ns, "idle", sfv1.OrgTypeSandbox, "idle-auth")
	idle.Spec.State = sfv1.StateInactive
	mustCreate(t, idle)
	waitOrgReady(t, ns, "idle", metav1.ConditionTrue, sfv1.ReasonInactive)
	add("org Inactive", live(t, "SalesforceOrg", ns, "idle"), "Suspended", status.CurrentStatus, "is Inactive")
	stage := newStage(ns, "release-idle", "release", "prod")
	stage.Spec.State = sfv1.StateInactive
	mustCreate(t, stage)
	waitStageReady(t, ns, "release-idle", metav1.ConditionTrue, sfv1.ReasonInactive)
	add("stage Inactive", live(t, "PipelineStage", ns, "release-idle"), "Suspended", status.CurrentStatus, "is Inactive")

	// A stage whose org does not exist: neither Reconciling nor Stalled, so kstatus falls back to
	// Ready=False and waits (the org may come in the same sync); Argo CD shows it Degraded.
	mustCreate(t, newStage(ns, "release-missing", "release", "missing"))
	waitStageReady(t, ns, "release-missing", metav1.ConditionFalse, sfv1.ReasonOrgNotFound)
	add("stage OrgNotFound", live(t, "PipelineStage", ns, "release-missing"), "Degraded", status.InProgressStatus, sfv1.ReasonOrgNotFound)

	// An implementation, connected, then suspended with its members.
	mustCreate(t, newImpl(ns, "acme", "acme-prod"))
	member(t, ns, "acme-prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
	add("implementation Connected", live(t, "SalesforceImplementation", ns, "acme"), "Healthy", status.CurrentStatus, "connected")
	impl := getImpl(t, ns, "acme")
	impl.Spec.Suspend = true
	if err := k8s.Update(context.Background(), impl); err != nil {
		t.Fatal(err)
	}
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonSuspended)
	waitOrgReady(t, ns, "acme-prod", metav1.ConditionTrue, sfv1.ReasonImplementationSuspended)
	add("implementation Suspended", live(t, "SalesforceImplementation", ns, "acme"), "Suspended", status.CurrentStatus, "Suspended since")
	add("org ImplementationSuspended", live(t, "SalesforceOrg", ns, "acme-prod"), "Suspended", status.CurrentStatus, "is suspended")

	for _, s := range states {
		argo, msg := argoHealth(t, scripts[s.obj.GetKind()], s.obj)
		if argo != s.argo || !strings.Contains(msg, s.message) {
			t.Errorf("%s: Argo CD says %s (%q), want %s with %q", s.name, argo, msg, s.argo, s.message)
		}
		res, err := status.Compute(s.obj)
		if err != nil {
			t.Fatalf("%s: kstatus: %v", s.name, err)
		}
		if res.Status != s.kstatus {
			t.Errorf("%s: kstatus (Flux) says %s (%q), want %s", s.name, res.Status, res.Message, s.kstatus)
		}
		t.Logf("%-30s Argo CD %-11s Flux/kstatus %-10s %s", s.name, argo, res.Status, msg)
	}
}
