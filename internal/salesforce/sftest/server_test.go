package sftest

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, s *Server, method, path, token string, form url.Values) answer {
	t.Helper()
	if form == nil {
		return doRaw(t, s, method, path, token, "", "")
	}
	return doRaw(t, s, method, path, token, "application/x-www-form-urlencoded", form.Encode())
}

func doRaw(t *testing.T, s *Server, method, path, token, ctype, body string) answer {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var r io.Reader
	if ctype != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func refreshToken(o *Org) string {
	u := strings.TrimPrefix(o.AuthURL(), "force://")
	return strings.Split(u[:strings.IndexByte(u, '@')], ":")[2]
}

func login(t *testing.T, s *Server, o *Org) map[string]any {
	t.Helper()
	a := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken(o)}, "client_id": {"PlatformCLI"}})
	if a.status != 200 {
		t.Fatalf("token: %d", a.status)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var tokenChars = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestTokenEndpoint(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Name: "Acme"})
	if !tokenChars.MatchString(refreshToken(o)) {
		t.Fatal("refresh token is not base64url")
	}
	m := login(t, s, o)
	for _, k := range []string{"access_token", "instance_url", "id", "issued_at", "signature", "token_type", "scope"} {
		if _, ok := m[k]; !ok {
			t.Errorf("token answer lacks %s", k)
		}
	}
	if _, ok := m["expires_in"]; ok {
		t.Error("Salesforce sends no expires_in")
	}
	if _, ok := m["refresh_token"]; ok {
		t.Error("no refresh_token without rotation")
	}
	if _, ok := m["issued_at"].(string); !ok {
		t.Error("issued_at must be a string")
	}
	if m["id"] != s.URL()+"/id/"+o.OrgID()+"/"+o.UserID() || m["instance_url"] != s.URL() {
		t.Errorf("id %v instance_url %v", m["id"], m["instance_url"])
	}

	bad := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}, "client_id": {"PlatformCLI"}})
	if bad.status != 400 || bad.body != `{"error":"invalid_grant","error_description":"expired access/refresh token"}` {
		t.Errorf("unknown refresh token: %d %s", bad.status, bad.body)
	}
	wrongClient := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken(o)}, "client_id": {"Other"}})
	if !strings.Contains(wrongClient.body, `"invalid_client_id"`) {
		t.Errorf("wrong client: %s", wrongClient.body)
	}

	o.SetRotateRefreshTokens(true)
	before := refreshToken(o)
	m = login(t, s, o)
	if m["refresh_token"] != refreshToken(o) || before == refreshToken(o) {
		t.Error("rotation must return the new token and make it current")
	}

	code := o.AuthorizationCode()
	ac := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"PlatformCLI"},
		"redirect_uri": {"http://localhost:1717/OauthRedirect"}, "code_verifier": {"v"}})
	if ac.status != 200 || !strings.Contains(ac.body, `"refresh_token"`) {
		t.Errorf("authorization_code: %d", ac.status)
	}
	again := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"PlatformCLI"}})
	if again.status != 400 {
		t.Error("a code must be single-use")
	}
	if got := len(s.IssuedSecrets()); got != 7 { // 3 refresh tokens (initial, rotated, from the code), 2 access tokens (the chain's two refreshes share one session), 1 code, 1 password
		t.Errorf("IssuedSecrets: %d", got)
	}
	if s.CallsFor(o) < 4 || s.Calls("token") != 6 {
		t.Errorf("counters: org %d token %d", s.CallsFor(o), s.Calls("token"))
	}
}

