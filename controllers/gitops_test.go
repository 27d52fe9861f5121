package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// gitopsDir writes a directory of all three kinds, as a GitOps repository holds them.
func gitopsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"1-orgs.yaml": `apiVersion: salesforce.sfops.io/v1alpha1
kind: SalesforceOrg
metadata: {name: prod}
spec:
  type: Production
  authSecretRef: {name: prod-auth}
  checkInterval: 10m
---
apiVersion: salesforce.sfops.io/v1alpha1
kind: SalesforceOrg
metadata: {name: uat}
spec:
  type: Sandbox
  authSecretRef: {name: uat-auth}
  implementationRef: {name: acme}
  checkInterval: 1h
`,
		"2-implementation.yaml": `apiVersion: salesforce.sfops.io/v1alpha1
kind: SalesforceImplementation
metadata: {name: acme}
spec:
  displayName: Acme
  productionOrgRef: {name: prod}
  deletionPolicy: Delete
`,
		"3-stages.yaml": `apiVersion: salesforce.sfops.io/v1alpha1
kind: PipelineStage
metadata: {name: release-uat}
spec:
  pipeline: release
  orgRef: {name: uat}
  branch: uat
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gitopsNamespace is a namespace with the fake orgs and Secrets the GitOps directory's orgs use.
func gitopsNamespace(t *testing.T) (ns string, prod, uat *sftest.Org) {
	t.Helper()
	ns = newNamespace(t)
	prod = fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-prod", Kind: sftest.Production})
	uat = fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox})
	putSecret(t, ns, "prod-auth", prod.AuthURL())
	putSecret(t, ns, "uat-auth", uat.AuthURL())
	return ns, prod, uat
}

// GitOps owns spec: applied server-side by a Flux-like field manager, then again server-side and
// client-side, nothing conflicts, no generation moves, kubectl diff is empty, the operator owns
// no field under spec, and each new org was checked exactly once.
func TestGitOpsOwnsSpec(t *testing.T) {
	ns, prod, uat := gitopsNamespace(t)
	dir := gitopsDir(t)

	kubectl(t, "apply", "--server-side", "--field-manager=kustomize-controller", "-n", ns, "-f", dir)
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitStageReady(t, ns, "release-uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
	consistently(t, 2*time.Second, "one first check per org", func() string {
		if p, u := fakeSF.CallsFor(prod), fakeSF.CallsFor(uat); p != 2 || u != 2 {
			return fmt.Sprintf("calls: prod %d, uat %d (a first check is 2)", p, u)
		}
		return ""
	})

	kubectl(t, "apply", "--server-side", "--field-manager=kustomize-controller", "-n", ns, "-f", dir)
	kubectl(t, "apply", "-n", ns, "-f", dir)
	kubectl(t, "apply", "--server-side", "--field-manager=kustomize-controller", "-n", ns, "-f", dir)

	diff := exec.Command("kubectl", "--kubeconfig", kubeconfig, "diff", "--server-side", "--field-manager=kustomize-controller", "-n", ns, "-f", dir)
	if out, err := diff.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("kubectl diff after applying: %v\n%s", err, out)
	}
	for _, obj := range []client.Object{getOrg(t, ns, "prod"), getOrg(t, ns, "uat"), getStage(t, ns, "release-uat"), getImpl(t, ns, "acme")} {
		if obj.GetGeneration() != 1 {
			t.Errorf("%T %s: generation %d, want 1 (the operator must never write spec)", obj, obj.GetName(), obj.GetGeneration())
		}
		for _, mf := range obj.GetManagedFields() {
			if mf.Subresource != "" || mf.Manager == "kustomize-controller" || strings.HasPrefix(mf.Manager, "kubectl") {
				continue
			}
			var fields map[string]any
			_ = json.Unmarshal(mf.FieldsV1.Raw, &fields)
			if _, ok := fields["f:spec"]; ok {
				t.Errorf("%T %s: manager %q owns fields under spec: %s", obj, obj.GetName(), mf.Manager, mf.FieldsV1.Raw)
			}
		}
	}
}

// One `kubectl delete -f dir` with the orgs listed before their stages converges: the refused
// org deletions are remembered and replayed by the operator once the stages are gone.
func TestPruneConvergesInOnePass(t *testing.T) {
	ns, _, _ := gitopsNamespace(t)
	dir := gitopsDir(t)
	kubectl(t, "apply", "--server-side", "--field-manager=kustomize-controller", "-n", ns, "-f", dir)
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitStageReady(t, ns, "release-uat", metav1.ConditionTrue, sfv1.ReasonConnected)

	del := exec.Command("kubectl", "--kubeconfig", kubeconfig, "delete", "-n", ns, "-f", filepath.Join(dir, "1-orgs.yaml"))
	out, err := del.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "The deletion is remembered") {
		t.Fatalf("deleting orgs in use: %v\n%s", err, out)
	}
	if wide := kubectl(t, "get", "sforg", "uat", "-n", ns, "-o", "wide"); !strings.Contains(wide, "DELETION REQUESTED") {
		t.Errorf("kubectl get -o wide has no DELETION REQUESTED column:\n%s", wide)
	}
	eventually(t, "a DeletionDeferred event", func() string { return findEvent(t, ns, "uat", "Warning", sfv1.ReasonDeletionDeferred) })
	if _, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "delete", "-n", ns, "-f", dir).CombinedOutput(); err != nil {
		t.Logf("kubectl delete -f dir exited with %v (the orgs already went or were refused again)", err)
	}
	eventually(t, "every object of the directory to be gone", func() string {
		var left []string
		for _, kind := range []client.ObjectList{&sfv1.SalesforceOrgList{}, &sfv1.PipelineStageList{}, &sfv1.SalesforceImplementationList{}} {
			if err := k8s.List(context.Background(), kind, client.InNamespace(ns)); err != nil {
				return err.Error()
			}
			switch l := kind.(type) {
			case *sfv1.SalesforceOrgList:
				for _, o := range l.Items {
					left = append(left, "org/"+o.Name)
				}
			case *sfv1.PipelineStageList:
				for _, o := range l.Items {
					left = append(left, "stage/"+o.Name)
				}
			case *sfv1.SalesforceImplementationList:
				for _, o := range l.Items {
					left = append(left, "impl/"+o.Name)
				}
			}
		}
		if len(left) > 0 {
			return strings.Join(left, ", ")
		}
		return ""
	})
}

// Removing the annotation cancels a remembered deletion.
func TestRemovingTheAnnotationCancelsADeferredDeletion(t *testing.T) {
	ns := activeStagesOnUAT(t)
	err := k8s.Delete(context.Background(), getOrg(t, ns, "uat"))
	if err == nil {
		t.Fatal("deleting an org in use succeeded")
	}
	o := getOrg(t, ns, "uat")
	if _, ok := o.Annotations[sfv1.DeletionRequestedAnnotation]; !ok {
		t.Fatal("the refused deletion was not remembered")
	}
	patch := client.MergeFrom(o.DeepCopy())
	delete(o.Annotations, sfv1.DeletionRequestedAnnotation)
	if err := k8s.Patch(context.Background(), o, patch); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"hotfix-uat", "release-uat"} {
		if err := k8s.Delete(context.Background(), getStage(t, ns, s)); err != nil {
			t.Fatal(err)
		}
	}
	consistently(t, 2*time.Second, "the org to stay", func() string {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "uat"}, &sfv1.SalesforceOrg{}); err != nil {
			return err.Error()
		}
		return ""
	})
}
