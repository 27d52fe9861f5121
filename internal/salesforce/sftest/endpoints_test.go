package sftest

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2/jws"
)

// TestMain checks, after a full run, that some test got a successful answer from every endpoint
// of the table that hack/fidelity shares: a new endpoint needs a Go test here too.
func TestMain(m *testing.M) {
	var mu sync.Mutex
	ok := map[string]bool{}
	observeServed = func(ep string, status int) {
		mu.Lock()
		defer mu.Unlock()
		ok[ep] = ok[ep] || status < 400
	}
	code := m.Run()
	if f := flag.Lookup("test.run"); code == 0 && f != nil && f.Value.String() == "" {
		for _, ep := range Endpoints {
			if !ok[ep.Name] {
				fmt.Fprintf(os.Stderr, "sftest: no test got a successful answer from the %s endpoint\n", ep.Name)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func TestEndpointTable(t *testing.T) {
	seen := map[string]bool{}
	for _, ep := range Endpoints {
		if seen[ep.Name] {
			t.Errorf("%s: listed twice", ep.Name)
		}
		seen[ep.Name] = true
		if (ep.CLI == "") == (ep.NoCLI == "") {
			t.Errorf("%s: needs a CLI check or a reason why the CLI never calls it, not both", ep.Name)
		}
		if got := endpointOf(ep.Path); got != ep.Name {
			t.Errorf("%s: its path %s is counted as %q", ep.Name, ep.Path, got)
		}
	}
}

func TestRevokeAndComposite(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	tok := login(t, s, o)["access_token"].(string)
	c := doJSON(t, s, "POST", "/services/data/v65.0/composite", tok,
		`{"compositeRequest":[{"method":"GET","url":"/services/data/v65.0/limits","referenceId":"limits"}]}`)
	if c.status != 200 || !strings.Contains(c.body, `"referenceId":"limits"`) {
		t.Errorf("composite: %d %s", c.status, c.body)
	}
	if a := do(t, s, "POST", "/services/oauth2/revoke", "", url.Values{"token": {refreshToken(o)}}); a.status != 200 {
		t.Errorf("revoke: %d", a.status)
	}
	if a := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil); a.status != 401 {
		t.Errorf("after revoking the refresh token, its session: %d", a.status)
	}
}

func doJSON(t *testing.T, s *Server, method, path, token, body string) answer {
	t.Helper()
	return doRaw(t, s, method, path, token, "application/json", body)
}

func authorizeQuery(extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {"PlatformCLI"}, "redirect_uri": {DefaultCallbackURL},
		"state": {"st4te"}, "code_challenge": {pkceS256("the-verifier")}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return q.Encode()
}

// webLogin posts the login form and returns the redirect's query.
func webLogin(t *testing.T, s *Server, username, pw string, extra url.Values) (int, url.Values) {
	t.Helper()
	form, _ := url.ParseQuery(authorizeQuery(extra))
	form.Set("username", username)
	form.Set("pw", pw)
	a := do(t, s, "POST", "/services/oauth2/authorize", "", form)
	if a.status != 302 {
		return a.status, nil
	}
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), DefaultCallbackURL+"?") {
		t.Fatalf("redirected elsewhere than the callback")
	}
	return a.status, u.Query()
}

func TestAuthorizeWithPKCE(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Username: "dev@example.com"})

	page := do(t, s, "GET", "/services/oauth2/authorize?"+authorizeQuery(nil), "", nil)
	if page.status != 200 || !strings.Contains(page.body, `name="code_challenge"`) || !strings.Contains(page.body, `name="pw"`) {
		t.Errorf("login page: %d", page.status)
	}
	if a := do(t, s, "GET", "/services/oauth2/authorize?"+authorizeQuery(url.Values{"redirect_uri": {"http://localhost:9999/cb"}}), "", nil); a.status != 400 || !strings.Contains(a.body, "redirect_uri_mismatch") || a.header.Get("Location") != "" {
		t.Errorf("foreign redirect_uri: %d %s", a.status, a.body)
	}
	if a := do(t, s, "GET", "/services/oauth2/authorize?"+authorizeQuery(url.Values{"client_id": {"Nobody"}}), "", nil); a.status != 400 || !strings.Contains(a.body, "invalid_client_id") {
		t.Errorf("unknown client: %d", a.status)
	}
	if _, q := webLogin(t, s, "dev@example.com", o.Password(), url.Values{"code_challenge_method": {"plain"}}); q.Get("error") != "invalid_request" {
		t.Errorf("plain PKCE: %v", q)
	}
	if status, _ := webLogin(t, s, "dev@example.com", "wrong", nil); status != 200 {
		t.Errorf("wrong password: %d, want the login page again", status)
	}

	exchange := func(code, verifier, redirect string) answer {
		return do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"client_id": {"PlatformCLI"}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	}
	_, q := webLogin(t, s, "DEV@example.com", o.Password(), nil)
	if q.Get("state") != "st4te" || q.Get("code") == "" {
		t.Fatalf("login redirect lacks state or code")
	}
	if a := exchange(q.Get("code"), "another-verifier", DefaultCallbackURL); a.status != 400 || !strings.Contains(a.body, "invalid code verifier") {
		t.Errorf("wrong verifier: %d %s", a.status, a.body)
	}
	if a := exchange(q.Get("code"), "the-verifier", DefaultCallbackURL); a.status != 400 {
		t.Errorf("a code is spent by a failed exchange: %d", a.status)
	}
	_, q = webLogin(t, s, "dev@example.com", o.Password(), nil)
	if a := exchange(q.Get("code"), "the-verifier", "http://localhost:1718/OauthRedirect"); a.status != 400 || !strings.Contains(a.body, "redirect_uri_mismatch") {
		t.Errorf("other redirect_uri: %d %s", a.status, a.body)
	}
	_, q = webLogin(t, s, "dev@example.com", o.Password(), nil)
	a := exchange(q.Get("code"), "the-verifier", DefaultCallbackURL)
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || a.status != 200 || m["refresh_token"] != refreshToken(o) {
		t.Errorf("exchange: %d, want a refresh token that becomes current", a.status)
	}

	o.DenyWebLogin(true)
	if _, q := webLogin(t, s, "dev@example.com", o.Password(), nil); q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("state") != "st4te" {
		t.Errorf("denied: %v", q.Get("error"))
	}
}

