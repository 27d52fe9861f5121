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

// Client checks Salesforce orgs. It is safe for concurrent use; uses of one credential chain are
// serialised and re-read the stored credential before any exchange (see Chain), so a rotating
// refresh token is never spent twice; different chains run in parallel.
type Client struct {
	allow      *allowList
	http       *http.Client
	timeout    time.Duration
	apiVersion string
	observe    func(endpoint, outcome string, d time.Duration)
	lookup     func(ctx context.Context, host string) ([]netip.Addr, error)
	limits     *limits

	mu        sync.Mutex
	sessions  map[string]*session // by Chain.ChainID
	lastSweep time.Time
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

// Check authenticates (reusing a cached access token when it has one) and reads the org's facts.
// A first check of a credential costs two HTTP requests (token + one composite call), later
// checks one; an access token is refreshed once, and the call retried once, only when Salesforce
// answers 401.
//
// Every error is an *Error. On error the result is nil, with one exception: when Salesforce
// rotated the refresh token during this call, the result is non-nil and carries RotatedAuthURL
// even though err is set, because the old token is already dead. A later Check with the old URL
// also keeps returning RotatedAuthURL, and never presents the old token again, for as long as
// this Client remembers the credential.
func (c *Client) Check(ctx context.Context, cred Credential) (*CheckResult, error) {
	return c.CheckWith(ctx, cred, nil)
}

// CheckWith is Check of a credential given by value, with rotation handled at its only source:
// when the token answer carries a new refresh token, persist runs first, before the new access
// token is used, and the check goes on only when it succeeded. Stored credentials go through
// CheckChain instead, which re-reads them before every exchange.
func (c *Client) CheckWith(ctx context.Context, cred Credential, persist Persist) (*CheckResult, error) {
	cr, err := credentialValue(cred)
	if err != nil {
		return nil, err
	}
	if err := cr.validate(c); err != nil {
		return nil, err
	}
	ch := valueChain{cred: cr, persist: persist}
	res, err := c.CheckChain(ctx, ch, "")
	if res != nil && res.RotatedAuthURL != nil {
		// The rotated value is the same chain: a check with it finds this session. Once the
		// rotation is saved, the dead value's key goes.
		c.alias(ch.ChainID(), valueChain{cred: *res.RotatedAuthURL}.ChainID(), persist != nil && err == nil)
	}
	return res, err
}

// alias makes to name from's session too, dropping from when asked.
func (c *Client) alias(from, to string, dropFrom bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[from]; s != nil {
		c.sessions[to] = s
		if dropFrom && from != to {
			delete(c.sessions, from)
		}
	}
}

// CheckChain checks the org whose credential ch stores. storedVersion is the stored value's
// version as the caller last saw it (from a cache: "" when unknown): when it is the version the
// session's access token came from, the check uses that token and reads nothing; otherwise, and
// before any exchange, it loads the chain afresh under the chain's lock. Errors of ch's methods
// are returned as they are; every other error is an *Error.
func (c *Client) CheckChain(ctx context.Context, ch Chain, storedVersion string) (*CheckResult, error) {
	s, unlock, err := c.lockChain(ctx, ch.ChainID())
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx = withOrgLimiter(ctx, s.limiter)
	rotationsBefore := s.spent
	var facts OrgFacts
	err = c.use(ctx, s, ch, storedVersion, func() error {
		var ferr error
		facts, ferr = c.readFacts(ctx, s)
		return ferr
	})
	var ua *unauthorizedError
	if errors.As(err, &ua) {
		err = &Error{Reason: ReasonCredentialRejected, Code: ua.code, Message: "Salesforce refused a freshly issued access token: " +
			withCode(ua.msg, ua.code) + "; check that the user has the API Enabled permission and that the connected app's session policies allow API access"}
	}
	var res *CheckResult
	if rotated := s.rotatedSince(ch, rotationsBefore); rotated != nil || err == nil {
		res = &CheckResult{RotatedAuthURL: rotated}
	}
	if err != nil {
		if r := ReasonOf(err); r == ReasonCredentialRejected || r == ReasonOrgGone {
			s.access = "" // start afresh next time
		}
		return res, s.scrub(err)
	}
	res.Facts = facts
	return res, nil
}

// rotatedSince is the chain's newest auth URL when this call rotated it (spentBefore is the
// session's spent list when the call began), or, for a credential given by value, whenever the
// session holds a newer one than the value.
func (s *session) rotatedSince(ch Chain, spentBefore []string) *AuthURL {
	cur, ok := s.cred.(AuthURL)
	if !ok {
		return nil
	}
	if v, isValue := ch.(valueChain); isValue {
		if a, ok := v.cred.(AuthURL); ok && a != cur {
			return &cur
		}
		return nil
	}
	if len(s.spent) > 0 && (len(spentBefore) == 0 || s.spent[0] != spentBefore[0]) {
		return &cur
	}
	return nil
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
