package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func newImpl(ns, name, prod string) *sfv1.SalesforceImplementation {
	i := &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sfv1.SalesforceImplementationSpec{DisplayName: "Acme Sales Cloud"}}
	if prod != "" {
		i.Spec.ProductionOrgRef = &sfv1.LocalObjectReference{Name: prod}
	}
	return i
}

// member creates a fake org and a SalesforceOrg that joins impl.
func member(t *testing.T, ns, name, impl string, kind sftest.OrgKind, typ sfv1.OrgType) *sftest.Org {
	t.Helper()
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-" + name, Kind: kind})
	putSecret(t, ns, name+"-auth", fo.AuthURL())
	o := newOrg(ns, name, typ, name+"-auth")
	o.Spec.CheckInterval = &metav1.Duration{Duration: time.Hour}
	o.Spec.ImplementationRef = &sfv1.LocalObjectReference{Name: impl}
	mustCreate(t, o)
	return fo
}

func TestImplementationMembershipAndHealth(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	mustCreate(t, newImpl(ns, "acme", "prod"))
	waitImplReady(t, ns, "acme", metav1.ConditionFalse, sfv1.ReasonProductionOrgNotFound)

	member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	member(t, ns, "uat", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
	dev := member(t, ns, "dev", "acme", sftest.DeveloperEdition, sfv1.OrgTypeDeveloperEdition)
	// Ready can be True with two members for a moment, before the third reaches the cache: wait
	// for the whole summary, not for the first True.
	eventually(t, "three connected members", func() string {
		impl := getImpl(t, ns, "acme")
		c := condition(impl.Status.Conditions, sfv1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || impl.Status.Production == nil || impl.Status.Production.Name != "prod" ||
			impl.Status.Production.OrgID == "" || impl.Status.Production.Connection != sfv1.ConnectionConnected ||
			len(impl.Status.Sandboxes) != 2 || impl.Status.OrgCount != 3 || impl.Status.ConnectedCount != 3 {
			return fmt.Sprintf("status: %+v", impl.Status)
		}
		return ""
	})
	out := kubectl(t, "get", "sfimpl", "-n", ns)
	if !containsLine(out, "acme", "Acme", "Sales", "Cloud", "prod", "3", "3", "false", "True") {
		t.Errorf("kubectl get sfimpl:\n%s", out)
	}

	// A member disconnects: named in the message.
	dev.RevokeRefreshTokens()
	dev.ExpireAccessTokens()
	requestCheck(t, ns, "dev")
	impl := waitImplReady(t, ns, "acme", metav1.ConditionFalse, sfv1.ReasonMembersDisconnected)
	if msg := condition(impl.Status.Conditions, sfv1.ConditionReady).Message; msg != "Not connected: dev (Disconnected)." || impl.Status.ConnectedCount != 2 {
		t.Errorf("message %q connected=%d", msg, impl.Status.ConnectedCount)
	}
	// An Inactive sandbox does not count against Ready.
	o := getOrg(t, ns, "dev")
	o.Spec.State = sfv1.StateInactive
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)

	// Churn: members leave and join.
	o = getOrg(t, ns, "uat")
	o.Spec.ImplementationRef = nil
	if err := k8s.Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, getOrg(t, ns, "dev")); err != nil {
		t.Fatal(err)
	}
	member(t, ns, "qa", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
	eventually(t, "membership after churn", func() string {
		i := getImpl(t, ns, "acme")
		var names []string
		for _, s := range i.Status.Sandboxes {
			names = append(names, s.Name)
		}
		if strings.Join(names, ",") != "qa" || i.Status.OrgCount != 2 {
			return fmt.Sprintf("sandboxes=%v orgCount=%d", names, i.Status.OrgCount)
		}
		return ""
	})
}

func TestOneProductionOrgPerImplementation(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newImpl(ns, "acme", "prod"))
	member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	second := newOrg(ns, "prod2", sfv1.OrgTypeProduction, "x")
	second.Spec.ImplementationRef = &sfv1.LocalObjectReference{Name: "acme"}
	err := k8s.Create(context.Background(), second)
	if err == nil || !strings.Contains(err.Error(), `SalesforceImplementation "acme" already has a production org, SalesforceOrg "prod"`) {
		t.Errorf("a second production org: %v", err)
	}
	// productionOrgRef must name a Production org.
	member(t, ns, "sbx", "other", sftest.Sandbox, sfv1.OrgTypeSandbox)
	mustCreate(t, newImpl(ns, "other", "sbx"))
	impl := waitImplReady(t, ns, "other", metav1.ConditionFalse, sfv1.ReasonProductionOrgWrongType)
	if msg := condition(impl.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, `names SalesforceOrg "sbx", which is of type Sandbox`) {
		t.Errorf("wrong type message: %s", msg)
	}
}