func TestSingleAccessAndFrontdoor(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	tok := login(t, s, o)["access_token"].(string)
	a := do(t, s, "GET", "/services/oauth2/singleaccess?redirect_uri="+url.QueryEscape("/lightning/setup/SetupOneHome/home"), tok, nil)
	var m struct {
		FrontdoorURI string `json:"frontdoor_uri"`
	}
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || a.status != 200 || !strings.HasPrefix(m.FrontdoorURI, s.URL()+"/secur/frontdoor.jsp?otp=") {
		t.Fatalf("singleaccess: %d", a.status)
	}
	if a := do(t, s, "POST", "/services/oauth2/singleaccess", tok, nil); a.status != 200 {
		t.Errorf("singleaccess by POST: %d", a.status)
	}
	link := strings.TrimPrefix(m.FrontdoorURI, s.URL())
	first := do(t, s, "GET", link, "", nil)
	if first.status != 302 || first.header.Get("Location") != "/lightning/setup/SetupOneHome/home" || !strings.HasPrefix(first.header.Get("Set-Cookie"), "sid=") {
		t.Errorf("frontdoor: %d %s", first.status, first.header.Get("Location"))
	}
	if again := do(t, s, "GET", link, "", nil); again.status != 200 || !strings.Contains(again.body, "session has expired") {
		t.Errorf("a frontdoor link is single-use: %d", again.status)
	}
	home := func(cookie string) answer {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL()+"/", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
	}
	sid := strings.SplitN(first.header.Get("Set-Cookie"), ";", 2)[0]
	if h := home(sid); h.status != 200 || !strings.Contains(h.body, "Logged in as "+o.Username()) {
		t.Errorf("the home page with the frontdoor's session: %d", h.status)
	}
	if h := home(""); h.status != 200 || !strings.Contains(h.body, `id="login_form"`) {
		t.Errorf("the home page without a session is not the login page: %d", h.status)
	}
	o.ExpireAccessTokens()
	if h := home(sid); !strings.Contains(h.body, `id="login_form"`) {
		t.Errorf("the home page with an expired session is not the login page: %d", h.status)
	}
	if a := do(t, s, "GET", "/services/oauth2/singleaccess", tok, nil); a.status != 403 {
		t.Errorf("expired session: %d, want 403 as Salesforce (not 401)", a.status)
	}
}

