package sftest

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// DefaultCallbackURL is the Salesforce CLI's redirect URI, the callback of its connected app.
const DefaultCallbackURL = "http://localhost:1717/OauthRedirect"

// authCode is an unused authorization code. Empty fields are not checked at the exchange.
type authCode struct {
	org         *Org
	clientID    string
	redirectURI string
	challenge   string // PKCE S256 code_challenge
}

// Password is the password of the org's user on the fake's web login form (the page that
// /services/oauth2/authorize shows). It is a secret like the others: never print it.
func (o *Org) Password() string {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.password
}

// DenyWebLogin makes the user refuse the app on the web login: authorize redirects with
// error=access_denied instead of a code.
func (o *Org) DenyWebLogin(on bool) {
	o.locked(func() {
		o.webLoginDenied = on
	})
}

// FailEndpoint makes every request to the endpoint named ep (a Name of Endpoints) fail in mode,
// Fail5xx or FailHTML, until FailEndpoint(ep, 0).
func (s *Server) FailEndpoint(ep string, mode FailMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mode == 0 {
		delete(s.broken, ep)
	} else {
		s.broken[ep] = mode
	}
}

// brokenReplyLocked is FailEndpoint's answer, if ep is broken.
func (s *Server) brokenReplyLocked(ep string) (reply, bool) {
	switch s.broken[ep] {
	case Fail5xx:
		return restErrorReply(http.StatusInternalServerError, "UNKNOWN_EXCEPTION", "An unexpected error occurred."), true
	case FailHTML:
		return reply{status: http.StatusServiceUnavailable, ctype: "text/html;charset=UTF-8", body: []byte(maintenancePage)}, true
	}
	return reply{}, false
}

func htmlReply(status int, body string) reply {
	rp := reply{status: status, ctype: "text/html;charset=UTF-8", body: []byte(body)}
	rp.set("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")
	return rp
}

