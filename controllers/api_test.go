package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The CRDs as a user meets them: defaults, validation messages, columns, field selectors.

func TestDefaults(t *testing.T) {
	ns := newNamespace(t)
	org := newOrg(ns, "prod", sfv1.OrgTypeProduction, "prod-auth")
	stage := newStage(ns, "release-prod", "release", "prod")
	impl := &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
		Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme"}}
	mustCreate(t, org, stage, impl)

	got := getOrg(t, ns, "prod")
	if got.Spec.State != sfv1.StateActive || got.Spec.AuthSecretRef.Key != "sfdxAuthUrl" ||
		got.Spec.CheckInterval == nil || got.Spec.CheckInterval.Duration != 10*time.Minute {
		t.Errorf("org defaults: state=%q key=%q interval=%v", got.Spec.State, got.Spec.AuthSecretRef.Key, got.Spec.CheckInterval)
	}
	s := &sfv1.PipelineStage{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(stage), s); err != nil {
		t.Fatal(err)
	}
	if s.Spec.State != sfv1.StateActive || s.Spec.Order != 0 {
		t.Errorf("stage defaults: state=%q order=%d", s.Spec.State, s.Spec.Order)
	}
	i := &sfv1.SalesforceImplementation{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(impl), i); err != nil {
		t.Fatal(err)
	}
	if i.Spec.DeletionPolicy != sfv1.DeletionPolicyOrphan || i.Spec.Suspend {
		t.Errorf("implementation defaults: deletionPolicy=%q suspend=%v", i.Spec.DeletionPolicy, i.Spec.Suspend)
	}
}