func TestSandboxAuth(t *testing.T) {
	s := NewServer(t)
	prod := s.AddOrg(OrgSpec{Name: "Acme"})
	sb := s.AddOrg(OrgSpec{Name: "Acme UAT", Kind: Sandbox, Production: prod, SandboxName: "uat"})
	s.AddOrg(OrgSpec{Name: "Other UAT", Kind: Sandbox, SandboxName: "uat"}) // another production's
	tok := login(t, s, prod)["access_token"].(string)
	ask := func(name string) answer {
		return doJSON(t, s, "POST", "/services/data/v65.0/tooling/sandboxAuth", tok,
			fmt.Sprintf(`{"clientId":"PlatformCLI","sandboxName":%q,"callbackUrl":%q}`, name, DefaultCallbackURL))
	}

	procs := do(t, s, "GET", "/services/data/v65.0/tooling/query?q="+url.QueryEscape("SELECT Id, Status, SandboxName FROM SandboxProcess WHERE SandboxOrganization = '"+sb.OrgID()[:15]+"' ORDER BY CreatedDate DESC"), tok, nil)
	if procs.status != 200 || !strings.Contains(procs.body, `"totalSize":1`) || !strings.Contains(procs.body, `"SandboxName":"uat"`) {
		t.Errorf("SandboxProcess: %d %s", procs.status, procs.body)
	}
	if a := do(t, s, "GET", "/services/data/v65.0/query?q="+url.QueryEscape("SELECT Id FROM SandboxProcess"), tok, nil); a.status != 400 || !strings.Contains(a.body, "INVALID_TYPE") {
		t.Errorf("SandboxProcess is a Tooling API object: %d", a.status)
	}

	sb.SetActivating(true)
	if a := ask("uat"); a.status != 400 || !strings.Contains(a.body, `"errorCode":"INVALID_STATUS"`) {
		t.Errorf("activating: %d %s", a.status, a.body)
	}
	sb.SetActivating(false)
	if a := ask("qa"); a.status != 404 {
		t.Errorf("unknown sandbox: %d", a.status)
	}
	if a := doJSON(t, s, "POST", "/services/data/v65.0/tooling/sandboxAuth", tok, `{"clientId":"Other","sandboxName":"uat","callbackUrl":"x"}`); a.status != 400 {
		t.Errorf("unknown client: %d", a.status)
	}
	a := ask("UAT")
	var m map[string]string
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || a.status != 200 {
		t.Fatalf("sandboxAuth: %d", a.status)
	}
	if m["authUserName"] != sb.Username() || m["sandboxOrgId"] != sb.OrgID() || m["loginUrl"] != s.URL() || m["instanceUrl"] != s.URL() || m["authCode"] == "" {
		t.Errorf("sandboxAuth answer: user %s org %s", m["authUserName"], m["sandboxOrgId"])
	}
	if a.header.Get("Sforce-Limit-Info") == "" {
		t.Error("sandboxAuth is a REST call: Sforce-Limit-Info")
	}
	ex := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"authorization_code"}, "code": {m["authCode"]},
		"client_id": {"PlatformCLI"}, "redirect_uri": {DefaultCallbackURL}})
	if ex.status != 200 || !strings.Contains(ex.body, `"refresh_token":"`+refreshToken(sb)+`"`) {
		t.Errorf("exchange at loginUrl: %d", ex.status)
	}
}

