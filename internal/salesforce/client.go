package salesforce

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"
)

const (
	// DefaultTimeout bounds every HTTP call when Options.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultAPIVersion is the REST API version used when Options.APIVersion is empty.
	DefaultAPIVersion = "65.0"

	// maxBody bounds what is read of any answer.
	maxBody = 4 << 20
	// sessionIdleTTL drops cached access tokens of credentials nobody checked for this long.
	sessionIdleTTL = 24 * time.Hour
)

// Options configures a Client. The zero value is a client for Salesforce's own domains with the
// system's CA pool.
type Options struct {
	// AllowedHosts are extra hosts a credential may be sent to, beyond Salesforce's own domains:
	// "127.0.0.1:8443" (that port only), "localhost" (any port), "*.example.test" (any name below
	// example.test). Explicitly allowed hosts also skip the dial-time loopback/link-local check.
	// See ParseAllowedHosts.
	AllowedHosts []string
	// RootCAs verifies servers; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds each HTTP call (connect, TLS, request, answer). Default 30s.
	Timeout time.Duration
	// APIVersion is the REST API version, "65.0" by default.
	APIVersion string
	// Observe, when set, is called once per HTTP request with the endpoint name ("token",
	// "composite"), an outcome ("ok", "unauthorized", "rate_limited", "rejected", "refused",
	// "unreachable", "server_error", "api_disabled", "org_gone") and the duration. For metrics.
	Observe func(endpoint, outcome string, d time.Duration)
	// HostQPS bounds the calls per second to one Salesforce host (0: no bound).
	HostQPS float64
	// OrgQPS bounds the calls per second for one org's credential (0: no bound).
	OrgQPS float64
	// Concurrency is how many calls the caller makes at once at most (0: 16). Up to that many
	// connections to one host are kept open between calls: orgs that share an instance host
	// would otherwise pay a TLS handshake for most checks.
	Concurrency int
}

// Client checks Salesforce orgs. It is safe for concurrent use; checks of one credential are
// serialised (so a rotating refresh token is never spent twice), checks of different credentials
// run in parallel.
type Client struct {
	allow      *allowList
	http       *http.Client
	timeout    time.Duration
	apiVersion string
	observe    func(endpoint, outcome string, d time.Duration)
	lookup     func(ctx context.Context, host string) ([]netip.Addr, error)
	limits     *limits

	mu        sync.Mutex
	sessions  map[string]*session // by credential cache key; a rotated credential has several keys
	lastSweep time.Time
}

// session is what is cached for one credential: its newest form (after rotations) and the
// current access token. Fields other than keys and lastUsed are guarded by mu.
type session struct {
	mu          sync.Mutex
	limiter     *rate.Limiter // this org's courtesy bucket; nil when unbounded
	cred        Credential
	access      string
	instanceURL string
	orgID       string
	userID      string

	keys     []string  // guarded by Client.mu
	lastUsed time.Time // guarded by Client.mu
}

var apiVersionPattern = regexp.MustCompile(`^[1-9][0-9]{1,2}\.0$`)

