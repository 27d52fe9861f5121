package controllers_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// kubectlRun runs kubectl and returns its standard output and error (admission warnings are
// printed there), and whether it succeeded.
func kubectlRun(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func withKey(o *sfv1.SalesforceOrg, key string) *sfv1.SalesforceOrg {
	o.Spec.AuthSecretRef.Key = key
	return o
}

func inShard(o *sfv1.SalesforceOrg, shard string) *sfv1.SalesforceOrg {
	o.Labels = map[string]string{sfv1.ShardLabel: shard}
	return o
}

// wantInvalid checks that err is a 422 on field whose message holds every part.
func wantInvalid(t *testing.T, what string, err error, field string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: admitted, want a refusal", what)
		return
	}
	msg := err.Error()
	if !apierrors.IsInvalid(err) || !strings.Contains(msg, field+":") {
		t.Errorf("%s: want 422 Invalid on %s, got %s", what, field, apiErrorOnly(err))
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("%s: the refusal lacks %q:\n%s", what, p, msg)
		}
	}
}

// Refresh tokens rotate, and a spent one revokes its chain: a Secret key that holds one backs
// one org. The second org on it is refused naming the first; another key of the same Secret is
// another chain; JWT orgs hold no refresh token and may share a key Secret.
func TestChainOwnerOneOrgPerSecretKey(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	mustCreate(t, newOrg(ns, "acme-uat", sfv1.OrgTypeSandbox, "acme-auth"))
	time.Sleep(1100 * time.Millisecond) // acme-uat is the oldest by creationTimestamp, not just by name

	err := k8s.Create(ctx, newOrg(ns, "acme-qa", sfv1.OrgTypeSandbox, "acme-auth"))
	wantInvalid(t, "a second org on the same Secret key", err, "spec.authSecretRef.name",
		`Secret "acme-auth" key "sfdxAuthUrl" already holds the credential of SalesforceOrg "acme-uat": Salesforce rotates refresh tokens, and two orgs exchanging one would revoke each other's sessions. Give this org its own Secret (or key): log it in separately (kubectl salesforce login acme-qa) for a refresh token of its own.`)
	err = k8s.Create(ctx, withKey(newOrg(ns, "acme-qa", sfv1.OrgTypeSandbox, "acme-auth"), sfv1.DefaultAuthSecretKey))
	wantInvalid(t, "the default key spelled out", err, "spec.authSecretRef.name", `SalesforceOrg "acme-uat"`)

	// Another key of the same Secret is another chain.
	mustCreate(t, withKey(newOrg(ns, "acme-dev", sfv1.OrgTypeSandbox, "acme-auth"), "dev"))
	err = k8s.Create(ctx, withKey(newOrg(ns, "aaa-dev", sfv1.OrgTypeSandbox, "acme-auth"), "dev"))
	wantInvalid(t, "a second org on key dev", err, "spec.authSecretRef.name", `Secret "acme-auth" key "dev" already holds the credential of SalesforceOrg "acme-dev"`)

	// Two JWT orgs may share their private key Secret.
	mustCreate(t,
		jwtOrg(ns, "ci", sfv1.OrgTypeProduction, "key", "ci@acme.com", "ci-jwt"),
		jwtOrg(ns, "ci2", sfv1.OrgTypeProduction, "key", "ci2@acme.com", "ci-jwt"))

	// Moving onto another org's key is refused; moving to a free key is not.
	mustCreate(t, newOrg(ns, "other", sfv1.OrgTypeSandbox, "other-auth"))
	o := getOrg(t, ns, "other")
	o.Spec.AuthSecretRef.Name = "acme-auth"
	wantInvalid(t, "authSecretRef changed onto another org's key", k8s.Update(ctx, o), "spec.authSecretRef.name",
		`Secret "acme-auth" key "sfdxAuthUrl" already holds the credential of SalesforceOrg "acme-uat"`)
	o = getOrg(t, ns, "other")
	o.Spec.AuthSecretRef.Key = "dev"
	o.Spec.AuthSecretRef.Name = "acme-auth"
	wantInvalid(t, "authSecretRef.key changed onto another org's key", k8s.Update(ctx, o), "spec.authSecretRef.name", `SalesforceOrg "acme-dev"`)
	o = getOrg(t, ns, "other")
	o.Spec.AuthSecretRef.Key = "uat"
	o.Spec.AuthSecretRef.Name = "acme-auth"
	if err := k8s.Update(ctx, o); err != nil {
		t.Errorf("moving to a free key of a shared Secret: %s", apiErrorOnly(err))
	}
	// An update that keeps the chain where it is, and a label change, are not checked again.
	if _, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-uat", "team=sales"); err != nil {
		t.Errorf("labelling an org on its own key: %s", stderr)
	}

	// The Secret the operator writes for a sandboxOf org is that sandbox's chain.
	mustCreate(t, sandboxOfOrg(ns, "acme-sb", "prod", "sb"))
	err = k8s.Create(ctx, newOrg(ns, "thief", sfv1.OrgTypeSandbox, "acme-sb-sandbox-auth"))
	wantInvalid(t, "an authSecretRef naming a sandbox's own Secret", err, "spec.authSecretRef.name",
		`Secret "acme-sb-sandbox-auth" key "sfdxAuthUrl" already holds the credential of SalesforceOrg "acme-sb"`)
	mustCreate(t, newOrg(ns, "legacy", sfv1.OrgTypeSandbox, "late-sandbox-auth"))
	err = k8s.Create(ctx, sandboxOfOrg(ns, "late", "prod", "late"))
	wantInvalid(t, "a sandboxOf org whose Secret another org names", err, "spec.sandboxOf",
		`Secret "late-sandbox-auth" key "sfdxAuthUrl", where the operator keeps this sandbox's credential, already holds the credential of SalesforceOrg "legacy"`)

	// The field selector the webhook lists by.
	if out := kubectl(t, "get", "sforg", "-n", ns, "--field-selector", "spec.authSecretRef.name=acme-auth", "-o", "name"); strings.Count(out, "\n") != 3 {
		t.Errorf("--field-selector spec.authSecretRef.name=acme-auth:\n%s", out)
	}
}

