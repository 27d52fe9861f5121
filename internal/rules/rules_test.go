package rules

import (
	"context"
	"slices"
	"strings"
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
	if err := index.SetupAuthSecret(context.Background(), indexer{b}); err != nil {
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

// authOrg is an auth-URL org on Secret secret, key key ("" for the default), created at sec.
func authOrg(name, secret, key string, sec int64) *sfv1.SalesforceOrg {
	o := org(name, sfv1.OrgTypeProduction, "")
	o.Spec.AuthSecretRef = sfv1.SecretKeyReference{Name: secret, Key: key}
	o.CreationTimestamp = metav1.Unix(sec, 0)
	return o
}

func jwtOrg(name, secret string) *sfv1.SalesforceOrg {
	o := org(name, sfv1.OrgTypeProduction, "")
	o.Spec.JWT = &sfv1.JWTAuth{ClientID: "id", Username: name + "@acme.com", PrivateKeySecretRef: sfv1.PrivateKeyReference{Name: secret}}
	return o
}

func sandboxOf(name, prod string, sec int64) *sfv1.SalesforceOrg {
	o := org(name, sfv1.OrgTypeSandbox, "")
	o.Spec.SandboxOf = &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: prod}, SandboxName: name}
	o.CreationTimestamp = metav1.Unix(sec, 0)
	return o
}

func labelled(o *sfv1.SalesforceOrg, shard string) *sfv1.SalesforceOrg {
	o.Labels = map[string]string{sfv1.ShardLabel: shard}
	return o
}