func TestQueryClausesAndColumns(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Name: "Acme", Kind: DeveloperEdition, DevHub: true})
	tok := login(t, s, o)["access_token"].(string)
	query := func(q string, extra string) answer {
		return do(t, s, "GET", "/services/data/v65.0/query?q="+url.QueryEscape(q)+extra, tok, nil)
	}
	for q, total := range map[string]int{
		"SELECT Id, Name FROM Organization WHERE IsSandbox = false":                                            1,
		"SELECT Id FROM Organization WHERE Name = 'acme' AND (IsSandbox = true OR TrialExpirationDate = null)": 1,
		"SELECT Id FROM Organization WHERE Name LIKE 'Ac%' ORDER BY Name DESC NULLS LAST, Id LIMIT 1":          1,
		"SELECT Id FROM Organization WHERE NOT Name IN ('Acme', 'Other')":                                      0,
		"SELECT Id FROM Organization WHERE Name NOT IN ('Other') LIMIT 1 OFFSET 1":                             0,
		"select id from organization limit 0":                                                                  0,
		"SELECT Id FROM ScratchOrgInfo WHERE ScratchOrg = '00D000000000001'":                                   0,
	} {
		a := query(q, "")
		if a.status != 200 || !strings.Contains(a.body, fmt.Sprintf(`"totalSize":%d,`, total)) {
			t.Errorf("%s: %d %s", q, a.status, a.body)
		}
	}
	for q, code := range map[string]string{
		"SELECT Id FROM Organization WHERE":                  "MALFORMED_QUERY",
		"SELECT Id FROM Organization WHERE Name = 'x":        "MALFORMED_QUERY",
		"SELECT Id FROM Organization ORDER Name":             "MALFORMED_QUERY",
		"SELECT Id FROM Organization LIMIT many":             "MALFORMED_QUERY",
		"SELECT Id FROM Organization WHERE Nope = 1":         "INVALID_FIELD",
		"SELECT Id FROM Organization ORDER BY Nope":          "INVALID_FIELD",
		"SELECT Id FROM Account WHERE Name = 'x'":            "INVALID_TYPE",
		"SELECT Id FROM Organization GROUP BY Name":          "MALFORMED_QUERY",
		"SELECT Id FROM Organization WHERE Name = 'a' extra": "MALFORMED_QUERY",
	} {
		if a := query(q, ""); a.status != 400 || !strings.Contains(a.body, `"errorCode":"`+code+`"`) {
			t.Errorf("%s: %d %s, want %s", q, a.status, a.body, code)
		}
	}

	cols := query("SELECT Id, Name, IsSandbox FROM Organization", "&columns=true")
	var m struct {
		ColumnMetadata []struct {
			ColumnName  string `json:"columnName"`
			ApexType    string `json:"apexType"`
			JoinColumns []any  `json:"joinColumns"`
		} `json:"columnMetadata"`
		EntityName string `json:"entityName"`
		IDSelected bool   `json:"idSelected"`
	}
	if err := json.Unmarshal([]byte(cols.body), &m); err != nil || cols.status != 200 || len(m.ColumnMetadata) != 3 {
		t.Fatalf("columns=true: %d %s", cols.status, cols.body)
	}
	if m.EntityName != "Organization" || !m.IDSelected || m.ColumnMetadata[2].ColumnName != "IsSandbox" || m.ColumnMetadata[2].ApexType != "Boolean" || m.ColumnMetadata[1].JoinColumns == nil {
		t.Errorf("columns=true: %s", cols.body)
	}
}

