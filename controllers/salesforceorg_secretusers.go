package controllers

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// secretUsers maps each credential Secret to the orgs that read it: the orgs a Secret's event
// wakes. It is kept from the org informer's events (orgNeighbours). A field index on the cache would do the same
// with two one-element sets per org (a namespaced and a cluster-wide key, about 1 KiB an org);
// this keeps one map entry, whose names are the cached orgs' own strings.
type secretUsers struct {
	mu sync.RWMutex
	m  map[types.NamespacedName][]string
}

func newSecretUsers() *secretUsers {
	return &secretUsers{m: map[types.NamespacedName][]string{}}
}

// orgs names the orgs in namespace ns whose credential is Secret name.
func (s *secretUsers) orgs(ns, name string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.m[types.NamespacedName{Namespace: ns, Name: name}])
}

func (s *secretUsers) add(org *sfv1.SalesforceOrg) {
	key := types.NamespacedName{Namespace: org.Namespace, Name: org.CredentialSecret()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if names := s.m[key]; !slices.Contains(names, org.Name) {
		s.m[key] = append(slices.Clip(names), org.Name)
	}
}

func (s *secretUsers) remove(org *sfv1.SalesforceOrg) {
	key := types.NamespacedName{Namespace: org.Namespace, Name: org.CredentialSecret()}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.DeleteFunc(slices.Clone(s.m[key]), func(n string) bool { return n == org.Name })
	if len(names) == 0 {
		delete(s.m, key)
		return
	}
	s.m[key] = names
}

// update follows an org whose spec may name another Secret now.
func (s *secretUsers) update(was, now *sfv1.SalesforceOrg) {
	if was.CredentialSecret() != now.CredentialSecret() {
		s.remove(was)
		s.add(now)
	}
}
