// Package rules holds the rules that span objects: which stages hold an org, which implementation
// an org belongs to and who its members are, one production org per implementation, one default
// Dev Hub per namespace, what suspension means, one org per credential chain (Secret key), and a
// sandbox in its production org's shard. The admission webhooks (which refuse) and the
// controllers (which report and act as the backstop) both use it, so the two never disagree.
// It only reads, through whatever reader it is given (the cache, or an uncached API reader with
// the CRDs' selectable fields; the chain and shard rules want the latter, see ChainSharers); it
// never writes, never reads Secrets and never calls Salesforce.
package rules

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/index"
)

// StagesHolding lists the Active PipelineStages, not being deleted, that map to the org: while
// there is one, the org cannot be made Inactive or deleted.
func StagesHolding(ctx context.Context, r client.Reader, namespace, org string) ([]sfv1.PipelineStage, error) {
	stages, err := index.ActiveStagesForOrg(ctx, r, namespace, org)
	if err != nil {
		return nil, fmt.Errorf("listing the pipeline stages of SalesforceOrg %q: %w", org, err)
	}
	return stages, nil
}

// SandboxesOf lists, sorted, the names of the orgs (not being deleted) authorised through org as
// their production org (spec.sandboxOf): while there is one, org cannot be made Inactive or deleted.
func SandboxesOf(ctx context.Context, r client.Reader, namespace, org string) ([]string, error) {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{index.OrgSandboxOf: org}); err != nil {
		return nil, fmt.Errorf("listing the sandboxes authorised through SalesforceOrg %q: %w", org, err)
	}
	var names []string
	for _, o := range list.Items {
		if o.DeletionTimestamp.IsZero() {
			names = append(names, o.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// ImplementationOf is the implementation the org belongs to: the one its implementationRef
// names, else the one whose productionOrgRef names it (the first by name, if several do, which
// admission refuses). named is the implementation's name even when it does not exist (impl nil).
func ImplementationOf(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) (impl *sfv1.SalesforceImplementation, named string, err error) {
	if ref := org.Spec.ImplementationRef; ref != nil {
		named = ref.Name
	} else {
		claims, err := ImplementationsNamingProduction(ctx, r, org.Namespace, org.Name)
		if err != nil {
			return nil, "", err
		}
		if len(claims) == 0 {
			return nil, "", nil
		}
		return &claims[0], claims[0].Name, nil
	}
	impl = &sfv1.SalesforceImplementation{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: named}, impl); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, named, nil
		}
		return nil, named, fmt.Errorf("reading SalesforceImplementation %q: %w", named, err)
	}
	return impl, named, nil
}

