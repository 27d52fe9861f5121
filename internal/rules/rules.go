// Package rules holds the rules that span objects: which stages hold an org, which implementation
// an org belongs to and who its members are, one production org per implementation, one default
// Dev Hub per namespace, and what suspension means. The admission webhooks (which refuse) and the
// controllers (which report and act as the backstop) both use it, so the two never disagree.
// It only reads, through whatever reader it is given (the cache, or an uncached API reader with
// the CRDs' selectable fields); it never writes, never reads Secrets and never calls Salesforce.
package rules

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
