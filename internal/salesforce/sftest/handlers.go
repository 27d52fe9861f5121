package sftest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2/jws"
)

// The API versions the fake serves, as Salesforce does today: 31.0 to 65.0.
const (
	minVersion = 31
	maxVersion = 65
)

const jwtGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// obj is a JSON object that keeps its keys in order, as Salesforce's answers do.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		return reply{status: http.StatusInternalServerError, ctype: "text/plain", body: []byte("sftest: " + err.Error())}
	}
	return reply{status: status, ctype: "application/json;charset=UTF-8", body: b}
}

// restErrorReply is Salesforce's REST error shape: [{"message","errorCode"}].
func restErrorReply(status int, code, msg string) reply {
	return jsonReply(status, []obj{{{"message", msg}, {"errorCode", code}}})
}

// oauthErrorReply is the token endpoint's error shape.
func oauthErrorReply(code, desc string) reply {
	rp := jsonReply(http.StatusBadRequest, obj{{"error", code}, {"error_description", desc}})
	rp.set("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")
	return rp
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "OAuth "} {
		if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
			return strings.TrimSpace(h[len(p):])
		}
	}
	return ""
}

// attributeLocked finds the org a request belongs to, for CallsFor.
func (s *Server) attributeLocked(r *http.Request, ep string) *Org {
	switch ep {
	case "token":
		switch r.PostForm.Get("grant_type") {
		case "refresh_token":
			if g := s.refresh[r.PostForm.Get("refresh_token")]; g != nil {
				return g.org
			}
		case "authorization_code":
			if c := s.codes[r.PostForm.Get("code")]; c != nil {
				return c.org
			}
		case jwtGrant:
			if c, err := jws.Decode(r.PostForm.Get("assertion")); err == nil {
				return s.apps[c.Iss]
			}
		}
		return nil
	case "revoke":
		t := r.PostForm.Get("token")
		if g := s.refresh[t]; g != nil {
			return g.org
		}
		if g := s.access[t]; g != nil {
			return g.org
		}
		return nil
	case "frontdoor":
		return s.otps[r.URL.Query().Get("otp")]
	}
	if g := s.access[bearer(r)]; g != nil {
		return g.org
	}
	return nil
}

// observeServed, when set (by this package's tests), sees the status of every answer.
var observeServed func(ep string, status int)

// routeLocked answers a request; concurrent says that it is a refresh_token grant whose token
// another request was refreshing when this one was accepted.
func (s *Server) routeLocked(r *http.Request, ep string, body []byte, concurrent bool) reply {
	rp, broken := s.brokenReplyLocked(ep)
	if !broken {
		rp = s.answerLocked(r, ep, body, concurrent)
	}
	if observeServed != nil {
		observeServed(ep, rp.status)
	}
	return rp
}