// ImplementationsNamingProduction lists, sorted by name, the implementations (not being deleted)
// whose productionOrgRef names org.
func ImplementationsNamingProduction(ctx context.Context, r client.Reader, namespace, org string) ([]sfv1.SalesforceImplementation, error) {
	var list sfv1.SalesforceImplementationList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{index.ImplProductionOrg: org}); err != nil {
		return nil, fmt.Errorf("listing the implementations naming SalesforceOrg %q: %w", org, err)
	}
	var out []sfv1.SalesforceImplementation
	for _, impl := range list.Items {
		if impl.DeletionTimestamp.IsZero() {
			out = append(out, impl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Suspended is the org's implementation when that implementation is suspended, else nil.
func Suspended(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) (*sfv1.SalesforceImplementation, error) {
	impl, _, err := ImplementationOf(ctx, r, org)
	if err != nil || impl == nil || !impl.Spec.Suspend {
		return nil, err
	}
	return impl, nil
}

// BelongsTo says whether org is a member of the implementation named impl: it joined through
// implementationRef, or impl's productionOrgRef names it and it joined no other implementation.
func BelongsTo(org *sfv1.SalesforceOrg, impl *sfv1.SalesforceImplementation) bool {
	if ref := org.Spec.ImplementationRef; ref != nil {
		return ref.Name == impl.Name
	}
	ref := impl.Spec.ProductionOrgRef
	return ref != nil && ref.Name == org.Name
}

// Members lists the implementation's member orgs, sorted by name: those whose implementationRef
// names it, plus the productionOrgRef org unless that org joined another implementation.
func Members(ctx context.Context, r client.Reader, impl *sfv1.SalesforceImplementation) ([]sfv1.SalesforceOrg, error) {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(impl.Namespace),
		client.MatchingFields{index.OrgImplementation: impl.Name}); err != nil {
		return nil, fmt.Errorf("listing the member orgs: %w", err)
	}
	members := list.Items
	if ref := impl.Spec.ProductionOrgRef; ref != nil && !containsOrg(members, ref.Name) {
		prod := &sfv1.SalesforceOrg{}
		err := r.Get(ctx, types.NamespacedName{Namespace: impl.Namespace, Name: ref.Name}, prod)
		switch {
		case err == nil && BelongsTo(prod, impl):
			members = append(members, *prod)
		case err != nil && !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading the production org %q: %w", ref.Name, err)
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	return members, nil
}

func containsOrg(orgs []sfv1.SalesforceOrg, name string) bool {
	for i := range orgs {
		if orgs[i].Name == name {
			return true
		}
	}
	return false
}

// StagesHoldingMembers lists the Active stages of every member of the implementation.
func StagesHoldingMembers(ctx context.Context, r client.Reader, impl *sfv1.SalesforceImplementation) ([]sfv1.PipelineStage, error) {
	members, err := Members(ctx, r, impl)
	if err != nil {
		return nil, err
	}
	var all []sfv1.PipelineStage
	for _, m := range members {
		stages, err := StagesHolding(ctx, r, impl.Namespace, m.Name)
		if err != nil {
			return nil, err
		}
		all = append(all, stages...)
	}
	return all, nil
}

// ProductionClaimedBy is the name of another implementation (not impl, not being deleted) whose
// productionOrgRef names the same org as impl's, or "".
func ProductionClaimedBy(ctx context.Context, r client.Reader, impl *sfv1.SalesforceImplementation) (string, error) {
	ref := impl.Spec.ProductionOrgRef
	if ref == nil {
		return "", nil
	}
	claims, err := ImplementationsNamingProduction(ctx, r, impl.Namespace, ref.Name)
	if err != nil {
		return "", err
	}
	for _, c := range claims {
		if c.Name != impl.Name {
			return c.Name, nil
		}
	}
	return "", nil
}

// OtherProductionMember is the name of a Production org other than org that already joined the
// implementation org's implementationRef names, or "".
func OtherProductionMember(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) (string, error) {
	ref := org.Spec.ImplementationRef
	if org.Spec.Type != sfv1.OrgTypeProduction || ref == nil {
		return "", nil
	}
	var members sfv1.SalesforceOrgList
	if err := r.List(ctx, &members, client.InNamespace(org.Namespace),
		client.MatchingFields{index.OrgImplementation: ref.Name}); err != nil {
		return "", fmt.Errorf("listing the members of SalesforceImplementation %q: %w", ref.Name, err)
	}
	for _, m := range members.Items {
		if m.Name != org.Name && m.Spec.Type == sfv1.OrgTypeProduction && m.DeletionTimestamp.IsZero() {
			return m.Name, nil
		}
	}
	return "", nil
}

// DefaultDevHubHolder picks, among orgs claiming defaultDevHub, the one that holds it: the
// oldest, then by name. Webhook and controller both name the same org through it.
func DefaultDevHubHolder(orgs []sfv1.SalesforceOrg) string {
	var holder *sfv1.SalesforceOrg
	for i := range orgs {
		o := &orgs[i]
		if !o.Spec.DefaultDevHub || !o.DeletionTimestamp.IsZero() {
			continue
		}
		if holder == nil || o.CreationTimestamp.Before(&holder.CreationTimestamp) ||
			(o.CreationTimestamp.Equal(&holder.CreationTimestamp) && o.Name < holder.Name) {
			holder = o
		}
	}
	if holder == nil {
		return ""
	}
	return holder.Name
}

// DefaultDevHubOf is the namespace's default Dev Hub holder among its orgs, ignoring skip ("" for none).
func DefaultDevHubOf(ctx context.Context, r client.Reader, namespace, skip string) (string, error) {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return "", fmt.Errorf("listing the orgs of namespace %q: %w", namespace, err)
	}
	others := list.Items[:0]
	for _, o := range list.Items {
		if o.Name != skip {
			others = append(others, o)
		}
	}
	return DefaultDevHubHolder(others), nil
}

// ---- One owner per credential chain ----
//
// Salesforce rotates refresh tokens: exchanging one returns its successor and kills it, and
// presenting a spent one revokes the whole chain. So the place where an org keeps its refresh
// token (a Secret key) backs exactly one org; two orgs on one key would revoke each other's
// sessions. JWT orgs hold no refresh token (a private key is never spent), so any number of them
// may share a key Secret.

// Chain is where an org keeps its credential chain: a key of a Secret in its namespace.
type Chain struct {
	Namespace, Secret, Key string
}

func (c Chain) String() string { return fmt.Sprintf("Secret %q key %q", c.Secret, c.Key) }

// sandboxAuthSuffix is what SalesforceOrg.SandboxAuthSecretName appends to a sandbox's name.
const sandboxAuthSuffix = "-sandbox-auth"

// ChainKey is where org keeps its refresh token: authSecretRef's Secret and key (default
// sfdxAuthUrl), or for a sandboxOf org the Secret the operator writes for it
// (<org>-sandbox-auth, key sfdxAuthUrl). ok is false for a JWT org, which has no chain.
func ChainKey(org *sfv1.SalesforceOrg) (key Chain, ok bool) {
	switch org.Source() {
	case sfv1.CredentialSourceJWT:
		return Chain{}, false
	case sfv1.CredentialSourceSandboxOf:
		return Chain{Namespace: org.Namespace, Secret: org.SandboxAuthSecretName(), Key: sfv1.DefaultAuthSecretKey}, true
	}
	return Chain{Namespace: org.Namespace, Secret: org.Spec.AuthSecretRef.Name, Key: org.AuthSecretKey()}, true
}

// ChainSharers lists the other orgs in org's namespace that keep their chain where org does,
// oldest first (creationTimestamp, then name): auth-URL orgs naming the same Secret and key, and
// the sandboxOf org whose operator-written Secret that is. Orgs being deleted count until they
// are gone (a check may still be exchanging their token). Nothing for a JWT org.
//
// It lists by the spec.authSecretRef.name field (index.OrgAuthSecret), which the API server
// serves as a selectable field; the manager's cache does not index it (index.SetupAuthSecret
// says why), so pass the uncached API reader, which also sees the orgs of every shard.
func ChainSharers(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) ([]sfv1.SalesforceOrg, error) {
	chain, ok := ChainKey(org)
	if !ok || chain.Secret == "" {
		return nil, nil
	}
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(chain.Namespace), client.MatchingFields{index.OrgAuthSecret: chain.Secret}); err != nil {
		return nil, fmt.Errorf("listing the orgs that use Secret %q: %w", chain.Secret, err)
	}
	var sharers []sfv1.SalesforceOrg
	for _, o := range list.Items {
		if c, ok := ChainKey(&o); ok && o.Name != org.Name && c == chain {
			sharers = append(sharers, o)
		}
	}
	// The Secret may be the one the operator writes for a sandboxOf org (<sandbox>-sandbox-auth).
	if sandbox, found := strings.CutSuffix(chain.Secret, sandboxAuthSuffix); found && sandbox != "" && sandbox != org.Name &&
		chain.Key == sfv1.DefaultAuthSecretKey {
		sb := &sfv1.SalesforceOrg{}
		err := r.Get(ctx, types.NamespacedName{Namespace: chain.Namespace, Name: sandbox}, sb)
		switch {
		case err == nil:
			// An auth-URL org of that name naming the Secret itself was listed above.
			if c, ok := ChainKey(sb); ok && c == chain && sb.Source() == sfv1.CredentialSourceSandboxOf {
				sharers = append(sharers, *sb)
			}
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading SalesforceOrg %q: %w", sandbox, err)
		}
	}
	sort.Slice(sharers, func(i, j int) bool { return Older(&sharers[i], &sharers[j]) })
	return sharers, nil
}

// Older orders orgs by age: a was created before b, or at the same second and a's name sorts first.
func Older(a, b *sfv1.SalesforceOrg) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// OtherChainOwner is the name of the oldest other org that keeps its chain where org does
// (ChainSharers), or "". Admission refuses org then. The controller, for an org that got past
// admission, keeps the chain with the oldest of them: org owns it when the result is "" or
// Older(org, that org); any younger sharer reports SecretKeyInUse with ChainInUseMessage.
func OtherChainOwner(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) (string, error) {
	sharers, err := ChainSharers(ctx, r, org)
	if err != nil || len(sharers) == 0 {
		return "", err
	}
	return sharers[0].Name, nil
}

// ChainInUseMessage says, in one sentence with the fix, that org's chain location already holds
// owner's credential (owner is the org OtherChainOwner named; deleting: it is being deleted).
func ChainInUseMessage(org *sfv1.SalesforceOrg, owner string, deleting bool) string {
	chain, _ := ChainKey(org)
	const why = "Salesforce rotates refresh tokens, and two orgs exchanging one would revoke each other's sessions."
	if deleting {
		return fmt.Sprintf("%s still holds the credential of SalesforceOrg %q, which is being deleted: %s Try again once it is gone, or give this org its own Secret (or key).",
			chain, owner, why)
	}
	if org.Source() == sfv1.CredentialSourceSandboxOf {
		return fmt.Sprintf("%s, where the operator keeps this sandbox's credential, already holds the credential of SalesforceOrg %q: %s Move SalesforceOrg %q to a Secret of its own (kubectl salesforce login %s), or give this sandbox another name.",
			chain, owner, why, owner, owner)
	}
	return fmt.Sprintf("%s already holds the credential of SalesforceOrg %q: %s Give this org its own Secret (or key): log it in separately (kubectl salesforce login %s) for a refresh token of its own.",
		chain, owner, why, org.Name)
}

// ---- A sandbox in its production org's shard ----
//
// A sandboxOf org is authorised through its production org's credential chain, and in a sharded
// install (managers selecting by the sharding.sfops.io/key label) only the production org's
// shard may exchange that chain. So a sandboxOf org must carry its production org's shard label
// value (both without the label counts as equal).
//
// Admission refuses only the sandbox side: creating a sandboxOf org in another shard than its
// production org, or changing its label or its sandboxOf so that it lands in one. Relabelling a
// production org is allowed, with a warning naming the sandboxes it leaves behind (they report
// ShardMismatch until they follow). Refusing that too would deadlock a move: the production org
// could not go first while its sandboxes stay, nor a sandbox first while its production org stays.
// With this rule `kubectl label sforg <production> <sandboxes...> sharding.sfops.io/key=<shard>`
// (production first) moves them all.

// ShardOf is obj's shard: the value of its sharding.sfops.io/key label, "" without one.
func ShardOf(obj metav1.Object) string { return obj.GetLabels()[sfv1.ShardLabel] }

// SameShard says whether a and b are in one shard: the same label value, or both without the label.
func SameShard(a, b metav1.Object) bool {
	va, oka := a.GetLabels()[sfv1.ShardLabel]
	vb, okb := b.GetLabels()[sfv1.ShardLabel]
	return oka == okb && va == vb
}

// describeShard names obj's shard in a message.
func describeShard(obj metav1.Object) string {
	if v, ok := obj.GetLabels()[sfv1.ShardLabel]; ok {
		return fmt.Sprintf("shard %q", v)
	}
	return "no shard"
}

// labelCommand is the kubectl command that puts orgs in the shard of like (removes the label
// when like has none).
func labelCommand(like metav1.Object, orgs ...string) string {
	if v, ok := like.GetLabels()[sfv1.ShardLabel]; ok {
		return fmt.Sprintf("kubectl label sforg %s %s=%s --overwrite", strings.Join(orgs, " "), sfv1.ShardLabel, v)
	}
	return fmt.Sprintf("kubectl label sforg %s %s-", strings.Join(orgs, " "), sfv1.ShardLabel)
}

// MoveTogetherCommand is the kubectl command that moves production and sandbox into sandbox's
// shard, production first (the order admission lets through).
func MoveTogetherCommand(production string, sandbox *sfv1.SalesforceOrg) string {
	return labelCommand(sandbox, production, sandbox.Name)
}

// ShardConflict says, in a sentence with the fix, why org (a sandboxOf org) is in another shard
// than its production org; "" when it is not a sandboxOf org, its production org does not
// exist, or both are in one shard. Admission refuses it (see above); the controller reports
// ShardMismatch with it. Read through the API reader: a shard's cache does not see the
// production org when it is in another shard.
func ShardConflict(ctx context.Context, r client.Reader, org *sfv1.SalesforceOrg) (string, error) {
	sb := org.Spec.SandboxOf
	if sb == nil {
		return "", nil
	}
	prod := &sfv1.SalesforceOrg{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: sb.ProductionOrgRef.Name}, prod); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading the production org %q: %w", sb.ProductionOrgRef.Name, err)
	}
	if SameShard(org, prod) {
		return "", nil
	}
	fix := fmt.Sprintf("Label it %s=%s", sfv1.ShardLabel, ShardOf(prod))
	if _, ok := prod.Labels[sfv1.ShardLabel]; !ok {
		fix = "Remove its label, for the unsharded manager"
	}
	return fmt.Sprintf("SalesforceOrg %q is in %s but its production org %q is in %s (label %s): a sandbox authorised through its production org must be in the production org's shard, whose manager alone may exchange that org's refresh token. %s (%s).",
		org.Name, describeShard(org), prod.Name, describeShard(prod), sfv1.ShardLabel, fix, labelCommand(prod, org.Name)), nil
}