func TestValidationMessages(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name string
		yaml string
		want string
	}{
		{"type required", `
kind: SalesforceOrg
spec: {authSecretRef: {name: s}}`, `spec.type: Required value`},
		{"type enum", `
kind: SalesforceOrg
spec: {type: Prod, authSecretRef: {name: s}}`, `spec.type: Unsupported value: "Prod": supported values: "Production", "Sandbox", "DeveloperEdition", "Scratch"`},
		{"secret name required", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {key: k}}`, `spec.authSecretRef.name: Required value`},
		{"state enum", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, state: Paused}`, `spec.state: Unsupported value: "Paused"`},
		{"defaultDevHub needs devHub", `
kind: SalesforceOrg
spec: {type: Production, authSecretRef: {name: s}, defaultDevHub: true}`, `defaultDevHub: true needs devHub: true; set devHub: true or remove defaultDevHub`},
		{"devHub only on production or DE", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, devHub: true}`, `devHub: true is only possible on a Production or DeveloperEdition org`},
		{"checkInterval at least 1m", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, checkInterval: 30s}`, `spec.checkInterval: Invalid value: "30s": checkInterval must be at least 1m`},
		{"checkInterval a duration", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, checkInterval: ten minutes}`, `spec.checkInterval: Invalid value: "ten minutes": checkInterval must be a duration such as 10m, 1h or 1h30m`},
		{"checkInterval in words", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, checkInterval: 1 hour}`, `checkInterval must be a duration such as 10m, 1h or 1h30m: a number and a unit (ms, s, m or h), without spaces`},
		{"orgId shape", `
kind: SalesforceOrg
spec: {type: Sandbox, authSecretRef: {name: s}, orgId: 005xx0000012345}`, `spec.orgId: Invalid value: "005xx0000012345": spec.orgId in body should match '^00D`},
		{"stage pipeline required", `
kind: PipelineStage
spec: {orgRef: {name: uat}}`, `spec.pipeline: Required value`},
		{"stage orgRef required", `
kind: PipelineStage
spec: {pipeline: release}`, `spec.orgRef: Required value`},
		{"stage order not negative", `
kind: PipelineStage
spec: {pipeline: release, order: -1, orgRef: {name: uat}}`, `spec.order: Invalid value: -1: spec.order in body should be greater than or equal to 0`},
		{"stage branch is a git branch", `
kind: PipelineStage
spec: {pipeline: release, orgRef: {name: uat}, branch: "feature..x"}`, `branch must be a valid Git branch name`},
		{"implementation displayName required", `
kind: SalesforceImplementation
spec: {description: x}`, `spec.displayName: Required value`},
		{"implementation deletionPolicy enum", `
kind: SalesforceImplementation
spec: {displayName: A, deletionPolicy: Cascade}`, `spec.deletionPolicy: Unsupported value: "Cascade": supported values: "Orphan", "Delete"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: salesforce.sfops.io/v1alpha1\nmetadata: {name: x, namespace: " + ns + "}" + tc.yaml
			stderr := kubectlErr(t, doc, "apply", "-f", "-")
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("kubectl said:\n%s\nwant it to contain:\n%s", stderr, tc.want)
			}
		})
	}
}

func TestColumnsAndFieldSelectors(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t,
		newOrg(ns, "prod", sfv1.OrgTypeProduction, "prod-auth"),
		newOrg(ns, "uat", sfv1.OrgTypeSandbox, "uat-auth"),
		newOrg(ns, "dev", sfv1.OrgTypeSandbox, "dev-auth"),
		newStage(ns, "release-uat", "release", "uat"),
		newStage(ns, "hotfix-uat", "hotfix", "uat"),
		&sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
			Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme Sales Cloud", ProductionOrgRef: &sfv1.LocalObjectReference{Name: "prod"}}},
	)
	eventually(t, "uat used by two stages", func() string {
		if o := getOrg(t, ns, "uat"); o.Status.StageCount != 2 {
			return strings.Join(o.Status.UsedBy, ",")
		}
		return ""
	})

	out := kubectl(t, "get", "sforg", "-n", ns)
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if strings.Join(header, " ") != "NAME TYPE STATE CONNECTION ORG ID STAGES READY AGE" {
		t.Errorf("kubectl get sforg header: %q", header)
	}
	if !containsLine(out, "uat", "Sandbox", "Active", "Disconnected", "2") {
		t.Errorf("kubectl get sforg:\n%s", out)
	}
	wide := kubectl(t, "get", "sforg", "-n", ns, "-o", "wide")
	wideHeader := strings.SplitN(wide, "\n", 2)[0]
	for _, col := range []string{"EDITION", "USERNAME", "CREATED BY", "LAST CHECK", "MESSAGE"} {
		if !strings.Contains(wideHeader, col) {
			t.Errorf("-o wide lacks %s: %s", col, wideHeader)
		}
	}
	if !strings.Contains(wide, `Secret "uat-auth" not found`) {
		t.Errorf("-o wide MESSAGE column lacks the Ready message:\n%s", wide)
	}

	sel := kubectl(t, "get", "sforg", "-n", ns, "--field-selector", "spec.type=Sandbox", "-o", "name")
	if got := strings.Fields(sel); strings.Join(got, " ") != "salesforceorg.salesforce.sfops.io/dev salesforceorg.salesforce.sfops.io/uat" {
		t.Errorf("--field-selector spec.type=Sandbox: %q", got)
	}
	for _, fs := range []string{"spec.state=Active", "spec.devHub=false", "spec.implementationRef.name=acme"} {
		kubectl(t, "get", "sforg", "-n", ns, "--field-selector", fs)
	}
	stages := kubectl(t, "get", "sfstage", "-n", ns, "--field-selector", "spec.pipeline=release")
	if !containsLine(stages, "release-uat", "release", "0", "uat", "Active") || strings.Contains(stages, "hotfix-uat") {
		t.Errorf("kubectl get sfstage --field-selector spec.pipeline=release:\n%s", stages)
	}
	for _, fs := range []string{"spec.orgRef.name=uat", "spec.state=Active"} {
		kubectl(t, "get", "sfstage", "-n", ns, "--field-selector", fs)
	}
	stageHeader := strings.Fields(strings.SplitN(stages, "\n", 2)[0])
	if strings.Join(stageHeader, " ") != "NAME PIPELINE ORDER ORG STATE READY AGE" {
		t.Errorf("kubectl get sfstage header: %q", stageHeader)
	}
	impls := kubectl(t, "get", "sfimpl", "-n", ns)
	implHeader := strings.Fields(strings.SplitN(impls, "\n", 2)[0])
	if strings.Join(implHeader, " ") != "NAME DISPLAY NAME PRODUCTION ORGS CONNECTED SUSPENDED READY AGE" {
		t.Errorf("kubectl get sfimpl header: %q", implHeader)
	}
	all := kubectl(t, "get", "salesforce", "-n", ns, "-o", "name")
	for _, want := range []string{"salesforceorg.salesforce.sfops.io/prod", "pipelinestage.salesforce.sfops.io/release-uat", "salesforceimplementation.salesforce.sfops.io/acme"} {
		if !strings.Contains(all, want) {
			t.Errorf("kubectl get salesforce lacks %s:\n%s", want, all)
		}
	}
}

// containsLine reports whether some line of out has all fields, in order.
func containsLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		i := 0
		for _, w := range f {
			if i < len(fields) && w == fields[i] {
				i++
			}
		}
		if i == len(fields) && len(f) > 0 && f[0] == fields[0] {
			return true
		}
	}
	return false
}

func TestStatusSubresource(t *testing.T) {
	ns := newNamespace(t)
	org := newOrg(ns, "x", sfv1.OrgTypeSandbox, "missing")
	org.Spec.State = sfv1.StateInactive
	mustCreate(t, org)
	waitOrgReady(t, ns, "x", metav1.ConditionTrue, sfv1.ReasonInactive)

	// A spec update cannot write status; only the status subresource can.
	o := getOrg(t, ns, "x")
	o.Status.OrgID = "00D000000000001AAA"
	o.Spec.CheckInterval = &metav1.Duration{Duration: time.Hour}
	if err := k8s.Update(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if got := getOrg(t, ns, "x"); got.Status.OrgID != "" {
		t.Errorf("a main-resource update wrote status.orgId=%q", got.Status.OrgID)
	}
	if got := getOrg(t, ns, "x"); got.Status.ObservedGeneration == 0 {
		t.Errorf("observedGeneration not reported")
	}
}

// The samples a newcomer copies apply cleanly, through the CRD schema and the webhooks.
func TestSamplesApply(t *testing.T) {
	ns := newNamespace(t)
	out := kubectl(t, "apply", "-n", ns, "-f", "../config/samples/secret.yaml")
	out += kubectl(t, "apply", "-n", ns, "-k", "../config/samples")
	for _, want := range []string{"secret/acme-prod-auth created", "salesforceorg.salesforce.sfops.io/acme-prod created",
		"salesforceorg.salesforce.sfops.io/acme-uat created", "salesforceorg.salesforce.sfops.io/acme-devhub created",
		"pipelinestage.salesforce.sfops.io/release-uat created", "salesforceimplementation.salesforce.sfops.io/acme created"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply of the samples lacks %q:\n%s", want, out)
		}
	}
	// The sample Secret holds a placeholder, not an auth URL: refused with the fix, and no call is made.
	org := waitOrgReady(t, ns, "acme-prod", metav1.ConditionFalse, sfv1.ReasonAuthURLInvalid)
	if msg := condition(org.Status.Conditions, sfv1.ConditionReady).Message; msg != `Secret "acme-prod-auth" key "sfdxAuthUrl": An auth URL starts with force://; generate it with `+
		"`sf org auth show-sfdx-auth-url --target-org <alias> --json` and use result.sfdxAuthUrl as printed." {
		t.Errorf("message: %s", msg)
	}
	waitOrgReady(t, ns, "acme-uat", metav1.ConditionFalse, sfv1.ReasonSecretNotFound)
}