func TestJWTAsTheCLISendsIt(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	consumerKey, username, keyPEM := o.JWT()
	block, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	grant := func(aud string, exp int64) answer {
		assertion, err := jws.Encode(&jws.Header{Algorithm: "RS256", Typ: "JWT"}, &jws.ClaimSet{Iss: consumerKey, Sub: username, Aud: aud, Exp: exp}, k.(*rsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		return do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {jwtGrant}, "assertion": {assertion}})
	}
	// The CLI: an audience with a trailing slash, exp in milliseconds and only 300 ms ahead.
	for _, aud := range []string{s.URL() + "/", "https://login.salesforce.com/", "https://login.salesforce.com"} {
		if a := grant(aud, time.Now().UnixMilli()+300); a.status != 200 || strings.Contains(a.body, "refresh_token") {
			t.Errorf("aud %s, exp in ms: %d %s", aud, a.status, a.body)
		}
	}
	if a := grant(s.URL(), time.Now().Add(2*time.Minute).Unix()); a.status != 200 {
		t.Errorf("exp in seconds: %d %s", a.status, a.body)
	}
	if a := grant(s.URL()+"/", time.Now().Add(-10*time.Minute).UnixMilli()); a.status != 400 {
		t.Errorf("expired: %d", a.status)
	}
	if a := grant("https://test.salesforce.com/", time.Now().UnixMilli()); a.status != 400 || !strings.Contains(a.body, "audience") {
		t.Errorf("a production org's JWT for the sandbox audience: %d %s", a.status, a.body)
	}
}

// A user who never allowed the app sees "Allow Access?" after logging in, once: Allow issues the
// code (and is remembered), Deny redirects with access_denied, and a ticket is good for one answer.
func TestApprovalPageTheFirstTime(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Username: "new@example.com", ApprovalRequired: true})
	form, _ := url.ParseQuery(authorizeQuery(nil))
	form.Set("username", "new@example.com")
	form.Set("pw", o.Password())
	page := do(t, s, "POST", "/services/oauth2/authorize", "", form)
	if page.status != 200 || !strings.Contains(page.body, "Allow Access?") || !strings.Contains(page.body, `id="oaapprove"`) {
		t.Fatalf("after the login form: %d, want the approval page", page.status)
	}
	ticket := regexp.MustCompile(`name="approval_ticket" value="([^"]+)"`).FindStringSubmatch(page.body)
	if ticket == nil {
		t.Fatal("no approval ticket on the page")
	}
	answer := func(button string) answer {
		f, _ := url.ParseQuery(authorizeQuery(nil))
		f.Set("approval_ticket", ticket[1])
		f.Set(button, "x")
		return do(t, s, "POST", "/services/oauth2/authorize", "", f)
	}
	a := answer("deny")
	if u, _ := url.Parse(a.header.Get("Location")); a.status != 302 || u.Query().Get("error") != "access_denied" {
		t.Fatalf("Deny: %d", a.status)
	}
	if a := answer("approve"); a.status != 200 || !strings.Contains(a.body, "expired") {
		t.Fatalf("a ticket answered twice: %d, want the login page", a.status)
	}
	page = do(t, s, "POST", "/services/oauth2/authorize", "", form)
	ticket = regexp.MustCompile(`name="approval_ticket" value="([^"]+)"`).FindStringSubmatch(page.body)
	a = answer("approve")
	if u, _ := url.Parse(a.header.Get("Location")); a.status != 302 || u.Query().Get("code") == "" || u.Query().Get("state") != "st4te" {
		t.Fatalf("Allow: %d", a.status)
	}
	if _, q := webLogin(t, s, "new@example.com", o.Password(), nil); q.Get("code") == "" {
		t.Fatal("the second login asked again")
	}
}

// A path with doubled slashes is the path itself, as Salesforce answers it (the CLI asks for
// //services/data/... after sf org login access-token).
func TestDoubledSlashes(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	tok := login(t, s, o)["access_token"].(string)
	before := s.Calls("query")
	a := do(t, s, "GET", "//services/data/v65.0/query?q="+url.QueryEscape("SELECT Id FROM Organization"), tok, nil)
	if a.status != 200 || !strings.Contains(a.body, `"totalSize":1`) || s.Calls("query") != before+1 {
		t.Fatalf("//services/data/.../query: HTTP %d", a.status)
	}
	if got := collapseSlashes("//a///b/"); got != "/a/b/" {
		t.Errorf("collapseSlashes: %q", got)
	}
}
