package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The map from Secrets to the orgs that read them follows the org informer's events: a new org,
// an org moved to another Secret, two orgs sharing one, and deletions.
func TestSecretUsersFollowTheOrgs(t *testing.T) {
	org := func(name, secret string) *sfv1.SalesforceOrg {
		return &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name},
			Spec: sfv1.SalesforceOrgSpec{AuthSecretRef: sfv1.SecretKeyReference{Name: secret}}}
	}
	s := newSecretUsers()
	want := func(secret string, orgs ...string) {
		t.Helper()
		got := s.orgs("team", secret)
		slices.Sort(got)
		if !slices.Equal(got, orgs) {
			t.Errorf("orgs of Secret %s: %v, want %v", secret, got, orgs)
		}
	}
	s.add(org("prod", "prod-auth"))
	s.add(org("uat", "shared"))
	s.add(org("dev", "shared"))
	s.add(org("dev", "shared")) // a re-list adds it again
	want("prod-auth", "prod")
	want("shared", "dev", "uat")
	if got := s.orgs("other", "shared"); len(got) != 0 {
		t.Errorf("another namespace's Secret of the same name: %v", got)
	}

	s.update(org("uat", "shared"), org("uat", "uat-auth"))
	want("shared", "dev")
	want("uat-auth", "uat")
	s.update(org("uat", "uat-auth"), org("uat", "uat-auth")) // a status change
	want("uat-auth", "uat")

	s.remove(org("dev", "shared"))
	s.remove(org("prod", "prod-auth"))
	want("shared")
	want("prod-auth")
	if len(s.m) != 1 {
		t.Errorf("entries left: %v", s.m)
	}
}
