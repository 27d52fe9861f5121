// Package sftest is a fake Salesforce shared by the tests, the benchmarks, the controllers'
// envtest suite and the local demo: one real HTTPS server on loopback that serves many orgs at
// once and answers as Salesforce does (status codes, JSON shapes, the Sforce-Limit-Info header,
// daily API consumption), as written down in docs/salesforce-protocol.md. Knobs make an org
// fail the ways real orgs fail (revoked or rotated refresh tokens, expired sessions, sandbox
// refresh, deletion, rate limits, API disabled, inactive user) and make the server itself fail
// (5xx, HTML, slow, dropped connections, redirects).
//
// The fake is at least as strict as Salesforce: where Salesforce punishes a misuse, the fake
// punishes it the same way and counts it, so that a test can assert it never happened. With
// refresh-token rotation on (Org.SetRotateRefreshTokens), it enforces both of Salesforce's
// rules for one-time-use refresh tokens:
//   - reuse detection: presenting a spent refresh token (one a successful refresh rotated away)
//     revokes its credential chain, the chain's current refresh token and every access token
//     issued from it, and answers invalid_grant "expired access/refresh token"
//     (Org.SetReuseDetection; counted by Org.SpentTokensPresented and Org.ChainsRevoked);
//   - concurrent refresh refusal: a refresh presenting a token that another request is still
//     refreshing is refused with invalid_grant "token request is already being processed",
//     and spends nothing (Org.SetConcurrentRefreshRefusal; counted by
//     Org.ConcurrentRefreshesRefused).
//
// A chain is one login's line of refresh tokens: each fresh grant (AddOrg's token, Reauthorize,
// an authorization_code exchange, RefreshSandbox) starts one, each rotation moves it on. Both
// rules are on by default (Server.SetDefaultStrictRotation) and only act while the org rotates.
// Their counters survive ResetCalls: they cover the server's whole life.
//
// All orgs share one host (127.0.0.1:port); the fake tells them apart by refresh token, access
// token, authorization code or JWT issuer. Tokens are random (crypto/rand) and use base64url
// characters only, so they are valid inside auth URLs.
//
// It must never log or print a token (the HTTP server's error log is discarded, and nothing else
// here logs), never listen anywhere but the address it is given (loopback by default), and never
// be reachable from production code paths: the operator talks to it only when told to trust its
// host and CA explicitly.
package sftest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// FailMode is how FailNext makes the next requests fail.
type FailMode int

const (
	// Fail5xx answers 500 UNKNOWN_EXCEPTION in Salesforce's JSON error shape.
	Fail5xx FailMode = iota + 1
	// FailHTML answers 503 with an HTML maintenance page.
	FailHTML
	// FailSlow waits SetSlowDelay (default 5s, cut short when the client gives up) and then answers
	// normally.
	FailSlow
	// FailDrop hijacks the connection and closes it without answering.
	FailDrop
	// failRedirect answers 302 to a location (see RedirectNext).
	failRedirect
)

type failure struct {
	mode     FailMode
	location string
}

// Server is a fake Salesforce. It is safe for concurrent use.
type Server struct {
	ts        *httptest.Server
	url       string // https://<advertised host:port>
	caPEM     []byte
	pool      *x509.CertPool
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	orgs     []*Org
	refresh  map[string]*refreshGrant // every refresh token ever issued
	access   map[string]*accessGrant
	inflight map[string]int       // refresh tokens of refresh_token grants accepted and not yet answered
	codes    map[string]*authCode // unused authorization codes
	pending  map[string]*approval // logins waiting on the "Allow Access?" page, by ticket
	otps     map[string]*Org      // unused frontdoor links (singleaccess)
	broken   map[string]FailMode  // FailEndpoint
	apps     map[string]*Org      // JWT consumer key
	calls    map[string]int
	total    int
	perOrg   map[*Org]int
	failures []failure
	slow     time.Duration
	issued   []string // every secret ever issued or configured, for IssuedSecrets

	checkDelay time.Duration // SetCheckDelay
	latency    time.Duration // SetLatency
	logging    bool          // StartCallLog
	log        []Call

	strictRotation bool // SetDefaultStrictRotation: the rules' default for orgs added later
}

type accessGrant struct {
	org   *Org
	epoch int    // dead once the org's epoch moves on
	chain *chain // the credential chain it was issued from (nil: JWT or frontdoor); dead once it is revoked
}

// liveLocked says whether the access token still opens a session (its org's deletion aside).
func (g *accessGrant) liveLocked() bool {
	return g.epoch == g.org.epoch && (g.chain == nil || !g.chain.revoked)
}

