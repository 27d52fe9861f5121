package sftest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// SetActivating marks a sandbox whose copy is complete (its SandboxProcess says Completed) but
// whose user cannot be authorized yet: its production org's sandboxAuth answers INVALID_STATUS,
// as Salesforce does in that window.
func (o *Org) SetActivating(on bool) {
	o.locked(func() {
		o.activating = on
	})
}

// SandboxName is a sandbox's name ("" for other orgs).
func (o *Org) SandboxName() string { return o.spec.SandboxName }

func sandboxName(orgName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(orgName) {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) && b.Len() < 10 {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "sandbox"
	}
	return b.String()
}

// sandboxesLocked are the live sandboxes copied from prod.
func (s *Server) sandboxesLocked(prod *Org) []*Org {
	var out []*Org
	for _, o := range s.orgs {
		if o.spec.Production == prod && !o.deleted {
			out = append(out, o)
		}
	}
	return out
}

// sandboxProcessesLocked are prod's SandboxProcess records, one per sandbox.
func (s *Server) sandboxProcessesLocked(prod *Org) []obj {
	var out []obj
	for _, sb := range s.sandboxesLocked(prod) {
		out = append(out, obj{
			{"Id", sb.sandboxProcessID},
			{"Status", "Completed"},
			{"SandboxName", sb.spec.SandboxName},
			{"SandboxInfoId", sb.sandboxInfoID},
			{"LicenseType", "DEVELOPER"},
			{"CreatedDate", "2025-01-01T00:00:00.000+0000"},
			{"CopyProgress", 100},
			{"SandboxOrganization", sb.orgID[:15]},
			{"SourceId", nil},
			{"Description", nil},
			{"EndDate", "2025-01-01T01:00:00.000+0000"},
			{"Features", nil},
		})
	}
	return out
}

// sandboxAuthLocked is the Tooling API's sandboxAuth: with the production org's session, it
// authorizes the sandbox's user for the production org's connected app, answering an
// authorization code to exchange at loginUrl with redirect_uri = callbackUrl.
func (s *Server) sandboxAuthLocked(prod *Org, method string, body []byte) reply {
	if method != http.MethodPost {
		return methodNotAllowed(method, "POST")
	}
	var req struct {
		ClientID    string `json:"clientId"`
		SandboxName string `json:"sandboxName"`
		CallbackURL string `json:"callbackUrl"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return restErrorReply(http.StatusBadRequest, "JSON_PARSER_ERROR", "The request body is not valid JSON.")
	}
	if req.ClientID == "" || req.SandboxName == "" || req.CallbackURL == "" {
		return restErrorReply(http.StatusBadRequest, "INVALID_INPUT", "clientId, sandboxName and callbackUrl are required.")
	}
	if req.ClientID != prod.spec.ClientID && (prod.consumerKey == "" || req.ClientID != prod.consumerKey) {
		return restErrorReply(http.StatusBadRequest, "INVALID_INPUT", "The connected app "+req.ClientID+" does not exist in this org.")
	}
	var sb *Org
	for _, o := range s.sandboxesLocked(prod) {
		if strings.EqualFold(o.spec.SandboxName, req.SandboxName) {
			sb = o
		}
	}
	switch {
	case sb == nil:
		return restErrorReply(http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("No sandbox named %s was found.", req.SandboxName))
	case sb.activating:
		return restErrorReply(http.StatusBadRequest, "INVALID_STATUS", fmt.Sprintf("The sandbox %s is still being activated. Try again later.", sb.spec.SandboxName))
	}
	code := s.newCodeLocked(&authCode{org: sb, clientID: req.ClientID, redirectURI: req.CallbackURL})
	return jsonReply(http.StatusOK, obj{
		{"authUserName", sb.spec.Username},
		{"authCode", code},
		{"instanceUrl", s.instanceURLLocked(sb)},
		{"loginUrl", s.URL()},
		{"sandboxOrgId", sb.orgID},
	})
}