// A sandboxOf org is authorised through its production org's chain, which only the production
// org's shard may exchange. Admission refuses the sandbox side (created, relabelled or re-pointed
// into another shard than its production org); a production org may move, with a warning naming
// the sandboxes it leaves behind, so that `kubectl label sforg <prod> <sandboxes> ...` moves all.
func TestShardSandboxFollowsItsProductionOrg(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	shardField := "metadata.labels[sharding.sfops.io/key]"

	// Neither labelled: one shard, the unsharded manager's.
	mustCreate(t, newOrg(ns, "plain", sfv1.OrgTypeProduction, "plain-auth"), sandboxOfOrg(ns, "plain-qa", "plain", "qa"))

	mustCreate(t, inShard(newOrg(ns, "acme-prod", sfv1.OrgTypeProduction, "acme-prod-auth"), "shard1"))
	err := k8s.Create(ctx, inShard(sandboxOfOrg(ns, "acme-qa", "acme-prod", "qa"), "shard2"))
	wantInvalid(t, "a sandbox created in another shard", err, shardField,
		`SalesforceOrg "acme-qa" is in shard "shard2" but its production org "acme-prod" is in shard "shard1" (label sharding.sfops.io/key): a sandbox authorised through its production org must be in the production org's shard, whose manager alone may exchange that org's refresh token. Label it sharding.sfops.io/key=shard1 (kubectl label sforg acme-qa sharding.sfops.io/key=shard1 --overwrite).`)
	err = k8s.Create(ctx, sandboxOfOrg(ns, "acme-qa", "acme-prod", "qa"))
	wantInvalid(t, "an unlabelled sandbox of a sharded production org", err, shardField,
		`SalesforceOrg "acme-qa" is in no shard but its production org "acme-prod" is in shard "shard1"`)
	err = k8s.Create(ctx, inShard(sandboxOfOrg(ns, "plain-uat", "plain", "uat"), "shard1"))
	wantInvalid(t, "a labelled sandbox of an unsharded production org", err, shardField,
		`production org "plain" is in no shard`, "Remove its label, for the unsharded manager (kubectl label sforg plain-uat sharding.sfops.io/key-).")
	mustCreate(t, inShard(sandboxOfOrg(ns, "acme-qa", "acme-prod", "qa"), "shard1"))

	// The sandbox alone cannot leave (label-only updates reach the webhook).
	_, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-qa", "sharding.sfops.io/key=shard2", "--overwrite")
	if err == nil || !strings.Contains(stderr, `SalesforceOrg "acme-qa" is in shard "shard2" but its production org "acme-prod" is in shard "shard1"`) ||
		!strings.Contains(stderr, "To move both, relabel the production org first: kubectl label sforg acme-prod acme-qa sharding.sfops.io/key=shard2 --overwrite.") {
		t.Errorf("relabelling the sandbox away: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-qa", "sharding.sfops.io/key-"); err == nil || !strings.Contains(stderr, `"acme-qa" is in no shard`) {
		t.Errorf("unlabelling the sandbox: %v\n%s", err, stderr)
	}
	if got := rulesShard(t, ns, "acme-qa"); got != "shard1" {
		t.Fatalf("acme-qa is in shard %q after refused relabels", got)
	}
	// Nor be re-pointed at a production org of another shard.
	qa := getOrg(t, ns, "acme-qa")
	qa.Spec.SandboxOf.ProductionOrgRef.Name = "plain"
	wantInvalid(t, "a sandbox re-pointed at a production org in another shard", k8s.Update(ctx, qa),
		"spec.sandboxOf.productionOrgRef.name", `its production org "plain" is in no shard`)

	// Production first, then its sandboxes: one kubectl command moves them all, with a warning.
	stdout, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-prod", "acme-qa", "sharding.sfops.io/key=shard2", "--overwrite")
	if err != nil || strings.Count(stdout, "labeled") != 2 {
		t.Fatalf("moving production and sandbox together: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stderr, `Warning: SalesforceOrg "acme-prod" is in shard "shard2" (label sharding.sfops.io/key) but sandboxes authorised through it are not: acme-qa (shard "shard1"); a sandbox must be in its production org's shard, and they report ShardMismatch until they follow. Move them too: kubectl label sforg acme-qa sharding.sfops.io/key=shard2 --overwrite.`) {
		t.Errorf("the production org's move does not warn about the sandbox it leaves for a moment:\n%s", stderr)
	}
	if rulesShard(t, ns, "acme-prod") != "shard2" || rulesShard(t, ns, "acme-qa") != "shard2" {
		t.Fatal("not both in shard2")
	}

	// The production org alone may move; the sandbox left behind may still be edited (with a
	// warning) and may follow.
	_, stderr, err = kubectlRun("label", "-n", ns, "sforg", "acme-prod", "sharding.sfops.io/key=shard3", "--overwrite")
	if err != nil || !strings.Contains(stderr, `sandboxes authorised through it are not: acme-qa (shard "shard2")`) {
		t.Errorf("moving the production org alone: %v\n%s", err, stderr)
	}
	_, stderr, err = kubectlRun("annotate", "-n", ns, "sforg", "acme-qa", "team=sales")
	if err != nil || !strings.Contains(stderr, `Warning: SalesforceOrg "acme-qa" is in shard "shard2" but its production org "acme-prod" is in shard "shard3"`) {
		t.Errorf("editing a sandbox left behind: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-qa", "sharding.sfops.io/key=shard3", "--overwrite"); err != nil || strings.Contains(stderr, "Warning") {
		t.Errorf("the sandbox following its production org: %v\n%s", err, stderr)
	}

	// Sandbox first is refused, and says to go production first.
	_, stderr, err = kubectlRun("label", "-n", ns, "sforg", "acme-qa", "acme-prod", "sharding.sfops.io/key=shard4", "--overwrite")
	if err == nil || !strings.Contains(stderr, "relabel the production org first: kubectl label sforg acme-prod acme-qa sharding.sfops.io/key=shard4 --overwrite") {
		t.Errorf("sandbox first: %v\n%s", err, stderr)
	}
	if got := rulesShard(t, ns, "acme-qa"); got != "shard3" {
		t.Errorf("acme-qa moved to %q on its own", got)
	}
	t.Logf("sandbox first, then production: acme-prod is in %q afterwards", rulesShard(t, ns, "acme-prod"))
	if _, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-prod", "acme-qa", "sharding.sfops.io/key=shard4", "--overwrite"); err != nil ||
		rulesShard(t, ns, "acme-prod") != "shard4" || rulesShard(t, ns, "acme-qa") != "shard4" {
		t.Errorf("production first, after all: %v\n%s", err, stderr)
	}

	// Back to the unsharded manager, together.
	if _, stderr, err := kubectlRun("label", "-n", ns, "sforg", "acme-prod", "acme-qa", "sharding.sfops.io/key-"); err != nil ||
		!strings.Contains(stderr, "Move them too, to the unsharded manager: kubectl label sforg acme-qa sharding.sfops.io/key-.") {
		t.Errorf("unlabelling both: %v\n%s", err, stderr)
	}
	if rulesShard(t, ns, "acme-prod") != "" || rulesShard(t, ns, "acme-qa") != "" {
		t.Error("not both unlabelled")
	}
}

// rulesShard is an org's shard label value as the API server holds it.
func rulesShard(t *testing.T, ns, name string) string {
	t.Helper()
	return getOrg(t, ns, name).Labels[sfv1.ShardLabel]
}
