package operator_test

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// rendered is `kubectl kustomize tree`, by kind.
func rendered(t *testing.T, tree string) map[string][]*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", tree).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", tree, err)
	}
	objs := map[string][]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		objs[u.GetKind()] = append(objs[u.GetKind()], u)
	}
}

// The shipped Deployment is hardened as the least-privilege issue asks: two replicas kept through
// drains, probes that start slow and detect a wedged manager, metrics over HTTPS only, no
// privileges, and a grace period that covers a Salesforce call plus a Secret write.
func TestShippedDeploymentIsHardened(t *testing.T) {
	objs := rendered(t, "../../config/default")
	if len(objs["Deployment"]) != 1 || len(objs["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want one Deployment and one PodDisruptionBudget, got %d and %d", len(objs["Deployment"]), len(objs["PodDisruptionBudget"]))
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs["Deployment"][0].Object, &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--leader-elect", "--metrics-bind-address=:8443"} {
		if !strings.Contains(args, want) {
			t.Errorf("manager args %q lack %s", args, want)
		}
	}
	if strings.Contains(args, "--metrics-secure=false") {
		t.Error("metrics are served without authentication")
	}
	switch {
	case d.Spec.Replicas == nil || *d.Spec.Replicas < 2:
		t.Error("fewer than two replicas")
	case c.StartupProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe == nil:
		t.Error("a probe is missing")
	case c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz":
		t.Error("liveness does not ask /healthz (which includes the wedged-reconcile check)")
	case spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds < 50:
		t.Error("the grace period does not cover a 30 s Salesforce call plus a Secret write (the manager waits up to 45 s)")
	case c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Error("the container may write its root filesystem or escalate privileges")
	case spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot:
		t.Error("the pod may run as root")
	}
	// The webhooks time out quickly and let the operator's own metadata-only updates through.
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		for _, cfg := range objs[kind] {
			hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
			for _, h := range hooks {
				m := h.(map[string]any)
				if m["timeoutSeconds"] == nil || m["matchConditions"] == nil {
					t.Errorf("%s webhook %v lacks timeoutSeconds or matchConditions", kind, m["name"])
				}
			}
		}
	}
	// The optional NetworkPolicy renders.
	if np := rendered(t, "../../config/network-policy"); len(np["NetworkPolicy"]) != 1 {
		t.Error("config/network-policy does not render a NetworkPolicy")
	}
}
