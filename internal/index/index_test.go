package index

import (
	"testing"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

func TestStageNames(t *testing.T) {
	stage := func(name, pipeline string) sfv1.PipelineStage {
		s := sfv1.PipelineStage{Spec: sfv1.PipelineStageSpec{Pipeline: pipeline}}
		s.Name = name
		return s
	}
	for _, tc := range []struct {
		stages []sfv1.PipelineStage
		want   string
	}{
		{[]sfv1.PipelineStage{stage("release-uat", "release"), stage("hotfix-uat", "hotfix")}, "hotfix/uat, release/uat"},
		{[]sfv1.PipelineStage{stage("uat", "release")}, "release/uat"},
		{[]sfv1.PipelineStage{stage("release", "release")}, "release/release"},
		{[]sfv1.PipelineStage{stage("release-", "release")}, "release/release-"},
	} {
		if got := StageNames(tc.stages); got != tc.want {
			t.Errorf("StageNames = %q, want %q", got, tc.want)
		}
	}
}

func TestAuthSecretNameIndexesOnlyAuthURLOrgs(t *testing.T) {
	auth := &sfv1.SalesforceOrg{Spec: sfv1.SalesforceOrgSpec{AuthSecretRef: sfv1.SecretKeyReference{Name: "acme-auth"}}}
	jwt := &sfv1.SalesforceOrg{Spec: sfv1.SalesforceOrgSpec{JWT: &sfv1.JWTAuth{PrivateKeySecretRef: sfv1.PrivateKeyReference{Name: "ci-jwt"}}}}
	sandbox := &sfv1.SalesforceOrg{Spec: sfv1.SalesforceOrgSpec{SandboxOf: &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: "prod"}}}}
	if got := AuthSecretName(auth); len(got) != 1 || got[0] != "acme-auth" {
		t.Errorf("auth-URL org: %v", got)
	}
	if got := AuthSecretName(jwt); got != nil {
		t.Errorf("JWT org: %v", got)
	}
	if got := AuthSecretName(sandbox); got != nil {
		t.Errorf("sandboxOf org: %v", got)
	}
}
