package sftest

import "strings"

// Endpoint is one resource the fake serves.
type Endpoint struct {
	// Name is how Server.Calls counts it.
	Name string
	// Method and Path are one request it answers, for the table's own test; a real path has
	// an API version (v65.0) and ids where Path shows them.
	Method, Path string
	// CLI names the check of hack/fidelity in which the real Salesforce CLI calls it.
	CLI string
	// NoCLI says why the Salesforce CLI never calls it, when CLI is empty.
	NoCLI string
}

// The names of the hack/fidelity checks that Endpoints refers to.
const (
	CheckLoginSFDXURL  = "sf org login sfdx-url"
	CheckDisplay       = "sf org display"
	CheckListLimits    = "sf org list limits"
	CheckDataQuery     = "sf data query"
	CheckOpenURLOnly   = "sf org open --url-only"
	CheckLoginWeb      = "sf org login web"
	CheckResumeSandbox = "sf org resume sandbox"
)

// Endpoints is every endpoint of the fake: the one table that its Go tests (every entry must be
// answered 2xx by some test of this package) and the run of the real Salesforce CLI (every entry
// with a CLI check must be called during that check) share. A new endpoint gets a CLI check or a
// written reason why the CLI never calls it.
var Endpoints = []Endpoint{
	{Name: "token", Method: "POST", Path: "/services/oauth2/token", CLI: CheckLoginSFDXURL},
	{Name: "authorize", Method: "GET", Path: "/services/oauth2/authorize", CLI: CheckLoginWeb},
	{Name: "revoke", Method: "POST", Path: "/services/oauth2/revoke",
		NoCLI: "sf org logout only deletes the local auth file; the CLI never revokes a token"},
	{Name: "userinfo", Method: "GET", Path: "/services/oauth2/userinfo", CLI: CheckLoginSFDXURL},
	{Name: "singleaccess", Method: "GET", Path: "/services/oauth2/singleaccess", CLI: CheckOpenURLOnly},
	{Name: "frontdoor", Method: "GET", Path: "/secur/frontdoor.jsp",
		NoCLI: "a browser follows the frontdoor link; the CLI only prints it"},
	{Name: "home", Method: "GET", Path: "/",
		NoCLI: "a browser lands there after a frontdoor link; the CLI only prints the link"},
	{Name: "identity", Method: "GET", Path: "/id/00D/005",
		NoCLI: "the CLI reads userinfo; only the operator's client reads the identity URL"},
	{Name: "versions", Method: "GET", Path: "/services/data", CLI: CheckLoginSFDXURL},
	{Name: "resources", Method: "GET", Path: "/services/data/v65.0", CLI: CheckDisplay},
	{Name: "query", Method: "GET", Path: "/services/data/v65.0/query", CLI: CheckDataQuery},
	{Name: "tooling-query", Method: "GET", Path: "/services/data/v65.0/tooling/query", CLI: CheckResumeSandbox},
	{Name: "sandboxAuth", Method: "POST", Path: "/services/data/v65.0/tooling/sandboxAuth", CLI: CheckResumeSandbox},
	{Name: "composite", Method: "POST", Path: "/services/data/v65.0/composite",
		NoCLI: "the CLI sends one request per call; only the operator's client batches"},
	{Name: "limits", Method: "GET", Path: "/services/data/v65.0/limits", CLI: CheckListLimits},
	{Name: "user", Method: "GET", Path: "/services/data/v65.0/sobjects/User/005", CLI: CheckLoginSFDXURL},
}

// endpointOf names the endpoint of a path, as counted by Calls: a Name of Endpoints, or "other".
func endpointOf(p string) string {
	p = strings.TrimSuffix(p, "/")
	switch {
	case p == "":
		return "home"
	case p == "/services/oauth2/token":
		return "token"
	case p == "/services/oauth2/authorize":
		return "authorize"
	case p == "/services/oauth2/revoke":
		return "revoke"
	case p == "/services/oauth2/userinfo":
		return "userinfo"
	case p == "/services/oauth2/singleaccess":
		return "singleaccess"
	case p == "/secur/frontdoor.jsp":
		return "frontdoor"
	case strings.HasPrefix(p, "/id/"):
		return "identity"
	case p == "/services/data":
		return "versions"
	case !strings.HasPrefix(p, "/services/data/v"):
		return "other"
	}
	parts := strings.Split(strings.TrimPrefix(p, "/services/data/"), "/")
	switch {
	case len(parts) == 1:
		return "resources"
	case len(parts) == 2 && parts[1] == "query":
		return "query"
	case len(parts) == 3 && parts[1] == "tooling" && parts[2] == "query":
		return "tooling-query"
	case len(parts) == 3 && parts[1] == "tooling" && parts[2] == "sandboxAuth":
		return "sandboxAuth"
	case len(parts) == 2 && parts[1] == "composite":
		return "composite"
	case len(parts) == 2 && parts[1] == "limits":
		return "limits"
	case len(parts) == 4 && parts[1] == "sobjects" && parts[2] == "User":
		return "user"
	}
	return "other"
}
