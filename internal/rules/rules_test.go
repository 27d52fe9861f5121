package rules

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
)

func TestDefaultDevHubHolderIsTheOldest(t *testing.T) {
	at := func(name string, sec int64, def bool) sfv1.SalesforceOrg {
		o := sfv1.SalesforceOrg{Spec: sfv1.SalesforceOrgSpec{DevHub: def, DefaultDevHub: def}}
		o.Name, o.CreationTimestamp = name, metav1.Unix(sec, 0)
		return o
	}
	for _, tc := range []struct {
		orgs []sfv1.SalesforceOrg
		want string
	}{
		{nil, ""},
		{[]sfv1.SalesforceOrg{at("a", 5, false)}, ""},
		{[]sfv1.SalesforceOrg{at("b", 5, true), at("a", 9, true)}, "b"},
		{[]sfv1.SalesforceOrg{at("b", 5, true), at("a", 5, true)}, "a"},
	} {
		if got := DefaultDevHubHolder(tc.orgs); got != tc.want {
			t.Errorf("holder = %q, want %q", got, tc.want)
		}
	}
}

func fakeReader(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := sfv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...)
	if err := index.Setup(context.Background(), indexer{b}); err != nil {
		t.Fatal(err)
	}
	return b.Build()
}

type indexer struct{ b *fake.ClientBuilder }

func (i indexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

func org(name string, typ sfv1.OrgType, impl string) *sfv1.SalesforceOrg {
	o := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: sfv1.SalesforceOrgSpec{Type: typ}}
	if impl != "" {
		o.Spec.ImplementationRef = &sfv1.LocalObjectReference{Name: impl}
	}
	return o
}

func implementation(name, prod string) *sfv1.SalesforceImplementation {
	i := &sfv1.SalesforceImplementation{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	if prod != "" {
		i.Spec.ProductionOrgRef = &sfv1.LocalObjectReference{Name: prod}
	}
	return i
}

// Bug 1: an implementation whose productionOrgRef names an org that joined another
// implementation does not count it as a member (so deletionPolicy: Delete cannot delete it).
func TestMembersNeverTakeAnotherImplementationsOrg(t *testing.T) {
	c := fakeReader(t,
		org("prod", sfv1.OrgTypeProduction, "acme"),
		org("uat", sfv1.OrgTypeSandbox, "intruder"),
		implementation("acme", "prod"),
		implementation("intruder", "prod"),
		org("free", sfv1.OrgTypeProduction, ""),
		implementation("solo", "free"),
	)
	names := func(impl string) []string {
		i := &sfv1.SalesforceImplementation{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: impl}, i); err != nil {
			t.Fatal(err)
		}
		ms, err := Members(context.Background(), c, i)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if got := names("intruder"); !slices.Equal(got, []string{"uat"}) {
		t.Errorf("intruder's members: %v, want [uat] (prod joined acme)", got)
	}
	if got := names("acme"); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("acme's members: %v", got)
	}
	if got := names("solo"); !slices.Equal(got, []string{"free"}) {
		t.Errorf("an org without implementationRef joins the implementation naming it: %v", got)
	}
}

// Bug 7: the implementation of an org named only by productionOrgRef is chosen by name, not by
// list order, and a second claim is visible to admission.
func TestImplementationOfIsStableAndClaimsAreSeen(t *testing.T) {
	c := fakeReader(t, org("prod", sfv1.OrgTypeProduction, ""), implementation("zeta", "prod"), implementation("alpha", "prod"))
	o := org("prod", sfv1.OrgTypeProduction, "")
	for range 5 {
		impl, _, err := ImplementationOf(context.Background(), c, o)
		if err != nil || impl == nil || impl.Name != "alpha" {
			t.Fatalf("ImplementationOf = %v, %v; want alpha", impl, err)
		}
	}
	by, err := ProductionClaimedBy(context.Background(), c, implementation("zeta", "prod"))
	if err != nil || by != "alpha" {
		t.Fatalf("ProductionClaimedBy(zeta) = %q, %v; want alpha", by, err)
	}
}