// SandboxesLeftBehind lists, sorted, the sandboxOf orgs (not being deleted) in prod's namespace
// that name prod as their production org but are in another shard, and a warning naming them
// with the fix ("" when there are none). Read through the API reader: a shard's cache does not
// see sandboxes of other shards.
func SandboxesLeftBehind(ctx context.Context, r client.Reader, prod *sfv1.SalesforceOrg) (names []string, msg string, err error) {
	var list sfv1.SalesforceOrgList
	if err := r.List(ctx, &list, client.InNamespace(prod.Namespace), client.MatchingFields{index.OrgSandboxOf: prod.Name}); err != nil {
		return nil, "", fmt.Errorf("listing the sandboxes authorised through SalesforceOrg %q: %w", prod.Name, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var described []string
	for i := range list.Items {
		sb := &list.Items[i]
		if sb.Name == prod.Name || !sb.DeletionTimestamp.IsZero() || SameShard(sb, prod) {
			continue
		}
		names = append(names, sb.Name)
		described = append(described, fmt.Sprintf("%s (%s)", sb.Name, describeShard(sb)))
	}
	if len(names) == 0 {
		return nil, "", nil
	}
	to := "Move them too"
	if _, ok := prod.Labels[sfv1.ShardLabel]; !ok {
		to = "Move them too, to the unsharded manager"
	}
	msg = fmt.Sprintf("SalesforceOrg %q is in %s (label %s) but sandboxes authorised through it are not: %s; a sandbox must be in its production org's shard, and they report ShardMismatch until they follow. %s: %s.",
		prod.Name, describeShard(prod), sfv1.ShardLabel, strings.Join(described, ", "), to, labelCommand(prod, names...))
	return names, msg, nil
}
