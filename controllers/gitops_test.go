package controllers_test

import (
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

// GitOps owns spec: applied server-side by a Flux-like field manager, then again server-side and
// client-side, nothing conflicts, no generation moves, kubectl diff is empty, the operator owns
// no field under spec, and each new org was checked exactly once.
func TestGitOpsOwnsSpec(t *testing.T) {
	ns := newNamespace(t)
	prod := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-prod", Kind: sftest.Production})
	uat := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-uat", Kind: sftest.Sandbox})
	putSecret(t, ns, "prod-auth", prod.AuthURL())
	putSecret(t, ns, "uat-auth", uat.AuthURL())
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