// NewServer starts a fake Salesforce on 127.0.0.1 (a free port) and closes it when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := NewStandaloneServer("127.0.0.1:0")
	if err != nil {
		t.Fatalf("sftest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewStandaloneServer starts a fake Salesforce on addr (such as 127.0.0.1:8443) with a fresh CA
// and a certificate for that address, localhost, 127.0.0.1, ::1 and dnsNames (host names the
// caller maps to addr, for orgs given such an instance URL). The caller must Close it.
func NewStandaloneServer(addr string, dnsNames ...string) (*Server, error) {
	return NewAdvertisedServer(addr, "", dnsNames...)
}

// NewAdvertisedServer is NewStandaloneServer for a fake that clients reach at another address
// than the one it listens on: a Kubernetes Service in front of it, say. advertise (host:port, ""
// for the listening address) is what URL, Host, auth URLs and instance URLs name, and its host is
// in the certificate.
func NewAdvertisedServer(addr, advertise string, dnsNames ...string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("sftest: advertised address %q: %w", advertise, err)
	}
	caPEM, leaf, err := newCertificates(host, dnsNames)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	s := &Server{
		caPEM:    caPEM,
		pool:     x509.NewCertPool(),
		done:     make(chan struct{}),
		refresh:  map[string]*refreshGrant{},
		access:   map[string]*accessGrant{},
		inflight: map[string]int{},
		codes:    map[string]*authCode{},
		pending:  map[string]*approval{},
		otps:     map[string]*Org{},
		broken:   map[string]FailMode{},
		apps:     map[string]*Org{},
		calls:    map[string]int{},
		perOrg:   map[*Org]int{},
		slow:     5 * time.Second,

		strictRotation: true,
	}
	s.pool.AppendCertsFromPEM(caPEM)
	ts := httptest.NewUnstartedServer(s)
	_ = ts.Listener.Close()
	ts.Listener = ln
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS noise from refused clients; never tokens
	ts.StartTLS()
	s.ts = ts
	s.url = "https://" + advertise
	return s, nil
}

// URL is the server's base URL: https://127.0.0.1:port, or the advertised address.
func (s *Server) URL() string { return s.url }

// ListenAddr is the address the server listens on (host:port), which differs from Host's when
// it was started with NewAdvertisedServer.
func (s *Server) ListenAddr() string { return s.ts.Listener.Addr().String() }

// Host is host:port, as it appears in auth URLs and in an allowed-hosts entry.
func (s *Server) Host() string { return strings.TrimPrefix(s.url, "https://") }

// CertPool trusts the server's CA.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// CACertPEM is the server's CA certificate in PEM.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Close stops the server, cutting short any FailSlow wait. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// FailNext makes the next n requests, whatever their endpoint, fail in mode.
func (s *Server) FailNext(n int, mode FailMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{mode: mode})
	}
}

// RedirectNext makes the next n requests answer 302 Found to location.
func (s *Server) RedirectNext(n int, location string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{mode: failRedirect, location: location})
	}
}

// SetSlowDelay sets how long a FailSlow request waits (default 5s).
func (s *Server) SetSlowDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// Calls is the number of HTTP requests received for endpoint since the last ResetCalls: the
// Name of one of Endpoints, or "other". The subrequests of a composite call are not HTTP requests and
// are not counted.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// TotalCalls is the number of HTTP requests received since the last ResetCalls.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// CallsFor is the number of HTTP requests attributed to o (by its tokens, codes or JWT issuer)
// since the last ResetCalls.
func (s *Server) CallsFor(o *Org) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perOrg[o]
}

// IssuedSecrets returns every secret the fake ever issued or was given: refresh tokens, access
// tokens, authorization codes and client secrets. It is for tests proving that none of them
// leaked into logs, events or status; never print what it returns.
func (s *Server) IssuedSecrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// ResetCalls zeroes every call counter: Calls, TotalCalls and CallsFor. It leaves the misuse
// counters alone (SpentTokensPresented, ConcurrentRefreshesRefused, ChainsRevoked, of the server
// and of each org): they count over the server's whole life, so that a test can assert that a
// misuse never happened during a run however often the call counters were reset.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.total = 0
	s.perOrg = map[*Org]int{}
}