// NewClient validates o and returns a Client.
func NewClient(o Options) (*Client, error) {
	allow, err := newAllowList(o.AllowedHosts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		allow:      allow,
		timeout:    o.Timeout,
		apiVersion: o.APIVersion,
		observe:    o.Observe,
		lookup:     defaultLookup,
		sessions:   map[string]*session{},
		limits:     newLimits(o.HostQPS, o.OrgQPS),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.apiVersion == "" {
		c.apiVersion = DefaultAPIVersion
	}
	if !apiVersionPattern.MatchString(c.apiVersion) {
		return nil, fmt.Errorf("salesforce: API version %q is invalid: use the form 65.0", c.apiVersion)
	}
	base := &http.Transport{
		Proxy:                  nil, // a proxy would move the dial-time checks to the proxy's address
		DialContext:            c.dialContext,
		TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    min(c.timeout, 10*time.Second),
		ResponseHeaderTimeout:  c.timeout,
		MaxIdleConns:           max(100, 2*o.Concurrency),
		MaxIdleConnsPerHost:    max(16, o.Concurrency),
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	c.http = &http.Client{
		Transport: &guardedTransport{c: c, base: base},
		// Never follow a redirect: it could lead the token anywhere. A 3xx is a server error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// CheckResult is what a successful Check learned.
type CheckResult struct {
	Facts OrgFacts
	// RotatedAuthURL is set when Salesforce returned a NEW refresh token: the old one is already
	// dead, and the caller must persist this before anything else.
	RotatedAuthURL *AuthURL
}

// OrgFacts are the facts the operator reports about an org.
type OrgFacts struct {
	OrgID, UserID, Username   string
	InstanceURL, InstanceName string
	Edition                   string // Organization.OrganizationType, e.g. "Developer Edition"
	Name                      string // Organization.Name
	// IsSandbox is a sandbox proper (IsSandbox and no trial expiry); IsScratch is a scratch org
	// (IsSandbox with a trial expiry): the two never both hold.
	IsSandbox, IsScratch, IsDevHub bool
	NamespacePrefix                string
	TrialExpirationDate            *time.Time // scratch orgs (and trials)
	// APIRequestsMax and APIRequestsRemaining are the org's DailyApiRequests (0 when unknown).
	APIRequestsMax, APIRequestsRemaining int64
}

// Persist writes a rotated auth URL somewhere durable (the org's Secret). CheckWith calls it
// before the new access token is used for anything; when it fails, the check stops there.
type Persist func(ctx context.Context, rotated AuthURL) error

// persistTimeout bounds one Persist call; it runs even while the caller's context is being
// cancelled (a graceful shutdown), because the old refresh token is already dead.
const persistTimeout = 20 * time.Second

// Check authenticates (reusing a cached access token when it has one) and reads the org's facts.
// A first check of a credential costs two HTTP requests (token + one composite call), later
// checks one; an access token is refreshed once, and the call retried once, only when Salesforce
// answers 401.
//
// Every error is an *Error. On error the result is nil, with one exception: when Salesforce
// rotated the refresh token during this call, the result is non-nil and carries RotatedAuthURL
// even though err is set, because the old token is already dead. A later Check with the old URL
// also keeps returning RotatedAuthURL for as long as this Client remembers the credential.
func (c *Client) Check(ctx context.Context, cred Credential) (*CheckResult, error) {
	return c.CheckWith(ctx, cred, nil)
}

// CheckWith is Check with rotation handled at its only source: when the token answer carries a
// new refresh token (or this client still holds one that persist has not yet accepted), persist
// runs first, before the new access token is used, and the check goes on only when it succeeded.
// The token request and persist are not cut short by ctx's cancellation (each is bounded by its
// own timeout), so a graceful shutdown never drops a rotated token on the floor. Once persist
// succeeded, the client forgets the dead credential.
func (c *Client) CheckWith(ctx context.Context, cred Credential, persist Persist) (*CheckResult, error) {
	ctx, cr, s, err := c.lockSession(ctx, cred)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()

	var facts OrgFacts
	if persist != nil {
		err = c.persistPending(ctx, s, cr, persist)
	}
	if err == nil {
		facts, err = c.check(ctx, s, cr, persist)
	}
	var res *CheckResult
	if rotated := rotatedAuthURL(cr, s.cred); rotated != nil || err == nil {
		res = &CheckResult{RotatedAuthURL: rotated}
	}
	if err != nil {
		secrets := append(append(cr.secrets(), s.cred.secrets()...), s.access)
		err = scrub(err, secrets...)
		if r := ReasonOf(err); r == ReasonCredentialRejected || r == ReasonOrgGone {
			s.access = "" // start afresh next time
		}
		return res, err
	}
	res.Facts = facts
	return res, nil
}

// CheckHeld is CheckWith without a login: it checks with the access token this client holds for
// cred, and only when it holds one for cred as it is (no rotation waiting to be saved). held is
// false when it could not: no token, a rotation pending, or Salesforce answered 401 (the token is
// then dropped). The caller then reads the credential afresh, so that a refresh always spends the
// refresh token the Secret holds now, and calls CheckWith. When held is true, res and err are
// what CheckWith would have returned.
func (c *Client) CheckHeld(ctx context.Context, cred Credential) (res *CheckResult, held bool, err error) {
	ctx, cr, s, err := c.lockSession(ctx, cred)
	if err != nil {
		return nil, false, nil
	}
	defer s.mu.Unlock()
	if s.access == "" || s.cred.cacheKey() != cr.cacheKey() {
		return nil, false, nil
	}
	facts, err := c.readFacts(ctx, s)
	var ua *unauthorizedError
	if errors.As(err, &ua) {
		s.access = ""
		return nil, false, nil
	}
	if err != nil {
		err = scrub(err, append(cr.secrets(), s.access)...)
		if r := ReasonOf(err); r == ReasonCredentialRejected || r == ReasonOrgGone {
			s.access = ""
		}
		return nil, true, err
	}
	return &CheckResult{Facts: facts}, true, nil
}

// lockSession validates cred and returns its session, locked (the caller unlocks s.mu), with ctx
// carrying the org's courtesy bucket.
func (c *Client) lockSession(ctx context.Context, cred Credential) (context.Context, Credential, *session, error) {
	cr, err := credentialValue(cred)
	if err != nil {
		return ctx, nil, nil, err
	}
	if err := cr.validate(c); err != nil {
		return ctx, nil, nil, err
	}
	s := c.sessionFor(cr)
	s.mu.Lock()
	return withOrgLimiter(ctx, s.limiter), cr, s, nil
}

// persistPending hands persist a rotation this client holds for cr but that was never accepted
// (an earlier persist failed): nothing is sent to Salesforce until it is.
func (c *Client) persistPending(ctx context.Context, s *session, asked Credential, persist Persist) error {
	rotated := rotatedAuthURL(asked, s.cred)
	if rotated == nil {
		return nil
	}
	return c.persist(ctx, s, *rotated, persist)
}

func (c *Client) persist(ctx context.Context, s *session, rotated AuthURL, persist Persist) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
	defer cancel()
	if err := persist(pctx, rotated); err != nil {
		return &Error{Reason: ReasonSecretUpdateFailed, Retryable: true,
			Message: "Salesforce rotated the refresh token, but it could not be saved: " + err.Error()}
	}
	c.forgetOthers(s)
	return nil
}

func (c *Client) check(ctx context.Context, s *session, asked Credential, persist Persist) (OrgFacts, error) {
	fresh := false
	if s.access == "" {
		if err := c.login(ctx, s, asked, persist); err != nil {
			return OrgFacts{}, err
		}
		fresh = true
	}
	facts, err := c.readFacts(ctx, s)
	var ua *unauthorizedError
	if errors.As(err, &ua) && !fresh {
		s.access = ""
		if err := c.login(ctx, s, asked, persist); err != nil {
			return OrgFacts{}, err
		}
		facts, err = c.readFacts(ctx, s)
	}
	if errors.As(err, &ua) {
		return OrgFacts{}, &Error{Reason: ReasonCredentialRejected, Code: ua.code, Message: "Salesforce refused a freshly issued access token: " +
			withCode(ua.msg, ua.code) + "; check that the user has the API Enabled permission and that the connected app's session policies allow API access"}
	}
	return facts, err
}

// login gets a new access token for s.cred and records a rotated refresh token, which persist
// (when set) must accept before the access token is kept. The token request runs to its own
// timeout even if ctx is cancelled meanwhile: Salesforce may already have rotated the token.
func (c *Client) login(ctx context.Context, s *session, asked Credential, persist Persist) error {
	info, err := s.cred.login(context.WithoutCancel(ctx), c)
	if err != nil {
		return err
	}
	s.access, s.instanceURL, s.orgID, s.userID = info.access, info.instanceURL, info.orgID, info.userID
	if a, ok := s.cred.(AuthURL); ok && info.refresh != "" && info.refresh != a.RefreshToken {
		n := a.WithRefreshToken(info.refresh)
		s.cred = n
		c.addKey(s, n.cacheKey())
		if persist != nil && rotatedAuthURL(asked, n) != nil {
			if err := c.persist(ctx, s, n, persist); err != nil {
				return err // the access token waits, unused, until the rotation is saved
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return &Error{Reason: ReasonUnreachable, Retryable: true, Message: "the check was cancelled", cause: err}
	}
	return nil
}

func rotatedAuthURL(asked, current Credential) *AuthURL {
	a, ok := asked.(AuthURL)
	if !ok {
		return nil
	}
	cur, ok := current.(AuthURL)
	if !ok || cur == a {
		return nil
	}
	return &cur
}

// Forget drops any cached access token for cred (e.g. when an org is deleted), including those
// reached through a rotation of it.
func (c *Client) Forget(cred Credential) {
	cr, err := credentialValue(cred)
	if err != nil {
		return
	}
	key := cr.cacheKey()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[key]
	if s == nil {
		return
	}
	for _, k := range s.keys {
		if c.sessions[k] == s {
			delete(c.sessions, k)
		}
	}
}

func (c *Client) sessionFor(cred Credential) *session {
	key := cred.cacheKey()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > time.Hour {
		c.lastSweep = now
		for k, s := range c.sessions {
			if now.Sub(s.lastUsed) > sessionIdleTTL {
				delete(c.sessions, k)
			}
		}
	}
	s := c.sessions[key]
	if s == nil {
		s = &session{cred: cred, keys: []string{key}, limiter: bucket(c.limits.orgQPS)}
		c.sessions[key] = s
	}
	s.lastUsed = now
	return s
}

// forgetOthers keeps only s's newest credential in the cache: once a rotation is saved, the
// keys of the dead credentials it replaced are no longer needed.
func (c *Client) forgetOthers(s *session) {
	cur := s.cred.cacheKey()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range s.keys {
		if k != cur && c.sessions[k] == s {
			delete(c.sessions, k)
		}
	}
	s.keys = []string{cur}
	c.sessions[cur] = s
}

func (c *Client) addKey(s *session, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[key] == s {
		return
	}
	c.sessions[key] = s
	s.keys = append(s.keys, key)
}

// probe records what happened to one HTTP request, for classification and Observe. The
// guarded transport fills it in; each probe serves one request in one goroutine.
type probe struct {
	endpoint  string
	attempted bool
	dur       time.Duration
	err       error // transport error (never a body)
	status    int
	header    http.Header
	body      []byte
}

type probeKey struct{}

// call prepares the context of one HTTP call: its timeout, its probe, and our HTTP client for
// x/oauth2.
func (c *Client) call(ctx context.Context, endpoint string) (context.Context, *probe, context.CancelFunc) {
	p := &probe{endpoint: endpoint}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	cctx = context.WithValue(cctx, probeKey{}, p)
	cctx = context.WithValue(cctx, oauth2.HTTPClient, c.http)
	return cctx, p, cancel
}

func (c *Client) observeCall(p *probe, err error) {
	if c.observe != nil && p.attempted {
		c.observe(p.endpoint, outcomeOf(err), p.dur)
	}
}

func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	var ua *unauthorizedError
	if errors.As(err, &ua) {
		return "unauthorized"
	}
	switch ReasonOf(err) {
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonCredentialRejected:
		return "rejected"
	case ReasonHostNotAllowed:
		return "refused"
	case ReasonUnreachable:
		return "unreachable"
	case ReasonAPIDisabled:
		return "api_disabled"
	case ReasonOrgGone:
		return "org_gone"
	default:
		return "server_error"
	}
}

// guardedTransport is the only transport the client uses: HTTPS only, allow-listed hosts only
// (checked before anything is sent, and again at dial time), answers read whole (bounded) so that
// classification can see them even when x/oauth2 hides them.
type guardedTransport struct {
	c    *Client
	base http.RoundTripper
}

func (g *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p, _ := req.Context().Value(probeKey{}).(*probe)
	if p == nil {
		p = &probe{}
	}
	p.attempted = true
	start := time.Now()
	fail := func(err error) (*http.Response, error) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		p.err, p.dur = err, time.Since(start)
		return nil, err
	}
	if req.URL.Scheme != "https" {
		return fail(hostNotAllowed(req.URL.Host, "only https is allowed"))
	}
	if req.URL.User != nil {
		return fail(hostNotAllowed(req.URL.Host, "a URL with user info is never used"))
	}
	if _, err := g.c.allow.check(req.URL.Host); err != nil {
		return fail(err)
	}
	if err := g.c.limits.wait(req.Context(), req.URL.Host); err != nil {
		return fail(err)
	}
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		p.err, p.dur = err, time.Since(start)
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	p.dur = time.Since(start)
	if err != nil {
		p.err = err
		return nil, err
	}
	p.status, p.header, p.body = resp.StatusCode, resp.Header, body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}