func TestRESTAnswers(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Kind: DeveloperEdition, DailyAPIMax: 100})
	tok := login(t, s, o)["access_token"].(string)

	versions := do(t, s, "GET", "/services/data", "", nil)
	if versions.status != 200 || !strings.Contains(versions.body, `{"label":"Winter '26","url":"/services/data/v65.0","version":"65.0"}`) {
		t.Errorf("versions: %s", versions.body)
	}
	res := do(t, s, "GET", "/services/data/v65.0", tok, nil)
	if res.status != 200 || !strings.Contains(res.body, `"limits":"/services/data/v65.0/limits"`) {
		t.Errorf("resources: %d", res.status)
	}
	if res.header.Get("Sforce-Limit-Info") != "api-usage=1/100" {
		t.Errorf("Sforce-Limit-Info %q", res.header.Get("Sforce-Limit-Info"))
	}
	q := do(t, s, "GET", "/services/data/v65.0/query?q="+url.QueryEscape("SELECT Id FROM ScratchOrgInfo limit 1"), tok, nil)
	if q.status != 400 || q.body != `[{"message":"sObject type 'ScratchOrgInfo' is not supported.","errorCode":"INVALID_TYPE"}]` {
		t.Errorf("not a DevHub: %d %s", q.status, q.body)
	}
	org := do(t, s, "GET", "/services/data/v65.0/query/?q="+url.QueryEscape("SELECT Name, IsSandbox, TrialExpirationDate FROM Organization"), tok, nil)
	if org.status != 200 || !strings.Contains(org.body, `"totalSize":1,"done":true`) || !strings.Contains(org.body, `"IsSandbox":false,"TrialExpirationDate":null`) {
		t.Errorf("organization: %s", org.body)
	}
	limits := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil)
	if !strings.Contains(limits.body, `"DailyApiRequests":{"Max":100,"Remaining":96}`) {
		t.Errorf("limits: %s", limits.body)
	}
	user := do(t, s, "GET", "/services/data/v51.0/sobjects/User/"+o.UserID()+"?fields=Username", tok, nil)
	if user.status != 200 || !strings.Contains(user.body, `"Username":"`+o.Username()+`"`) {
		t.Errorf("user: %s", user.body)
	}
	info := do(t, s, "GET", "/services/oauth2/userinfo", tok, nil)
	if !strings.Contains(info.body, `"preferred_username":"`+o.Username()+`"`) || info.header.Get("Sforce-Limit-Info") != "" {
		t.Errorf("userinfo: %s", info.body)
	}
	id := do(t, s, "GET", "/id/"+o.OrgID()+"/"+o.UserID(), tok, nil)
	if !strings.Contains(id.body, `"organization_id":"`+o.OrgID()+`"`) {
		t.Errorf("identity: %s", id.body)
	}
	if used, _ := o.APIUsage(); used != 5 {
		t.Errorf("API usage %d, want 5 (userinfo and identity are not REST calls)", used)
	}

	o.ExpireAccessTokens()
	expired := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil)
	if expired.status != 401 || expired.body != `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]` {
		t.Errorf("expired: %d %s", expired.status, expired.body)
	}
	o.Delete()
	gone := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil)
	if gone.status != 404 || !strings.Contains(gone.header.Get("Content-Type"), "text/html") || !strings.Contains(gone.body, "Data Not Available") {
		t.Errorf("deleted: %d %s", gone.status, gone.body)
	}
}

func TestServerFailures(t *testing.T) {
	s := NewServer(t)
	s.FailNext(1, Fail5xx)
	if a := do(t, s, "GET", "/services/data", "", nil); a.status != 500 || !strings.Contains(a.body, "UNKNOWN_EXCEPTION") {
		t.Errorf("Fail5xx: %d", a.status)
	}
	s.FailNext(1, FailHTML)
	if a := do(t, s, "GET", "/services/data", "", nil); a.status != 503 || !strings.Contains(a.header.Get("Content-Type"), "html") {
		t.Errorf("FailHTML: %d", a.status)
	}
	s.RedirectNext(1, "https://elsewhere.example/")
	if a := do(t, s, "GET", "/services/data", "", nil); a.status != 302 || a.header.Get("Location") != "https://elsewhere.example/" {
		t.Errorf("redirect: %d", a.status)
	}
	s.SetSlowDelay(50 * time.Millisecond)
	s.FailNext(1, FailSlow)
	if a := do(t, s, "GET", "/services/data", "", nil); a.status != 200 {
		t.Errorf("FailSlow: %d", a.status)
	}
	if s.Calls("versions") != 4 || s.TotalCalls() != 4 {
		t.Errorf("calls %d", s.TotalCalls())
	}
}

func TestFailAlwaysIsPerOrg(t *testing.T) {
	s := NewServer(t)
	flaky, fine := s.AddOrg(OrgSpec{}), s.AddOrg(OrgSpec{})
	flakyTok, fineTok := login(t, s, flaky)["access_token"].(string), login(t, s, fine)["access_token"].(string)
	flaky.FailAlways(Fail5xx)
	for range 2 {
		if a := do(t, s, "GET", "/services/data/v65.0/limits", flakyTok, nil); a.status != 500 {
			t.Errorf("flaky org: %d", a.status)
		}
		if a := do(t, s, "GET", "/services/data/v65.0/limits", fineTok, nil); a.status != 200 {
			t.Errorf("other org: %d", a.status)
		}
	}
	flaky.FailAlways(0)
	if a := do(t, s, "GET", "/services/data/v65.0/limits", flakyTok, nil); a.status != 200 {
		t.Errorf("after FailAlways(0): %d", a.status)
	}
}

func TestNewID(t *testing.T) {
	id := newID("00D")
	if len(id) != 18 || !strings.HasPrefix(id, "00D") {
		t.Fatalf("id %q", id)
	}
	// Salesforce's documented example: 001A0000006Vm9r is 001A0000006Vm9rIAC.
	if got := idSuffix("001A0000006Vm9r"); got != "IAC" {
		t.Fatalf("suffix %q", got)
	}
}