func redirectReply(location string) reply {
	rp := htmlReply(http.StatusFound, `<html><body>Redirecting</body></html>`)
	rp.set("Location", location)
	return rp
}

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html><head><title>Login | Salesforce</title></head><body>
<h1>Log in to the fake Salesforce</h1>{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
<form id="login_form" method="POST" action="/services/oauth2/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<label>Username <input type="email" id="username" name="username"></label>
<label>Password <input type="password" id="password" name="pw"></label>
<input type="submit" id="Login" name="Login" value="Log In">
</form></body></html>
`))

// authorizeParams are the parameters of the authorize request that the login form carries on.
var authorizeParams = []string{"response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge", "code_challenge_method", "prompt", "login_hint", "nonce"}

// authorizeLocked is the web-server flow's first step: GET shows the login page, the form's
// POST (username and pw) redirects to redirect_uri with a code bound to the client, the
// redirect URI and the PKCE challenge, or with an error. An unknown client or a redirect URI that
// is not the app's callback gets an error page, never a redirect.
func (s *Server) authorizeLocked(r *http.Request, body []byte) reply {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return htmlReply(http.StatusBadRequest, "<html><body>Bad request</body></html>")
		}
		q = form
	} else if r.Method != http.MethodGet {
		return htmlReply(http.StatusMethodNotAllowed, "<html><body>Method not allowed</body></html>")
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	known, callbackOK := false, false
	for _, o := range s.orgs {
		if o.spec.ClientID == clientID {
			known = true
			callbackOK = callbackOK || o.spec.CallbackURL == redirectURI
		}
	}
	switch {
	case !known:
		return htmlReply(http.StatusBadRequest, "<html><body><p>error=invalid_client_id</p><p>error_description=client identifier invalid</p></body></html>")
	case !callbackOK:
		return htmlReply(http.StatusBadRequest, "<html><body><p>error=redirect_uri_mismatch</p><p>error_description=redirect_uri must match configuration</p></body></html>")
	}
	back := func(v url.Values) reply {
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		sep := "?"
		if strings.Contains(redirectURI, "?") {
			sep = "&"
		}
		return redirectReply(redirectURI + sep + v.Encode())
	}
	fail := func(code, desc string) reply { return back(url.Values{"error": {code}, "error_description": {desc}}) }
	switch {
	case q.Get("response_type") != "code":
		return fail("unsupported_response_type", "response type not supported")
	case q.Get("code_challenge_method") != "" && q.Get("code_challenge_method") != "S256":
		return fail("invalid_request", "invalid code_challenge_method")
	case q.Get("code_challenge_method") == "S256" && q.Get("code_challenge") == "":
		return fail("invalid_request", "missing code_challenge")
	}
	if r.Method == http.MethodGet {
		return s.loginPageReply(q, "")
	}
	if ticket := q.Get("approval_ticket"); ticket != "" {
		a := s.pending[ticket]
		delete(s.pending, ticket) // one use, whatever the answer
		switch {
		case a == nil || a.clientID != clientID || a.org.deleted:
			return s.loginPageReply(q, "Your session has expired. Please log in again.")
		case q.Get("deny") != "":
			return fail("access_denied", "end-user denied authorization")
		case q.Get("approve") == "":
			return htmlReply(http.StatusBadRequest, "<html><body>Bad request</body></html>")
		}
		if a.org.approvedApps == nil {
			a.org.approvedApps = map[string]bool{}
		}
		a.org.approvedApps[clientID] = true
		return back(url.Values{"code": {s.newCodeLocked(&authCode{org: a.org, clientID: clientID, redirectURI: redirectURI, challenge: q.Get("code_challenge")})}})
	}
	var o *Org
	for _, c := range s.orgs {
		if strings.EqualFold(c.spec.Username, q.Get("username")) && c.password == q.Get("pw") && !c.deleted {
			o = c
		}
	}
	switch {
	case o == nil:
		return s.loginPageReply(q, "Please check your username and password. If you still can't log in, contact your Salesforce administrator.")
	case o.inactive:
		return s.loginPageReply(q, "Your access is disabled. Contact your site administrator.")
	case o.spec.ClientID != clientID:
		return fail("invalid_client_id", "client identifier invalid")
	case o.webLoginDenied:
		return fail("access_denied", "end-user denied authorization")
	case o.spec.ApprovalRequired && !o.approvedApps[clientID]:
		return s.approvalPageReply(o, q)
	}
	return back(url.Values{"code": {s.newCodeLocked(&authCode{org: o, clientID: clientID, redirectURI: redirectURI, challenge: q.Get("code_challenge")})}})
}

// approval is a login that waits on the "Allow Access?" page.
type approval struct {
	org      *Org
	clientID string
}

var approvalPage = template.Must(template.New("approve").Parse(`<!DOCTYPE html>
<html><head><title>Allow Access? | Salesforce</title></head><body>
<h1>Allow Access?</h1>
<p>{{.App}} is asking to access your basic information and data, and to perform requests on your behalf at any time, as {{.User}}.</p>
<form id="approval_form" method="POST" action="/services/oauth2/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<input type="submit" id="oaapprove" name="approve" value="Allow">
<input type="submit" id="oadeny" name="deny" value="Deny">
</form></body></html>
`))

// approvalPageReply asks the logged-in user to allow the app: the authorize parameters ride along,
// with a one-time ticket that stands for the login.
func (s *Server) approvalPageReply(o *Org, q url.Values) reply {
	ticket := randomToken(24)
	s.issued = append(s.issued, ticket)
	s.pending[ticket] = &approval{org: o, clientID: q.Get("client_id")}
	params := map[string]string{"approval_ticket": ticket}
	for _, k := range authorizeParams {
		if v := q.Get(k); v != "" {
			params[k] = v
		}
	}
	var b strings.Builder
	_ = approvalPage.Execute(&b, struct {
		App, User string
		Params    map[string]string
	}{q.Get("client_id"), o.spec.Username, params})
	return htmlReply(http.StatusOK, b.String())
}

func (s *Server) loginPageReply(q url.Values, msg string) reply {
	params := map[string]string{}
	for _, k := range authorizeParams {
		if v := q.Get(k); v != "" {
			params[k] = v
		}
	}
	var b strings.Builder
	_ = loginPage.Execute(&b, struct {
		Error  string
		Params map[string]string
	}{msg, params})
	return htmlReply(http.StatusOK, b.String())
}

func (s *Server) newCodeLocked(c *authCode) string {
	code := randomToken(32)
	s.issued = append(s.issued, code)
	s.codes[code] = c
	return code
}

// authorizationCodeGrantLocked exchanges a code (single use: a failed exchange spends it too) for
// a new refresh token.
func (s *Server) authorizationCodeGrantLocked(f url.Values) reply {
	c := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code"))
	switch {
	case c == nil:
		return oauthErrorReply("invalid_grant", "invalid authorization code")
	case c.org.deleted:
		return orgGoneReply()
	case c.redirectURI != "" && f.Get("redirect_uri") != c.redirectURI:
		return oauthErrorReply("redirect_uri_mismatch", "redirect_uri must match configuration")
	case c.challenge != "" && pkceS256(f.Get("code_verifier")) != c.challenge:
		return oauthErrorReply("invalid_grant", "invalid code verifier")
	}
	o := c.org
	if c.clientID != "" && c.clientID != o.spec.ClientID {
		// A code that sandboxAuth issued for the production org's app.
		if f.Get("client_id") != c.clientID {
			return oauthErrorReply("invalid_client_id", "client identifier invalid")
		}
	} else if rp, ok := o.checkClientLocked(f); !ok {
		return rp
	}
	if rp, ok := o.checkLoginLocked(); !ok {
		return rp
	}
	t, ch := o.newRefreshTokenLocked(nil)
	return s.tokenReplyLocked(o, ch, t, "refresh_token api web id")
}

func pkceS256(verifier string) string {
	if verifier == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// singleAccessLocked answers /services/oauth2/singleaccess (GET, as the CLI asks, or POST):
// a one-time frontdoor link that logs a browser in. An expired token gets 403, not 401.
func (s *Server) singleAccessLocked(r *http.Request) reply {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return methodNotAllowed(r.Method, "GET,POST")
	}
	o, refused, ok := s.grantOrgLocked(r)
	if !ok {
		return refused
	}
	otp := randomToken(32)
	s.issued = append(s.issued, otp)
	s.otps[otp] = o
	link := s.instanceURLLocked(o) + "/secur/frontdoor.jsp?otp=" + otp
	if start := r.URL.Query().Get("redirect_uri"); start != "" {
		link += "&startURL=" + url.QueryEscape(start)
	}
	link += "&cshc=" + randomToken(8)
	rp := jsonReply(http.StatusOK, obj{{"frontdoor_uri", link}})
	rp.set("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")
	return rp
}

// frontdoorLocked is what a browser gets from a frontdoor link: with a live one-time otp (or a
// live access token as sid), a redirect to startURL (or /) and a session cookie; otherwise the
// login page.
func (s *Server) frontdoorLocked(r *http.Request) reply {
	q := r.URL.Query()
	var o *Org
	if otp := q.Get("otp"); otp != "" {
		o = s.otps[otp]
		delete(s.otps, otp)
	} else if g := s.access[q.Get("sid")]; g != nil && g.liveLocked() {
		o = g.org
	}
	if o == nil || o.deleted {
		return s.loginPageReply(url.Values{}, "Your session has expired. Please log in again.")
	}
	start := q.Get("startURL")
	if !strings.HasPrefix(start, "/") || strings.HasPrefix(start, "//") {
		start = "/"
	}
	rp := redirectReply(start)
	rp.set("Set-Cookie", "sid="+o.issueAccessLocked(nil)+"; Path=/; Secure; HttpOnly")
	return rp
}

var homePage = template.Must(template.New("home").Parse(`<!DOCTYPE html>
<html><head><title>Home | Salesforce</title></head><body>
<h1>{{.Org}}</h1><p id="user">Logged in as {{.User}}</p>
</body></html>
`))

// homeLocked is the page a browser lands on after a frontdoor link: with a live session cookie,
// the org's home page naming its user; without one, the login page, as Salesforce shows it.
func (s *Server) homeLocked(r *http.Request) reply {
	if r.Method != http.MethodGet {
		return methodNotAllowed(r.Method, "GET")
	}
	if c, err := r.Cookie("sid"); err == nil {
		if g := s.access[c.Value]; g != nil && g.liveLocked() && !g.org.deleted {
			var b strings.Builder
			_ = homePage.Execute(&b, struct{ Org, User string }{g.org.spec.Name, g.org.spec.Username})
			return htmlReply(http.StatusOK, b.String())
		}
	}
	return s.loginPageReply(url.Values{}, "")
}
