package salesforce_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// logInAsBrowser plays the browser on the fake's login page and returns where Salesforce
// redirected it (the callback URL with ?code=&state=), without following the redirect.
func logInAsBrowser(t *testing.T, s *sftest.Server, authorize, username, password string) *url.URL {
	t.Helper()
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	form := url.Values{"username": {username}, "pw": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	resp, err = hc.PostForm(s.URL()+"/services/oauth2/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("the login form answered %d, want a redirect", resp.StatusCode)
	}
	return loc
}

func TestWebLoginWithPKCE(t *testing.T) {
	s := sftest.NewServer(t)
	org := s.AddOrg(sftest.OrgSpec{Name: "Acme"})
	c := newClient(t, s)
	w, err := c.NewWebLogin(s.URL(), "", sftest.DefaultCallbackURL)
	if err != nil {
		t.Fatal(err)
	}
	au, _ := url.Parse(w.AuthCodeURL())
	q := au.Query()
	if q.Get("client_id") != "PlatformCLI" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("state") != w.State || q.Get("redirect_uri") != sftest.DefaultCallbackURL || strings.Contains(au.String(), w.Verifier) {
		t.Fatalf("authorize URL has the wrong shape: %v", q)
	}
	back := logInAsBrowser(t, s, w.AuthCodeURL(), org.Username(), org.Password())
	if back.Query().Get("state") != w.State {
		t.Fatal("state not echoed")
	}
	code := back.Query().Get("code")
	a, err := c.ExchangeWebLoginCode(context.Background(), w, code)
	if err != nil {
		t.Fatal(err)
	}
	if a.Host != s.Host() || a.ClientID != "PlatformCLI" || a.ClientSecret != "" {
		t.Fatalf("got %v", a)
	}
	res := check(t, c, a)
	if res.Facts.OrgID != org.OrgID() {
		t.Fatal("the new credential reaches another org")
	}
	// A code is single use, and errors never carry it.
	_, err = c.ExchangeWebLoginCode(context.Background(), w, code)
	wantError(t, err, salesforce.ReasonCredentialRejected, false, code, w.Verifier)
}

func TestWebLoginWrongVerifierAndHosts(t *testing.T) {
	s := sftest.NewServer(t)
	org := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s)
	if _, err := c.NewWebLogin("https://evil.example.com", "", sftest.DefaultCallbackURL); salesforce.ReasonOf(err) != salesforce.ReasonHostNotAllowed {
		t.Fatalf("want HostNotAllowed, got %v", err)
	}
	if _, err := c.NewWebLogin("http://"+s.Host(), "", sftest.DefaultCallbackURL); salesforce.ReasonOf(err) != salesforce.ReasonHostNotAllowed {
		t.Fatalf("want HostNotAllowed for http, got %v", err)
	}
	w, err := c.NewWebLogin(s.URL(), "", sftest.DefaultCallbackURL)
	if err != nil {
		t.Fatal(err)
	}
	code := logInAsBrowser(t, s, w.AuthCodeURL(), org.Username(), org.Password()).Query().Get("code")
	w.Verifier = "another-verifier-another-verifier-another-verifier"
	_, err = c.ExchangeWebLoginCode(context.Background(), w, code)
	wantError(t, err, salesforce.ReasonCredentialRejected, false, code)
}

func TestFrontdoorURLWorksOnce(t *testing.T) {
	s := sftest.NewServer(t)
	org := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s)
	link, err := c.FrontdoorURL(context.Background(), authURL(t, org), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, s.URL()+"/secur/frontdoor.jsp?") {
		t.Fatal("the link is not a frontdoor link of the org")
	}
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for i, want := range []int{http.StatusFound, http.StatusOK} {
		resp, err := hc.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("use %d of the link: HTTP %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	// An expired session is replaced once.
	org.ExpireAccessTokens()
	if _, err := c.FrontdoorURL(context.Background(), authURL(t, org), nil); err != nil {
		t.Fatal(err)
	}
	org.RevokeRefreshTokens()
	org.ExpireAccessTokens()
	_, err = c.FrontdoorURL(context.Background(), authURL(t, org), nil)
	wantError(t, err, salesforce.ReasonCredentialRejected, false, s.IssuedSecrets()...)
}

// accessToken asks the fake for an access token of org with its refresh token, as the chain's
// owner does when it hands one out.
func accessToken(t *testing.T, s *sftest.Server, org *sftest.Org) string {
	t.Helper()
	a := authURL(t, org)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
	resp, err := hc.PostForm(s.URL()+"/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {a.ClientID}, "refresh_token": {a.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("no access token (HTTP %d)", resp.StatusCode)
	}
	return ans.AccessToken
}

func TestFrontdoorWithAccess(t *testing.T) {
	s := sftest.NewServer(t)
	org := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s)
	tok := accessToken(t, s, org)
	link, err := c.FrontdoorWithAccess(context.Background(), s.URL(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, s.URL()+"/secur/frontdoor.jsp?") {
		t.Fatal("the link is not a frontdoor link of the org")
	}
	// A host outside the allow-list never receives the token.
	before := s.Calls("singleaccess")
	_, err = c.FrontdoorWithAccess(context.Background(), "https://elsewhere.example.com", tok)
	wantError(t, err, salesforce.ReasonHostNotAllowed, false, tok)
	_, err = c.FrontdoorWithAccess(context.Background(), "http://"+s.Host(), tok)
	wantError(t, err, salesforce.ReasonServerError, false, tok)
	if s.Calls("singleaccess") != before {
		t.Fatal("a refused instance URL was called")
	}
	// A session that ended is refused, not replaced: no refresh token is at hand.
	org.ExpireAccessTokens()
	_, err = c.FrontdoorWithAccess(context.Background(), s.URL(), tok)
	wantError(t, err, salesforce.ReasonCredentialRejected, false, s.IssuedSecrets()...)
}