func TestSuspendAndResume(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	mustCreate(t, newImpl(ns, "acme", "prod"))
	prod := member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	uat := member(t, ns, "uat", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
	waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)

	impl := getImpl(t, ns, "acme")
	impl.Spec.Suspend = true
	if err := k8s.Update(ctx, impl); err != nil {
		t.Fatal(err)
	}
	impl = waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonSuspended)
	if impl.Status.SuspendedAt == nil {
		t.Errorf("suspendedAt not recorded")
	}
	for _, name := range []string{"prod", "uat"} {
		o := waitOrgReady(t, ns, name, metav1.ConditionTrue, sfv1.ReasonImplementationSuspended)
		if o.Status.Connection != sfv1.ConnectionUnknown {
			t.Errorf("%s connection while suspended: %s", name, o.Status.Connection)
		}
	}
	before := fakeSF.CallsFor(prod) + fakeSF.CallsFor(uat)
	waitHandled(t, ns, "prod", requestCheck(t, ns, "prod"))
	waitHandled(t, ns, "uat", requestCheck(t, ns, "uat"))
	if n := fakeSF.CallsFor(prod) + fakeSF.CallsFor(uat) - before; n != 0 {
		t.Errorf("suspended members made %d calls", n)
	}
	if out := kubectl(t, "get", "sfimpl", "acme", "-n", ns); !containsLine(out, "acme", "Acme", "Sales", "Cloud", "prod", "2", "0", "true", "True") {
		t.Errorf("kubectl get sfimpl while suspended:\n%s", out)
	}

	impl = getImpl(t, ns, "acme")
	impl.Spec.Suspend = false
	if err := k8s.Update(ctx, impl); err != nil {
		t.Fatal(err)
	}
	waitOrgReady(t, ns, "prod", metav1.ConditionTrue, sfv1.ReasonConnected)
	waitOrgReady(t, ns, "uat", metav1.ConditionTrue, sfv1.ReasonConnected)
	impl = waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
	if impl.Status.SuspendedAt != nil {
		t.Errorf("suspendedAt kept after resume")
	}
	if fakeSF.CallsFor(prod)+fakeSF.CallsFor(uat) == before {
		t.Errorf("resume made no checks")
	}
}

func TestSuspendRefusedWhileStagesUseMembers(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newImpl(ns, "acme", "prod"))
	member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
	member(t, ns, "uat", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
	mustCreate(t, newStage(ns, "release-uat", "release", "uat"))
	impl := getImpl(t, ns, "acme")
	impl.Spec.Suspend = true
	err := k8s.Update(context.Background(), impl)
	want := `SalesforceImplementation "acme" cannot be suspended: its orgs are mapped to active pipeline stages release/uat. Remove them from those stages, or set them Inactive, first.`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("suspending an implementation in use: %v", err)
	}
}

func TestDeletionPolicies(t *testing.T) {
	ctx := context.Background()
	t.Run("Orphan", func(t *testing.T) {
		ns := newNamespace(t)
		mustCreate(t, newImpl(ns, "acme", "prod"))
		member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
		waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
		if err := k8s.Delete(ctx, getImpl(t, ns, "acme")); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the implementation to be gone", func() string {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acme"}, &sfv1.SalesforceImplementation{}); err == nil {
				return "still there"
			}
			return ""
		})
		o := waitOrgReady(t, ns, "prod", metav1.ConditionFalse, sfv1.ReasonImplementationNotFound)
		if o.Status.Connection != sfv1.ConnectionConnected {
			t.Errorf("an orphaned member keeps its connection: %s", o.Status.Connection)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		ns := newNamespace(t)
		impl := newImpl(ns, "acme", "prod")
		impl.Spec.DeletionPolicy = sfv1.DeletionPolicyDelete
		mustCreate(t, impl)
		member(t, ns, "prod", "acme", sftest.Production, sfv1.OrgTypeProduction)
		member(t, ns, "uat", "acme", sftest.Sandbox, sfv1.OrgTypeSandbox)
		mustCreate(t, newStage(ns, "release-uat", "release", "uat"))
		waitImplReady(t, ns, "acme", metav1.ConditionTrue, sfv1.ReasonConnected)
		if err := k8s.Delete(ctx, getImpl(t, ns, "acme")); err != nil {
			t.Fatal(err)
		}
		impl = waitImplReady(t, ns, "acme", metav1.ConditionFalse, sfv1.ReasonDeletionBlocked)
		if msg := condition(impl.Status.Conditions, sfv1.ConditionReady).Message; !strings.Contains(msg, `SalesforceOrg "uat" is mapped to active pipeline stages release/uat`) {
			t.Errorf("blocked message: %s", msg)
		}
		eventually(t, "the unused member to be deleted", func() string {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, &sfv1.SalesforceOrg{}); err == nil {
				return "prod still there"
			}
			return ""
		})
		getOrg(t, ns, "uat") // kept while in use
		if err := k8s.Delete(ctx, getStage(t, ns, "release-uat")); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the implementation and its last member to be gone", func() string {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "uat"}, &sfv1.SalesforceOrg{}); err == nil {
				return "uat still there"
			}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acme"}, &sfv1.SalesforceImplementation{}); err == nil {
				return "acme still there"
			}
			return ""
		})
	})
}