// ServeHTTP counts the request, applies any injected failure, and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	// Salesforce answers a path with doubled slashes as the path itself: the CLI asks for
	// //services/data/... after `sf org login access-token`, which stores the instance URL with
	// a trailing slash (docs/salesforce-protocol.md, "Doubled slashes").
	if strings.Contains(r.URL.Path, "//") {
		r.URL.Path, r.URL.RawPath = collapseSlashes(r.URL.Path), ""
	}
	ep := endpointOf(r.URL.Path)
	var body []byte
	switch {
	case ep == "token" || ep == "revoke":
		_ = r.ParseForm()
	case r.Method == http.MethodPost || r.Method == http.MethodPatch:
		body, _ = io.ReadAll(r.Body)
	}

	s.mu.Lock()
	o := s.attributeLocked(r, ep)
	defer s.logCall(ep, o, start)
	// A refresh is in flight from now (before any injected wait) until its answer is computed;
	// the deferred release covers every path that computes none (failures, a client that gave up).
	held, concurrent := s.holdLocked(r, ep)
	defer func() {
		if held != "" {
			s.mu.Lock()
			s.releaseLocked(held)
			s.mu.Unlock()
		}
	}()
	if o != nil {
		s.perOrg[o]++
	}
	s.calls[ep]++
	s.total++
	var f *failure
	switch {
	case len(s.failures) > 0:
		f = &s.failures[0]
		s.failures = s.failures[1:]
	case o != nil && o.failAlways != 0:
		f = &failure{mode: o.failAlways}
	}
	slow, delay := s.slow, s.checkDelayLocked(ep)
	s.mu.Unlock()

	if !s.pause(r, delay) {
		// The client gave up (or the server is closing): drop the connection rather than let
		// net/http answer an empty 200, which a client could take for Salesforce's answer.
		panic(http.ErrAbortHandler)
	}
	if f != nil {
		switch f.mode {
		case FailSlow:
			if !s.pause(r, slow) {
				panic(http.ErrAbortHandler) // as above
			}
		case Fail5xx:
			restErrorReply(http.StatusInternalServerError, "UNKNOWN_EXCEPTION",
				"An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)").write(w)
			return
		case FailHTML:
			reply{status: http.StatusServiceUnavailable, ctype: "text/html;charset=UTF-8", body: []byte(maintenancePage)}.write(w)
			return
		case FailDrop:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		case failRedirect:
			rp := reply{status: http.StatusFound, ctype: "text/html;charset=UTF-8", body: []byte(`<html><body>Moved</body></html>`)}
			rp.header = http.Header{"Location": {f.location}}
			rp.write(w)
			return
		}
	}

	s.mu.Lock()
	rp := s.routeLocked(r, ep, body, concurrent)
	s.releaseLocked(held)
	held = ""
	s.mu.Unlock()
	rp.write(w)
}

// reply is an answer computed under the lock and written after it.
type reply struct {
	status int
	ctype  string
	body   []byte
	header http.Header
}

func (rp reply) write(w http.ResponseWriter) {
	for k, v := range rp.header {
		w.Header()[k] = v
	}
	if rp.ctype != "" {
		w.Header().Set("Content-Type", rp.ctype)
	}
	w.WriteHeader(rp.status)
	_, _ = w.Write(rp.body)
}

func (rp *reply) set(k, v string) {
	if rp.header == nil {
		rp.header = http.Header{}
	}
	rp.header.Set(k, v)
}

const maintenancePage = `<!DOCTYPE html><html><head><title>Salesforce - Maintenance</title></head>` +
	`<body><h1>Down for maintenance</h1><p>Salesforce is temporarily unavailable. Please try again later.</p></body></html>`

// dataNotAvailablePage is what a deleted org's host serves, to the token endpoint and the REST
// API alike. Salesforce's status for it varies; the fake uses 404.
const dataNotAvailablePage = `<!DOCTYPE html><html><head><title>Data Not Available</title></head>` +
	`<body><h2>Data Not Available</h2><p>The data you were trying to access could not be found. ` +
	`It may be due to another user deleting the data or a system error.</p></body></html>`

func orgGoneReply() reply {
	return reply{status: http.StatusNotFound, ctype: "text/html;charset=UTF-8", body: []byte(dataNotAvailablePage)}
}

// newCertificates makes a CA and a server certificate for host, localhost, 127.0.0.1, ::1 and
// dnsNames.
func newCertificates(host string, dnsNames []string) (caPEM []byte, leaf tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sftest fake Salesforce CA", Organization: []string{"sftest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     append([]string{"localhost"}, dnsNames...),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leaf = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if caPEM == nil {
		return nil, tls.Certificate{}, fmt.Errorf("sftest: cannot encode the CA certificate")
	}
	return caPEM, leaf, nil
}

// collapseSlashes replaces every run of slashes in p with one.
func collapseSlashes(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
