package salesforce_test

import (
	"context"
	"testing"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// A sandbox is authorised through its production org's session, the code exchanged with the
// production org's app; the credential reaches the sandbox, and INVALID_STATUS is retryable.
func TestAuthorizeSandbox(t *testing.T) {
	s := sftest.NewServer(t)
	prod := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	sb := s.AddOrg(sftest.OrgSpec{Kind: sftest.Sandbox, Production: prod, SandboxName: "uat"})
	c := newClient(t, s)

	prodChain := newMemChain("ns/prod-auth/sfdxAuthUrl", authURL(t, prod))
	auth, err := c.AuthorizeSandbox(context.Background(), prodChain, "", "uat")
	if err != nil {
		t.Fatal(err)
	}
	if auth.OrgID != sb.OrgID() || auth.Username != sb.Username() {
		t.Fatalf("authorised %s as %s, want %s as %s", auth.OrgID, auth.Username, sb.OrgID(), sb.Username())
	}
	res := check(t, c, auth.Credential)
	if res.Facts.OrgID != sb.OrgID() || !res.Facts.IsSandbox {
		t.Fatalf("the sandbox credential reached %+v", res.Facts)
	}

	sb.SetActivating(true)
	_, err = c.AuthorizeSandbox(context.Background(), prodChain, "", "uat")
	wantError(t, err, salesforce.ReasonSandboxActivating, true)

	_, err = c.AuthorizeSandbox(context.Background(), prodChain, "", "nosuch")
	wantError(t, err, salesforce.ReasonServerError, false)
}
