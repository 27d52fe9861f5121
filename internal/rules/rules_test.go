package rules

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
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

