// Package index declares the field indexes the controllers and webhooks share, and the queries
// built on them (which stages use an org, which orgs name an implementation or a production org).
// It reads only what the manager's cache already holds, or the API server through field
// selectors; it never reads Secret data.
package index

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// Index keys. Each is also a CRD selectable field, so the same key works as a server-side field
// selector on an uncached reader (the admission webhooks use that to avoid cache lag).
const (
	// StageOrgRef indexes PipelineStages by spec.orgRef.name.
	StageOrgRef = "spec.orgRef.name"
	// OrgImplementation indexes SalesforceOrgs by spec.implementationRef.name.
	OrgImplementation = "spec.implementationRef.name"
	// OrgSandboxOf indexes SalesforceOrgs by spec.sandboxOf.productionOrgRef.name.
	OrgSandboxOf = "spec.sandboxOf.productionOrgRef.name"
	// ImplProductionOrg indexes SalesforceImplementations by spec.productionOrgRef.name.
	ImplProductionOrg = "spec.productionOrgRef.name"
	// OrgAuthSecret selects SalesforceOrgs by spec.authSecretRef.name (which orgs keep their
	// credential chain in a Secret: rules.OtherChainOwner). Setup does not index it in the
	// manager's cache; see SetupAuthSecret.
	OrgAuthSecret = "spec.authSecretRef.name"
	// AccessOrgRef indexes SalesforceAccessTokens by spec.orgRef.name.
	AccessOrgRef = "spec.orgRef.name"
	// AccessStageRef indexes SalesforceAccessTokens by spec.stageRef.name.
	AccessStageRef = "spec.stageRef.name"
)

// Setup registers every index with the manager's cache.
func Setup(ctx context.Context, fi client.FieldIndexer) error {
	indexes := []struct {
		obj client.Object
		key string
		fn  client.IndexerFunc
	}{
		{&sfv1.PipelineStage{}, StageOrgRef, func(o client.Object) []string {
			return []string{o.(*sfv1.PipelineStage).Spec.OrgRef.Name}
		}},
		{&sfv1.SalesforceOrg{}, OrgImplementation, func(o client.Object) []string {
			if ref := o.(*sfv1.SalesforceOrg).Spec.ImplementationRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}},
		{&sfv1.SalesforceOrg{}, OrgSandboxOf, func(o client.Object) []string {
			if sb := o.(*sfv1.SalesforceOrg).Spec.SandboxOf; sb != nil {
				return []string{sb.ProductionOrgRef.Name}
			}
			return nil
		}},
		{&sfv1.SalesforceAccessToken{}, AccessOrgRef, func(o client.Object) []string {
			return []string{o.(*sfv1.SalesforceAccessToken).Spec.OrgRef.Name}
		}},
		{&sfv1.SalesforceAccessToken{}, AccessStageRef, func(o client.Object) []string {
			if ref := o.(*sfv1.SalesforceAccessToken).Spec.StageRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}},
		{&sfv1.SalesforceImplementation{}, ImplProductionOrg, func(o client.Object) []string {
			if ref := o.(*sfv1.SalesforceImplementation).Spec.ProductionOrgRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}},
	}
	for _, ix := range indexes {
		if err := fi.IndexField(ctx, ix.obj, ix.key, ix.fn); err != nil {
			return fmt.Errorf("index %s: %w", ix.key, err)
		}
	}
	return nil
}

// SetupAuthSecret registers the OrgAuthSecret index. The manager does not call it: nearly every
// org names an auth Secret, so the index would cost its cache about 0.6 KiB an org (6 MiB for
// 10,000 orgs, measured against a client-go indexer), which the controller's secretUsers map
// already spares it; and a shard's cache holds only its own shard's orgs, while two orgs on one
// Secret key must be found across shards. Ask the API reader instead (the CRD serves the field
// as a selectable field), or register this on a cache or fake client that must answer it.
func SetupAuthSecret(ctx context.Context, fi client.FieldIndexer) error {
	if err := fi.IndexField(ctx, &sfv1.SalesforceOrg{}, OrgAuthSecret, AuthSecretName); err != nil {
		return fmt.Errorf("index %s: %w", OrgAuthSecret, err)
	}
	return nil
}

// AuthSecretName is the OrgAuthSecret index function: the Secret an auth-URL org names, or
// nothing for a JWT or sandboxOf org.
func AuthSecretName(o client.Object) []string {
	org := o.(*sfv1.SalesforceOrg)
	if org.Source() != sfv1.CredentialSourceAuthURL || org.Spec.AuthSecretRef.Name == "" {
		return nil
	}
	return []string{org.Spec.AuthSecretRef.Name}
}

// StagesForOrg lists the PipelineStages in namespace that map to the org, active or not, sorted
// by name. r is the cache (indexed) or an uncached reader (served by the CRD's selectable field).
func StagesForOrg(ctx context.Context, r client.Reader, namespace, org string) ([]sfv1.PipelineStage, error) {
	var list sfv1.PipelineStageList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{StageOrgRef: org}); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// AccessTokensFor lists the SalesforceAccessTokens in namespace whose field (AccessOrgRef or
// AccessStageRef) names name. r is the cache (indexed).
func AccessTokensFor(ctx context.Context, r client.Reader, namespace, field, name string) ([]sfv1.SalesforceAccessToken, error) {
	var list sfv1.SalesforceAccessTokenList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{field: name}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ActiveStagesForOrg is StagesForOrg without the Inactive stages and those being deleted:
// the stages that hold the org.
func ActiveStagesForOrg(ctx context.Context, r client.Reader, namespace, org string) ([]sfv1.PipelineStage, error) {
	all, err := StagesForOrg(ctx, r, namespace, org)
	if err != nil {
		return nil, err
	}
	return Active(all), nil
}

// Active keeps the stages that hold their org: Active and not being deleted.
func Active(stages []sfv1.PipelineStage) []sfv1.PipelineStage {
	var active []sfv1.PipelineStage
	for _, s := range stages {
		if s.IsActive() && s.DeletionTimestamp.IsZero() {
			active = append(active, s)
		}
	}
	return active
}

// StageNames formats stages the way refusals name them: "pipeline/stage", sorted, comma separated.
// A stage whose name repeats its pipeline as a prefix ("release-uat" in pipeline "release") is
// shown without it ("release/uat").
func StageNames(stages []sfv1.PipelineStage) string {
	names := make([]string, 0, len(stages))
	for i := range stages {
		names = append(names, StageDisplayName(&stages[i]))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// StageDisplayName is "pipeline/stage" for one stage (see StageNames).
func StageDisplayName(s *sfv1.PipelineStage) string {
	name := strings.TrimPrefix(s.Name, s.Spec.Pipeline+"-")
	if name == "" {
		name = s.Name
	}
	return s.Spec.Pipeline + "/" + name
}