func TestChainKey(t *testing.T) {
	for _, tc := range []struct {
		org  *sfv1.SalesforceOrg
		want Chain
		ok   bool
	}{
		{authOrg("a", "acme-auth", "", 0), Chain{"ns", "acme-auth", "sfdxAuthUrl"}, true},
		{authOrg("a", "acme-auth", "uat", 0), Chain{"ns", "acme-auth", "uat"}, true},
		{sandboxOf("qa", "prod", 0), Chain{"ns", "qa-sandbox-auth", "sfdxAuthUrl"}, true},
		{jwtOrg("ci", "ci-jwt"), Chain{}, false},
	} {
		got, ok := ChainKey(tc.org)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ChainKey(%s) = %v, %v; want %v, %v", tc.org.Name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOtherChainOwnerIsTheOldestOrgOnTheSameKey(t *testing.T) {
	deleting := authOrg("going", "gone-auth", "", 1)
	deleting.Finalizers = []string{"salesforce.sfops.io/finalizer"}
	deleting.DeletionTimestamp = &metav1.Time{Time: metav1.Unix(50, 0).Time}
	c := fakeReader(t,
		authOrg("uat", "acme-auth", "", 20),
		authOrg("b-prod", "acme-auth", "", 10),
		authOrg("a-prod", "acme-auth", "", 10),
		authOrg("dev", "acme-auth", "dev", 5), // same Secret, another key
		jwtOrg("ci", "ci-jwt"),
		jwtOrg("ci2", "ci-jwt"),
		sandboxOf("qa", "prod", 30),
		authOrg("legacy", "old-sandbox-auth", "", 3), // "old" is not a sandboxOf org
		authOrg("old", "old-auth", "", 3),
		deleting,
	)
	ctx := context.Background()
	for _, tc := range []struct {
		org  *sfv1.SalesforceOrg
		want string
	}{
		{authOrg("new", "acme-auth", "", 99), "a-prod"},            // oldest, then by name
		{authOrg("a-prod", "acme-auth", "", 10), "b-prod"},         // never itself
		{authOrg("uat", "acme-auth", "sfdxAuthUrl", 20), "a-prod"}, // the default key spelled out
		{authOrg("new", "acme-auth", "other", 99), ""},             // same Secret, another key
		{authOrg("dev2", "acme-auth", "dev", 99), "dev"},           // a named key
		{jwtOrg("ci3", "ci-jwt"), ""},                              // JWT orgs have no chain
		{authOrg("steal", "qa-sandbox-auth", "", 99), "qa"},        // a sandbox's own Secret
		{authOrg("steal", "qa-sandbox-auth", "other", 99), ""},     // ...another key of it
		{sandboxOf("old", "prod", 3), "legacy"},                    // becoming a sandbox whose Secret is taken
		{sandboxOf("qa", "prod", 30), ""},                          // nobody else
		{authOrg("next", "gone-auth", "", 99), "going"},            // being deleted still counts
		{authOrg("x", "ci-jwt", "tls.key", 99), ""},                // a JWT key is no chain
	} {
		got, err := OtherChainOwner(ctx, c, tc.org)
		if err != nil || got != tc.want {
			t.Errorf("OtherChainOwner(%s on %v) = %q, %v; want %q", tc.org.Name, tc.org.Spec.AuthSecretRef, got, err, tc.want)
		}
	}
}

func TestChainInUseMessage(t *testing.T) {
	got := ChainInUseMessage(authOrg("acme-uat2", "acme-auth", "", 0), "acme-uat", false)
	want := `Secret "acme-auth" key "sfdxAuthUrl" already holds the credential of SalesforceOrg "acme-uat": Salesforce rotates refresh tokens, and two orgs exchanging one would revoke each other's sessions. Give this org its own Secret (or key): log it in separately (kubectl salesforce login acme-uat2) for a refresh token of its own.`
	if got != want {
		t.Errorf("message:\n%s\nwant:\n%s", got, want)
	}
	if got := ChainInUseMessage(sandboxOf("qa", "prod", 0), "legacy", false); !strings.Contains(got, `Secret "qa-sandbox-auth" key "sfdxAuthUrl", where the operator keeps this sandbox's credential, already holds the credential of SalesforceOrg "legacy"`) {
		t.Errorf("sandbox message: %s", got)
	}
	if got := ChainInUseMessage(authOrg("n", "a", "", 0), "going", true); !strings.Contains(got, `which is being deleted`) {
		t.Errorf("deleting owner message: %s", got)
	}
}

func TestShardOf(t *testing.T) {
	none := org("a", sfv1.OrgTypeProduction, "")
	if ShardOf(none) != "" || ShardOf(labelled(org("b", sfv1.OrgTypeProduction, ""), "s1")) != "s1" {
		t.Error("ShardOf")
	}
	if !SameShard(none, org("c", sfv1.OrgTypeSandbox, "")) || SameShard(none, labelled(org("d", sfv1.OrgTypeSandbox, ""), "")) ||
		SameShard(labelled(org("e", sfv1.OrgTypeSandbox, ""), "s1"), labelled(org("f", sfv1.OrgTypeSandbox, ""), "s2")) {
		t.Error("SameShard")
	}
}

func TestShardConflict(t *testing.T) {
	c := fakeReader(t,
		labelled(authOrg("prod1", "prod1-auth", "", 1), "shard1"),
		authOrg("plain", "plain-auth", "", 1),
	)
	ctx := context.Background()
	for _, tc := range []struct {
		org  *sfv1.SalesforceOrg
		want string // "" or a part of the message
	}{
		{labelled(sandboxOf("qa", "prod1", 2), "shard1"), ""},
		{sandboxOf("qa", "plain", 2), ""},                       // both without a shard
		{labelled(sandboxOf("qa", "missing", 2), "shard2"), ""}, // no production org to compare with
		{labelled(authOrg("x", "x-auth", "", 2), "shard2"), ""}, // not a sandboxOf org
		{labelled(sandboxOf("qa", "prod1", 2), "shard2"),
			`SalesforceOrg "qa" is in shard "shard2" but its production org "prod1" is in shard "shard1" (label sharding.sfops.io/key): a sandbox authorised through its production org must be in the production org's shard, whose manager alone may exchange that org's refresh token. Label it sharding.sfops.io/key=shard1 (kubectl label sforg qa sharding.sfops.io/key=shard1 --overwrite).`},
		{sandboxOf("qa", "prod1", 2), `SalesforceOrg "qa" is in no shard but its production org "prod1" is in shard "shard1"`},
		{labelled(sandboxOf("qa", "plain", 2), "shard2"), `"plain" is in no shard (label sharding.sfops.io/key): a sandbox authorised through its production org must be in the production org's shard, whose manager alone may exchange that org's refresh token. Remove its label, for the unsharded manager (kubectl label sforg qa sharding.sfops.io/key-).`},
	} {
		got, err := ShardConflict(ctx, c, tc.org)
		if err != nil || (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("ShardConflict(%s, labels %v) = %q, %v; want %q", tc.org.Name, tc.org.Labels, got, err, tc.want)
		}
	}
}

func TestSandboxesLeftBehind(t *testing.T) {
	c := fakeReader(t,
		labelled(sandboxOf("qa", "prod", 2), "shard1"),
		sandboxOf("dev", "prod", 2),
		labelled(sandboxOf("uat", "prod", 2), "shard2"),
		labelled(sandboxOf("other", "elsewhere", 2), "shard1"),
	)
	ctx := context.Background()
	names, msg, err := SandboxesLeftBehind(ctx, c, labelled(authOrg("prod", "prod-auth", "", 1), "shard2"))
	if err != nil || !slices.Equal(names, []string{"dev", "qa"}) {
		t.Fatalf("left behind = %v, %v; want [dev qa]", names, err)
	}
	want := `SalesforceOrg "prod" is in shard "shard2" (label sharding.sfops.io/key) but sandboxes authorised through it are not: dev (no shard), qa (shard "shard1"); a sandbox must be in its production org's shard, and they report ShardMismatch until they follow. Move them too: kubectl label sforg dev qa sharding.sfops.io/key=shard2 --overwrite.`
	if msg != want {
		t.Errorf("message:\n%s\nwant:\n%s", msg, want)
	}
	names, msg, err = SandboxesLeftBehind(ctx, c, authOrg("prod", "prod-auth", "", 1))
	if err != nil || !slices.Equal(names, []string{"qa", "uat"}) || !strings.HasSuffix(msg, "Move them too, to the unsharded manager: kubectl label sforg qa uat sharding.sfops.io/key-.") {
		t.Errorf("left behind by an unsharded production org = %v, %q, %v", names, msg, err)
	}
	if names, msg, err := SandboxesLeftBehind(ctx, c, labelled(authOrg("elsewhere", "e-auth", "", 1), "shard1")); err != nil || names != nil || msg != "" {
		t.Errorf("no sandbox left behind: %v, %q, %v", names, msg, err)
	}
}