func (s *Server) answerLocked(r *http.Request, ep string, body []byte, concurrent bool) reply {
	switch ep {
	case "token":
		if r.Method != http.MethodPost {
			return oauthErrorReply("invalid_request", "must use HTTP POST")
		}
		return s.tokenLocked(r, concurrent)
	case "revoke":
		return s.revokeLocked(r)
	case "authorize":
		return s.authorizeLocked(r, body)
	case "singleaccess":
		return s.singleAccessLocked(r)
	case "frontdoor":
		return s.frontdoorLocked(r)
	case "home":
		return s.homeLocked(r)
	case "userinfo":
		return s.userinfoLocked(r)
	case "identity":
		return s.identityLocked(r)
	case "versions":
		return versionsReply()
	case "other":
		if !strings.HasPrefix(r.URL.Path, "/services/data/v") {
			return reply{status: http.StatusNotFound, ctype: "text/html;charset=UTF-8", body: []byte("<html><body>URL No Longer Exists</body></html>")}
		}
	}
	version, ok := apiVersion(r.URL.Path)
	if !ok {
		return restErrorReply(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	o, rp, ok := s.restAuthLocked(r)
	if !ok {
		return rp
	}
	switch ep {
	case "composite":
		rp = s.compositeLocked(o, version, r.Method, body)
	case "sandboxAuth":
		rp = s.sandboxAuthLocked(o, r.Method, body)
	default:
		rp = s.restLocked(o, ep, version, r.Method, r.URL)
	}
	rp.set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", o.apiUsed, o.spec.DailyAPIMax))
	return rp
}

var versionPath = regexp.MustCompile(`^/services/data/v(\d+)\.0(/|$)`)

func apiVersion(p string) (string, bool) {
	m := versionPath.FindStringSubmatch(p)
	if m == nil {
		return "", false
	}
	n, _ := strconv.Atoi(m[1])
	return m[1] + ".0", n >= minVersion && n <= maxVersion
}

func releaseLabel(v int) string {
	n := v - 62 // v62.0 is Winter '25
	year := 25 + floorDiv(n, 3)
	season := [...]string{"Winter", "Spring", "Summer"}[n-3*floorDiv(n, 3)]
	return fmt.Sprintf("%s '%02d", season, year)
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func versionsReply() reply {
	var list []obj
	for v := minVersion; v <= maxVersion; v++ {
		list = append(list, obj{{"label", releaseLabel(v)}, {"url", fmt.Sprintf("/services/data/v%d.0", v)}, {"version", fmt.Sprintf("%d.0", v)}})
	}
	return jsonReply(http.StatusOK, list)
}

// --- token endpoint ---

func (s *Server) tokenLocked(r *http.Request, concurrent bool) reply {
	f := r.PostForm
	switch f.Get("grant_type") {
	case "refresh_token":
		return s.refreshGrantLocked(r, concurrent)
	case "authorization_code":
		return s.authorizationCodeGrantLocked(f)
	case jwtGrant:
		return s.jwtLocked(f.Get("assertion"))
	}
	return oauthErrorReply("unsupported_grant_type", "grant type not supported")
}

func (o *Org) checkClientLocked(f url.Values) (reply, bool) {
	if f.Get("client_id") != o.spec.ClientID {
		return oauthErrorReply("invalid_client_id", "client identifier invalid"), false
	}
	if secret := f.Get("client_secret"); (secret != "" || o.spec.ClientSecret != "") && secret != o.spec.ClientSecret {
		return oauthErrorReply("invalid_client", "invalid client credentials"), false
	}
	return reply{}, true
}

func (o *Org) checkLoginLocked() (reply, bool) {
	switch {
	case o.loginRateLimited:
		return oauthErrorReply("rate_limit_exceeded", "rate limit exceeded"), false
	case o.inactive:
		return oauthErrorReply("invalid_grant", "inactive user"), false
	}
	return reply{}, true
}

func (s *Server) jwtLocked(assertion string) reply {
	claims, err := jws.Decode(assertion)
	if err != nil {
		return oauthErrorReply("invalid_grant", "invalid assertion")
	}
	o := s.apps[claims.Iss]
	switch {
	case o == nil:
		return oauthErrorReply("invalid_client_id", "client identifier invalid")
	case o.deleted:
		return orgGoneReply()
	case jws.Verify(assertion, &o.jwtKey.PublicKey) != nil:
		return oauthErrorReply("invalid_grant", "invalid assertion")
	}
	// A production org's connected app is copied into its sandboxes: the same consumer key and
	// certificate grant a sandbox user's assertion, at the sandbox audience.
	if !strings.EqualFold(claims.Sub, o.spec.Username) {
		for _, sb := range s.sandboxesLocked(o) {
			if strings.EqualFold(claims.Sub, sb.spec.Username) {
				o = sb
			}
		}
	}
	aud := "https://login.salesforce.com"
	if o.spec.Kind == Sandbox || o.spec.Kind == Scratch {
		aud = "https://test.salesforce.com"
	}
	// Salesforce takes the audience with or without a trailing slash (the CLI sends one), and an
	// exp in milliseconds (the CLI's), allowing a few minutes of clock skew.
	exp, now := claims.Exp, time.Now().Unix()
	if exp > 1e11 {
		exp /= 1000
	}
	switch got := strings.TrimSuffix(claims.Aud, "/"); {
	case got != aud && got != s.URL():
		return oauthErrorReply("invalid_grant", "audience is invalid")
	case exp < now-3*60:
		return oauthErrorReply("invalid_grant", "expired authorization code")
	case exp > now+10*60:
		return oauthErrorReply("invalid_grant", "invalid assertion")
	case !strings.EqualFold(claims.Sub, o.spec.Username):
		return oauthErrorReply("invalid_grant", "user hasn't approved this consumer")
	}
	if rp, ok := o.checkLoginLocked(); !ok {
		return rp
	}
	return s.tokenReplyLocked(o, nil, "", "api web id")
}

func (s *Server) instanceURLLocked(o *Org) string {
	if o.instanceURL != "" {
		return o.instanceURL
	}
	return s.URL()
}

func (s *Server) idURLLocked(o *Org) string {
	return s.URL() + "/id/" + o.orgID + "/" + o.userID
}

// tokenReplyLocked is Salesforce's token answer: no expires_in, issued_at a string of epoch
// milliseconds, refresh_token only when one is issued (a grant or a rotation). Its access token
// belongs to chain ch (nil for none).
func (s *Server) tokenReplyLocked(o *Org, ch *chain, refresh, scope string) reply {
	issued := strconv.FormatInt(time.Now().UnixMilli(), 10)
	id := s.idURLLocked(o)
	mac := hmac.New(sha256.New, []byte(o.spec.ClientID+o.spec.ClientSecret))
	mac.Write([]byte(id + issued))
	ans := obj{{"access_token", o.issueAccessLocked(ch)}}
	if refresh != "" {
		ans = append(ans, kv{"refresh_token", refresh})
	}
	ans = append(ans,
		kv{"signature", base64.StdEncoding.EncodeToString(mac.Sum(nil))},
		kv{"scope", scope},
		kv{"instance_url", s.instanceURLLocked(o)},
		kv{"id", id},
		kv{"token_type", "Bearer"},
		kv{"issued_at", issued},
	)
	rp := jsonReply(http.StatusOK, ans)
	rp.set("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")
	return rp
}

func (s *Server) revokeLocked(r *http.Request) reply {
	t := r.PostForm.Get("token")
	if g := s.refresh[t]; g != nil {
		delete(g.org.valid, t)
		g.org.epoch++ // revoking a refresh token ends the sessions it opened (and the org's others)
		return reply{status: http.StatusOK}
	}
	if g := s.access[t]; g != nil {
		// Only this access token (the session every holder of it shares) ends; its refresh token
		// lives, and the chain's next refresh opens a new session.
		delete(s.access, t)
		g.org.accessRevoked++
		return reply{status: http.StatusOK}
	}
	return oauthErrorReply("invalid_token", "Token was invalid")
}

// --- identity ---

// liveGrantLocked returns the org of a live access token. A deleted org's tokens are found (so
// they get its HTML page) but not live.
func (s *Server) liveGrantLocked(r *http.Request) (o *Org, gone bool) {
	g := s.access[bearer(r)]
	switch {
	case g == nil:
		return nil, false
	case g.org.deleted:
		return g.org, true
	case !g.liveLocked():
		return nil, false
	}
	return g.org, false
}

func plainForbidden(text string) reply {
	return reply{status: http.StatusForbidden, ctype: "text/plain;charset=UTF-8", body: []byte(text)}
}

func (s *Server) urlsLocked(o *Org) obj {
	inst := s.instanceURLLocked(o)
	v := fmt.Sprintf("%d.0", maxVersion)
	return obj{
		{"enterprise", inst + "/services/Soap/c/{version}/" + o.orgID[:15]},
		{"metadata", inst + "/services/Soap/m/{version}/" + o.orgID[:15]},
		{"partner", inst + "/services/Soap/u/{version}/" + o.orgID[:15]},
		{"rest", inst + "/services/data/v{version}/"},
		{"sobjects", inst + "/services/data/v{version}/sobjects/"},
		{"search", inst + "/services/data/v{version}/search/"},
		{"query", inst + "/services/data/v{version}/query/"},
		{"recent", inst + "/services/data/v{version}/recent/"},
		{"tooling_soap", inst + "/services/Soap/T/{version}/" + o.orgID[:15]},
		{"tooling_rest", inst + "/services/data/v{version}/tooling/"},
		{"profile", inst + "/" + o.userID},
		{"users", inst + "/services/data/v" + v + "/chatter/users"},
		{"custom_domain", inst},
	}
}

// grantOrgLocked is the prologue of the endpoints a bearer token opens (userinfo, identity): the
// token's org, or the answer Salesforce gives a deleted org or a bad token.
func (s *Server) grantOrgLocked(r *http.Request) (*Org, reply, bool) {
	o, gone := s.liveGrantLocked(r)
	switch {
	case gone:
		return nil, orgGoneReply(), false
	case o == nil:
		return nil, plainForbidden("Bad_OAuth_Token"), false
	}
	return o, reply{}, true
}

func (s *Server) userinfoLocked(r *http.Request) reply {
	o, refused, ok := s.grantOrgLocked(r)
	if !ok {
		return refused
	}
	inst := s.instanceURLLocked(o)
	return jsonReply(http.StatusOK, obj{
		{"sub", s.idURLLocked(o)},
		{"user_id", o.userID},
		{"organization_id", o.orgID},
		{"preferred_username", o.spec.Username},
		{"nickname", strings.SplitN(o.spec.Username, "@", 2)[0]},
		{"name", "Admin User"},
		{"email", o.spec.Username},
		{"email_verified", true},
		{"given_name", "Admin"},
		{"family_name", "User"},
		{"zoneinfo", "America/Los_Angeles"},
		{"profile", inst + "/" + o.userID},
		{"urls", s.urlsLocked(o)},
		{"active", !o.inactive},
		{"user_type", "STANDARD"},
		{"language", "en_US"},
		{"locale", "en_US"},
		{"utcOffset", -28800000},
		{"updated_at", "2025-01-01T00:00:00Z"},
		{"is_app_installed", true},
	})
}

func (s *Server) identityLocked(r *http.Request) reply {
	o, refused, ok := s.grantOrgLocked(r)
	if !ok {
		return refused
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[1] != o.orgID || parts[2] != o.userID {
		return plainForbidden("Bad_Id")
	}
	return jsonReply(http.StatusOK, obj{
		{"id", s.idURLLocked(o)},
		{"asserted_user", true},
		{"user_id", o.userID},
		{"organization_id", o.orgID},
		{"username", o.spec.Username},
		{"nick_name", strings.SplitN(o.spec.Username, "@", 2)[0]},
		{"display_name", "Admin User"},
		{"email", o.spec.Username},
		{"email_verified", true},
		{"first_name", "Admin"},
		{"last_name", "User"},
		{"timezone", "America/Los_Angeles"},
		{"urls", s.urlsLocked(o)},
		{"active", !o.inactive},
		{"user_type", "STANDARD"},
		{"language", "en_US"},
		{"locale", "en_US"},
		{"utcOffset", -28800000},
		{"last_modified_date", "2025-01-01T00:00:00.000+0000"},
		{"is_app_installed", true},
	})
}

// --- REST ---

// restAuthLocked checks the session and the org's API state, and consumes one API request.
func (s *Server) restAuthLocked(r *http.Request) (*Org, reply, bool) {
	o, gone := s.liveGrantLocked(r)
	switch {
	case gone:
		return nil, orgGoneReply(), false
	case o == nil:
		rp := restErrorReply(http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
		rp.set("WWW-Authenticate", `Token`)
		return nil, rp, false
	}
	var rp reply
	switch {
	case o.apiDisabled:
		rp = restErrorReply(http.StatusForbidden, "API_DISABLED_FOR_ORG", "The REST API is not enabled for this Organization.")
	case o.rateLimited || o.apiUsed >= o.spec.DailyAPIMax:
		rp = restErrorReply(http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
	default:
		o.apiUsed++
		return o, reply{}, true
	}
	rp.set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", o.apiUsed, o.spec.DailyAPIMax))
	return nil, rp, false
}

func methodNotAllowed(method, allowed string) reply {
	return restErrorReply(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are %s", method, allowed))
}

// restLocked answers an authenticated REST call (also a composite subrequest, which consumes
// no API request of its own).
func (s *Server) restLocked(o *Org, ep, version, method string, u *url.URL) reply {
	if ep != "composite" && method != http.MethodGet && method != http.MethodHead {
		return methodNotAllowed(method, "GET,HEAD")
	}
	switch ep {
	case "resources":
		return s.resourcesLocked(o, version)
	case "query":
		return s.runQueryLocked(o, version, u.Query().Get("q"), u.Query().Get("columns") == "true", restObjects)
	case "tooling-query":
		return s.runQueryLocked(o, version, u.Query().Get("q"), u.Query().Get("columns") == "true", toolingObjects)
	case "limits":
		return limitsReply(o)
	case "user":
		return s.userLocked(o, version, u)
	}
	return restErrorReply(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
}

func (s *Server) resourcesLocked(o *Org, version string) reply {
	base := "/services/data/v" + version + "/"
	names := []string{"tooling", "metadata", "eclair", "folders", "prechatForms", "jsonxform", "chatter", "tabs",
		"appMenu", "quickActions", "queryAll", "commerce", "wave", "iot", "analytics", "search", "composite",
		"parameterizedSearch", "fingerprint", "theme", "nouns", "event", "serviceTemplates", "recent",
		"connect", "licensing", "limits", "process", "async-queries", "query", "emailConnect",
		"compactLayouts", "knowledgeManagement", "sobjects", "actions", "support"}
	var ans obj
	for _, n := range names {
		ans = append(ans, kv{n, base + n})
	}
	ans = append(ans, kv{"identity", s.idURLLocked(o)})
	return jsonReply(http.StatusOK, ans)
}

func limitsReply(o *Org) reply {
	pair := func(max, remaining int64) obj { return obj{{"Max", max}, {"Remaining", remaining}} }
	return jsonReply(http.StatusOK, obj{
		{"ConcurrentAsyncGetReportInstances", pair(200, 200)},
		{"ConcurrentSyncReportRuns", pair(20, 20)},
		{"DailyApiRequests", pair(o.spec.DailyAPIMax, o.spec.DailyAPIMax-o.apiUsed)},
		{"DailyAsyncApexExecutions", pair(250000, 250000)},
		{"DailyBulkApiBatches", pair(15000, 15000)},
		{"DailyBulkV2QueryJobs", pair(10000, 10000)},
		{"DailyScratchOrgs", pair(scratchLimit(o, 200), scratchLimit(o, 200))},
		{"DataStorageMB", pair(5, 5)},
		{"FileStorageMB", pair(20, 20)},
		{"HourlyTimeBasedWorkflow", pair(1000, 1000)},
		{"SingleEmail", pair(5000, 5000)},
	})
}

func scratchLimit(o *Org, n int64) int64 {
	if o.spec.DevHub {
		return n
	}
	return 0
}

const sobjectNotSupported = "sObject type '%s' is not supported."

func lookupField(rec obj, name string) (string, any, bool) {
	for _, e := range rec {
		if strings.EqualFold(e.k, name) {
			return e.k, e.v, true
		}
	}
	return "", nil, false
}

func (s *Server) organizationRecordLocked(o *Org) obj {
	var trial, ns any
	if !o.spec.TrialExpirationDate.IsZero() {
		trial = o.spec.TrialExpirationDate.UTC().Format("2006-01-02T15:04:05.000+0000")
	}
	if o.spec.NamespacePrefix != "" {
		ns = o.spec.NamespacePrefix
	}
	return obj{
		{"Id", o.orgID},
		{"Name", o.spec.Name},
		{"InstanceName", o.spec.InstanceName},
		{"IsSandbox", o.spec.Kind == Sandbox || o.spec.Kind == Scratch},
		{"TrialExpirationDate", trial},
		{"NamespacePrefix", ns},
		{"OrganizationType", o.spec.Edition},
		{"LanguageLocaleKey", "en_US"},
		{"CreatedDate", "2025-01-01T00:00:00.000+0000"},
	}
}

func (s *Server) userLocked(o *Org, version string, u *url.URL) reply {
	id := u.Path[strings.LastIndexByte(strings.TrimSuffix(u.Path, "/"), '/')+1:]
	id = strings.TrimSuffix(id, "/")
	if id != o.userID && id != o.userID[:15] {
		return restErrorReply(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	local := strings.SplitN(o.spec.Username, "@", 2)[0]
	rec := obj{
		{"Id", o.userID},
		{"Username", o.spec.Username},
		{"Name", "Admin User"},
		{"FirstName", "Admin"},
		{"LastName", "User"},
		{"Alias", local[:min(len(local), 8)]},
		{"Email", o.spec.Username},
		{"IsActive", !o.inactive},
	}
	row := obj{{"attributes", obj{{"type", "User"}, {"url", "/services/data/v" + version + "/sobjects/User/" + o.userID}}}}
	fields := u.Query().Get("fields")
	if fields == "" {
		return jsonReply(http.StatusOK, append(row, rec...))
	}
	for _, f := range strings.Split(fields, ",") {
		name, v, ok := lookupField(rec, strings.TrimSpace(f))
		if !ok {
			return restErrorReply(http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("No such column '%s' on entity 'User'.", strings.TrimSpace(f)))
		}
		row = append(row, kv{name, v})
	}
	return jsonReply(http.StatusOK, row)
}

// compositeLocked runs the subrequests of a composite call against the same org. The call counts
// as one API request. With allOrNone, the first failure turns every other answer into
// PROCESSING_HALTED. References between subrequests (@{ref.field}) are not supported.
func (s *Server) compositeLocked(o *Org, version, method string, body []byte) reply {
	if method != http.MethodPost {
		return methodNotAllowed(method, "POST")
	}
	var req struct {
		AllOrNone        bool `json:"allOrNone"`
		CompositeRequest []struct {
			Method      string `json:"method"`
			URL         string `json:"url"`
			ReferenceID string `json:"referenceId"`
		} `json:"compositeRequest"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.CompositeRequest) == 0 {
		return restErrorReply(http.StatusBadRequest, "JSON_PARSER_ERROR", "The request body is not a valid composite request.")
	}
	if len(req.CompositeRequest) > 25 {
		return restErrorReply(http.StatusBadRequest, "INVALID_INPUT", "Composite requests cannot contain more than 25 subrequests.")
	}
	seen := map[string]bool{}
	type answer struct {
		ref string
		rp  reply
	}
	var answers []answer
	failed := false
	for _, sub := range req.CompositeRequest {
		if sub.ReferenceID == "" || seen[sub.ReferenceID] {
			return restErrorReply(http.StatusBadRequest, "INVALID_INPUT", "Every subrequest needs a unique referenceId.")
		}
		seen[sub.ReferenceID] = true
		var rp reply
		u, err := url.Parse(sub.URL)
		switch {
		case err != nil || !strings.HasPrefix(u.Path, "/services/data/v"):
			rp = restErrorReply(http.StatusBadRequest, "INVALID_INPUT", "The subrequest URL must start with /services/data/.")
		default:
			ep := endpointOf(u.Path)
			if v, ok := apiVersion(u.Path); !ok || ep == "composite" {
				rp = restErrorReply(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			} else {
				rp = s.restLocked(o, ep, v, strings.ToUpper(sub.Method), u)
			}
		}
		if rp.status >= 300 {
			failed = true
		}
		answers = append(answers, answer{sub.ReferenceID, rp})
	}
	var out []obj
	for _, a := range answers {
		rp := a.rp
		if req.AllOrNone && failed && rp.status < 300 {
			rp = restErrorReply(http.StatusBadRequest, "PROCESSING_HALTED", "The transaction was rolled back since another operation in the same transaction failed.")
		}
		var b json.RawMessage = rp.body
		if !json.Valid(b) {
			b, _ = json.Marshal(string(rp.body))
		}
		headers := obj{}
		keys := make([]string, 0, len(rp.header))
		for k := range rp.header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			headers = append(headers, kv{k, rp.header.Get(k)})
		}
		out = append(out, obj{{"body", b}, {"httpHeaders", headers}, {"httpStatusCode", rp.status}, {"referenceId", a.ref}})
	}
	return jsonReply(http.StatusOK, obj{{"compositeResponse", out}})
}
