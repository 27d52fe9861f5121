package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The map from Secrets to the orgs that read them follows the org informer's events: a new org,
// an org moved to another Secret, two orgs sharing one, and deletions (also as a tombstone).
func TestSecretUsersFollowTheOrgs(t *testing.T) {
	org := func(name, secret string) *sfv1.SalesforceOrg {
		return &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name},
			Spec: sfv1.SalesforceOrgSpec{AuthSecretRef: sfv1.SecretKeyReference{Name: secret}}}
	}
	s := newSecretUsers()
	h := s.handler()
	want := func(secret string, orgs ...string) {
		t.Helper()
		got := s.orgs("team", secret)
		slices.Sort(got)
		if !slices.Equal(got, orgs) {
			t.Errorf("orgs of Secret %s: %v, want %v", secret, got, orgs)
		}
	}
	h.OnAdd(org("prod", "prod-auth"), false)
	h.OnAdd(org("uat", "shared"), false)
	h.OnAdd(org("dev", "shared"), false)
	h.OnAdd(org("dev", "shared"), false) // a re-list adds it again
	want("prod-auth", "prod")
	want("shared", "dev", "uat")
	if got := s.orgs("other", "shared"); len(got) != 0 {
		t.Errorf("another namespace's Secret of the same name: %v", got)
	}

	h.OnUpdate(org("uat", "shared"), org("uat", "uat-auth"))
	want("shared", "dev")
	want("uat-auth", "uat")
	h.OnUpdate(org("uat", "uat-auth"), org("uat", "uat-auth")) // a status change
	want("uat-auth", "uat")

	h.OnDelete(org("dev", "shared"))
	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "team/prod", Obj: org("prod", "prod-auth")})
	want("shared")
	want("prod-auth")
	if len(s.m) != 1 {
		t.Errorf("entries left: %v", s.m)
	}
}
