package main

import (
	"testing"

	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// TestEveryEndpointHasACheck holds the table's promise without running the CLI: every endpoint
// that names a CLI check names one that exists here.
func TestEveryEndpointHasACheck(t *testing.T) {
	names := map[string]bool{}
	for _, c := range checks {
		if names[c.name] {
			t.Errorf("check %q is listed twice", c.name)
		}
		names[c.name] = true
	}
	for _, ep := range sftest.Endpoints {
		if ep.CLI != "" && !names[ep.CLI] {
			t.Errorf("endpoint %s names the CLI check %q, which does not exist", ep.Name, ep.CLI)
		}
	}
}

func TestRedact(t *testing.T) {
	h := &harness{secrets: []string{"s3cret"}}
	in := `force://PlatformCLI::tok@127.0.0.1:1 https://x/secur/frontdoor.jsp?otp=abc&cshc=d "accessToken": "00Dx!y" s3cret`
	if got := h.redact(in); got != `[REDACTED] https://x/secur/[REDACTED] [REDACTED] [REDACTED]` {
		t.Errorf("redact: %s", got)
	}
}
