package salesforce_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func newClient(t testing.TB, s *sftest.Server, mod ...func(*salesforce.Options)) *salesforce.Client {
	t.Helper()
	o := salesforce.Options{AllowedHosts: []string{s.Host()}, RootCAs: s.CertPool(), Timeout: 5 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	c, err := salesforce.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// authURL parses an org's current auth URL. Failures never print the URL.
// rotatingOrg is a fake org that rotates its refresh token on every refresh, a client of the
// fake, and the org's auth URL as it is before any rotation.
func rotatingOrg(t testing.TB) (*sftest.Server, *sftest.Org, *salesforce.Client, salesforce.AuthURL) {
	t.Helper()
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	o.SetRotateRefreshTokens(true)
	return s, o, newClient(t, s), authURL(t, o)
}

func authURL(t testing.TB, o *sftest.Org) salesforce.AuthURL {
	t.Helper()
	a, err := salesforce.ParseAuthURL(o.AuthURL())
	if err != nil {
		t.Fatalf("the fake's auth URL does not parse: %v", err)
	}
	return a
}

// wantError checks an error's reason and retryability, and that it leaks none of the secrets.
func wantError(t *testing.T, err error, reason salesforce.Reason, retryable bool, secrets ...string) *salesforce.Error {
	t.Helper()
	var e *salesforce.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *salesforce.Error %s, got %T %v", reason, err, err)
	}
	if e.Reason != reason || e.Retryable != retryable {
		t.Fatalf("want %s (retryable %v), got %s (retryable %v): %s", reason, retryable, e.Reason, e.Retryable, e.Message)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error message leaks a credential")
		}
	}
	return e
}

func check(t *testing.T, c *salesforce.Client, cred salesforce.Credential) *salesforce.CheckResult {
	t.Helper()
	res, err := c.Check(context.Background(), cred)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

func TestCheckCallCounts(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Name: "Acme Dev", Kind: sftest.DeveloperEdition, DevHub: true})
	c := newClient(t, s)
	a := authURL(t, o)

	res := check(t, c, a)
	if got := s.TotalCalls(); got > 2 || s.Calls("token") != 1 || s.Calls("composite") != 1 {
		t.Fatalf("first check: %d calls (token %d, composite %d), want token + composite", got, s.Calls("token"), s.Calls("composite"))
	}
	f := res.Facts
	switch {
	case f.OrgID != o.OrgID() || f.UserID != o.UserID() || f.Username != o.Username():
		t.Errorf("identity: %+v", f)
	case f.Name != "Acme Dev" || f.Edition != "Developer Edition" || f.InstanceName != "NA173" || f.InstanceURL != s.URL():
		t.Errorf("org: %+v", f)
	case !f.IsDevHub || f.IsSandbox || f.IsScratch || f.TrialExpirationDate != nil:
		t.Errorf("kind: %+v", f)
	case f.APIRequestsMax != 15000 || f.APIRequestsRemaining != 15000-1:
		t.Errorf("limits: %d/%d", f.APIRequestsRemaining, f.APIRequestsMax)
	case res.RotatedAuthURL != nil:
		t.Errorf("unexpected rotation")
	}

	for i := range 3 {
		s.ResetCalls()
		res = check(t, c, a)
		if s.TotalCalls() != 1 || s.Calls("composite") != 1 {
			t.Fatalf("steady-state check %d: %d calls, want exactly 1 composite", i, s.TotalCalls())
		}
		if s.CallsFor(o) != 1 {
			t.Fatalf("calls attributed to the org: %d", s.CallsFor(o))
		}
	}
	if used, _ := o.APIUsage(); used != 4 || res.Facts.APIRequestsRemaining != 15000-4 {
		t.Errorf("API usage %d, remaining %d", used, res.Facts.APIRequestsRemaining)
	}
}

func TestCheckFactsByKind(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s)
	tests := []struct {
		spec                         sftest.OrgSpec
		sandbox, scratch, devhub     bool
		edition, namespace, instance string
	}{
		{sftest.OrgSpec{Kind: sftest.Production}, false, false, false, "Enterprise Edition", "", "NA224"},
		{sftest.OrgSpec{Kind: sftest.Sandbox}, true, false, false, "Enterprise Edition", "", "CS42"},
		{sftest.OrgSpec{Kind: sftest.Scratch, NamespacePrefix: "acme"}, false, true, false, "Developer Edition", "acme", "CS8"},
		{sftest.OrgSpec{Kind: sftest.DeveloperEdition, Edition: "Unlimited Edition"}, false, false, false, "Unlimited Edition", "", "NA173"},
		{sftest.OrgSpec{Kind: sftest.Production, DevHub: true}, false, false, true, "Enterprise Edition", "", "NA224"},
	}
	for _, tt := range tests {
		t.Run(string(tt.spec.Kind), func(t *testing.T) {
			o := s.AddOrg(tt.spec)
			f := check(t, c, authURL(t, o)).Facts
			if f.IsSandbox != tt.sandbox || f.IsScratch != tt.scratch || f.IsDevHub != tt.devhub ||
				f.Edition != tt.edition || f.NamespacePrefix != tt.namespace || f.InstanceName != tt.instance {
				t.Fatalf("facts %+v", f)
			}
			if tt.scratch != (f.TrialExpirationDate != nil) {
				t.Fatalf("trial expiration %v", f.TrialExpirationDate)
			}
			if tt.scratch && !f.TrialExpirationDate.Equal(o.Spec().TrialExpirationDate) {
				t.Fatalf("trial expiration %v, want %v", f.TrialExpirationDate, o.Spec().TrialExpirationDate)
			}
		})
	}
}

func TestExpiredSessionRefreshesOnceAndRetries(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s)
	a := authURL(t, o)
	check(t, c, a)

	o.ExpireAccessTokens()
	s.ResetCalls()
	check(t, c, a)
	if s.Calls("composite") != 2 || s.Calls("token") != 1 || s.TotalCalls() != 3 {
		t.Fatalf("after expiry: composite %d, token %d; want 401, one refresh, one retry", s.Calls("composite"), s.Calls("token"))
	}
	s.ResetCalls()
	check(t, c, a)
	if s.TotalCalls() != 1 {
		t.Fatalf("the refreshed token is not reused: %d calls", s.TotalCalls())
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	s, o, c, old := rotatingOrg(t)

	res := check(t, c, old)
	if res.RotatedAuthURL == nil {
		t.Fatal("rotation not reported")
	}
	if res.RotatedAuthURL.Reveal() != o.AuthURL() {
		t.Fatalf("rotated URL %v is not the org's current one", res.RotatedAuthURL)
	}
	rotated := *res.RotatedAuthURL

	// The old URL is dead at Salesforce, but this client still knows where it went.
	s.ResetCalls()
	res = check(t, c, old)
	if res.RotatedAuthURL == nil || *res.RotatedAuthURL != rotated || s.TotalCalls() != 1 {
		t.Fatalf("a check with the old URL must repeat the rotation without a token call (calls %d)", s.TotalCalls())
	}
	if n := o.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}

	s.ResetCalls()
	res = check(t, c, rotated)
	if res.RotatedAuthURL != nil || s.TotalCalls() != 1 {
		t.Fatalf("check with the persisted URL: rotated %v, calls %d", res.RotatedAuthURL, s.TotalCalls())
	}

	o.ExpireAccessTokens()
	res = check(t, c, rotated)
	if res.RotatedAuthURL == nil || res.RotatedAuthURL.Reveal() != o.AuthURL() || *res.RotatedAuthURL == rotated {
		t.Fatal("a re-login that rotates again must report the newest URL")
	}
}

func TestRotationIsReportedEvenWhenTheCheckFails(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	o.SetRotateRefreshTokens(true)
	o.SetRateLimited(true)
	old := authURL(t, o)
	res, err := newClient(t, s).Check(context.Background(), old)
	wantError(t, err, salesforce.ReasonRateLimited, true)
	if res == nil || res.RotatedAuthURL == nil || res.RotatedAuthURL.Reveal() != o.AuthURL() {
		t.Fatal("the rotated URL must come back with the error")
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(s *sftest.Server, o *sftest.Org)
		cached    bool // check once first, so the failure hits the steady state
		reason    salesforce.Reason
		retryable bool
		code      string
		inMessage string
		calls     map[string]int
	}{
		{"revoked refresh token", func(s *sftest.Server, o *sftest.Org) { o.RevokeRefreshTokens() }, false,
			salesforce.ReasonCredentialRejected, false, "invalid_grant", "expired access/refresh token", map[string]int{"token": 1}},
		{"revoked while cached", func(s *sftest.Server, o *sftest.Org) { o.RevokeRefreshTokens() }, true,
			salesforce.ReasonCredentialRejected, false, "invalid_grant", "expired access/refresh token", map[string]int{"composite": 1, "token": 1}},
		{"sandbox refreshed", func(s *sftest.Server, o *sftest.Org) { o.RefreshSandbox() }, true,
			salesforce.ReasonCredentialRejected, false, "invalid_grant", "sf org auth show-sfdx-auth-url", map[string]int{"composite": 1, "token": 1}},
		{"inactive user", func(s *sftest.Server, o *sftest.Org) { o.SetInactiveUser(true) }, true,
			salesforce.ReasonCredentialRejected, false, "invalid_grant", "inactive user", nil},
		{"deleted org", func(s *sftest.Server, o *sftest.Org) { o.Delete() }, false,
			salesforce.ReasonOrgGone, false, "DATA_NOT_AVAILABLE", "no longer exists", map[string]int{"token": 1}},
		{"deleted org while cached", func(s *sftest.Server, o *sftest.Org) { o.Delete() }, true,
			salesforce.ReasonOrgGone, false, "DATA_NOT_AVAILABLE", "no longer exists", map[string]int{"composite": 1}},
		{"REST rate limit", func(s *sftest.Server, o *sftest.Org) { o.SetRateLimited(true) }, true,
			salesforce.ReasonRateLimited, true, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", map[string]int{"composite": 1}},
		{"login rate limit", func(s *sftest.Server, o *sftest.Org) { o.SetLoginRateLimited(true) }, false,
			salesforce.ReasonRateLimited, true, "rate_limit_exceeded", "rate limit exceeded", map[string]int{"token": 1}},
		{"API disabled", func(s *sftest.Server, o *sftest.Org) { o.SetAPIDisabled(true) }, true,
			salesforce.ReasonAPIDisabled, false, "API_DISABLED_FOR_ORG", "The REST API is not enabled", map[string]int{"composite": 1}},
		{"5xx at the token endpoint", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.Fail5xx) }, false,
			salesforce.ReasonServerError, true, "", "HTTP 500", map[string]int{"token": 1}},
		{"5xx at the REST API", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.Fail5xx) }, true,
			salesforce.ReasonServerError, true, "UNKNOWN_EXCEPTION", "An unexpected error occurred", map[string]int{"composite": 1}},
		{"HTML at the token endpoint", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.FailHTML) }, false,
			salesforce.ReasonServerError, true, "", "HTML page", nil},
		{"HTML at the REST API", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.FailHTML) }, true,
			salesforce.ReasonServerError, true, "", "HTML page", nil},
		{"dropped connection at the token endpoint", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.FailDrop) }, false,
			salesforce.ReasonUnreachable, true, "", "cannot reach", nil},
		{"dropped connection at the REST API", func(s *sftest.Server, o *sftest.Org) { s.FailNext(1, sftest.FailDrop) }, true,
			salesforce.ReasonUnreachable, true, "", "cannot reach", nil},
		{"slow token endpoint", func(s *sftest.Server, o *sftest.Org) { s.SetSlowDelay(5 * time.Second); s.FailNext(1, sftest.FailSlow) }, false,
			salesforce.ReasonUnreachable, true, "", "did not answer within", nil},
		{"slow REST API", func(s *sftest.Server, o *sftest.Org) { s.SetSlowDelay(5 * time.Second); s.FailNext(1, sftest.FailSlow) }, true,
			salesforce.ReasonUnreachable, true, "", "did not answer within", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sftest.NewServer(t)
			o := s.AddOrg(sftest.OrgSpec{})
			c := newClient(t, s, func(o *salesforce.Options) { o.Timeout = 2 * time.Second }) // above a loaded machine's answers, below the 5 s slow delay
			a := authURL(t, o)
			if tt.cached {
				check(t, c, a)
			}
			tt.setup(s, o)
			s.ResetCalls()
			start := time.Now()
			_, err := c.Check(context.Background(), a)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("the check took %v", d)
			}
			e := wantError(t, err, tt.reason, tt.retryable, a.RefreshToken)
			if e.Code != tt.code {
				t.Errorf("code %q, want %q", e.Code, tt.code)
			}
			if !strings.Contains(e.Message, tt.inMessage) {
				t.Errorf("message %q does not contain %q", e.Message, tt.inMessage)
			}
			if salesforce.ReasonOf(err) != tt.reason || salesforce.IsRetryable(err) != tt.retryable {
				t.Errorf("ReasonOf/IsRetryable disagree")
			}
			for ep, n := range tt.calls {
				if got := s.Calls(ep); got != n {
					t.Errorf("%s calls: %d, want %d", ep, got, n)
				}
			}
			if tt.calls != nil {
				sum := 0
				for _, n := range tt.calls {
					sum += n
				}
				if s.TotalCalls() != sum {
					t.Errorf("total calls %d, want %d", s.TotalCalls(), sum)
				}
			}
		})
	}
}

func TestRateLimitNeverReauthenticates(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{DailyAPIMax: 3})
	c := newClient(t, s)
	a := authURL(t, o)
	for range 3 {
		check(t, c, a)
	}
	s.ResetCalls()
	for range 2 {
		_, err := c.Check(context.Background(), a)
		wantError(t, err, salesforce.ReasonRateLimited, true)
	}
	if s.Calls("token") != 0 || s.Calls("composite") != 2 {
		t.Fatalf("token %d, composite %d", s.Calls("token"), s.Calls("composite"))
	}
}

func TestClientCredentialsRejected(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s)
	o := s.AddOrg(sftest.OrgSpec{ClientID: "3MVG9connectedApp", ClientSecret: "s3cretValue99"})
	a := authURL(t, o)
	check(t, c, a)

	wrongID := a
	wrongID.ClientID = "SomeOtherApp"
	_, err := c.Check(context.Background(), wrongID)
	if e := wantError(t, err, salesforce.ReasonCredentialRejected, false, a.RefreshToken, a.ClientSecret); e.Code != "invalid_client_id" {
		t.Errorf("code %q", e.Code)
	}
	wrongSecret := a
	wrongSecret.ClientSecret = "notTheSecret1"
	_, err = c.Check(context.Background(), wrongSecret)
	if e := wantError(t, err, salesforce.ReasonCredentialRejected, false, a.RefreshToken, wrongSecret.ClientSecret); e.Code != "invalid_client" {
		t.Errorf("code %q", e.Code)
	}
}

func TestCanceledContext(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newClient(t, s).Check(ctx, authURL(t, o))
	wantError(t, err, salesforce.ReasonUnreachable, true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(err, context.Canceled) is false: %v", err)
	}
}

// trap is a plain TCP listener standing for an attacker's host or an in-cluster address: the
// tests assert that it never sees a connection.
type trap struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newTrap(t *testing.T) *trap {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{ln: ln}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); tr.wg.Wait() })
	return tr
}

func (tr *trap) addr() string { return tr.ln.Addr().String() }

// assertUntouched dials the trap once itself and waits for that connection, so every connection
// made before it has been counted too; only the sentinel may have arrived.
func (tr *trap) assertUntouched(t *testing.T) {
	t.Helper()
	c, err := net.Dial("tcp", tr.addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for tr.conns.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := tr.conns.Load(); n != 1 {
		t.Fatalf("the refused host received %d connection(s)", n-1)
	}
}

func TestHostAllowList(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s)

	t.Run("auth URL host outside the list", func(t *testing.T) {
		tr := newTrap(t)
		o := s.AddOrg(sftest.OrgSpec{})
		a := authURL(t, o)
		a.Host = tr.addr()
		_, err := c.Check(context.Background(), a)
		e := wantError(t, err, salesforce.ReasonHostNotAllowed, false, a.RefreshToken)
		if !strings.Contains(e.Message, "refusing to send the refresh token to "+tr.addr()) {
			t.Errorf("message %q", e.Message)
		}
		tr.assertUntouched(t)
	})

	t.Run("foreign domain", func(t *testing.T) {
		o := s.AddOrg(sftest.OrgSpec{})
		a := authURL(t, o)
		a.Host = "acme.my.salesforce.com.evil.example"
		_, err := newClient(t, s).Check(context.Background(), a)
		wantError(t, err, salesforce.ReasonHostNotAllowed, false, a.RefreshToken)
	})

	t.Run("instance_url outside the list", func(t *testing.T) {
		tr := newTrap(t)
		o := s.AddOrg(sftest.OrgSpec{})
		o.SetInstanceURL("https://" + tr.addr())
		s.ResetCalls()
		_, err := c.Check(context.Background(), authURL(t, o))
		wantError(t, err, salesforce.ReasonHostNotAllowed, false)
		if s.Calls("token") != 1 || s.Calls("composite") != 0 {
			t.Errorf("calls: token %d composite %d", s.Calls("token"), s.Calls("composite"))
		}
		tr.assertUntouched(t)
	})

	t.Run("instance_url without https", func(t *testing.T) {
		o := s.AddOrg(sftest.OrgSpec{})
		o.SetInstanceURL("http://" + s.Host())
		_, err := c.Check(context.Background(), authURL(t, o))
		wantError(t, err, salesforce.ReasonHostNotAllowed, false)
	})

	t.Run("redirect at the token endpoint", func(t *testing.T) {
		tr := newTrap(t)
		o := s.AddOrg(sftest.OrgSpec{})
		s.RedirectNext(1, "https://"+tr.addr()+"/services/oauth2/token")
		_, err := c.Check(context.Background(), authURL(t, o))
		e := wantError(t, err, salesforce.ReasonServerError, false)
		if !strings.Contains(e.Message, "never followed") || !strings.Contains(e.Message, tr.addr()) {
			t.Errorf("message %q", e.Message)
		}
		tr.assertUntouched(t)
	})

	t.Run("redirect at the REST API", func(t *testing.T) {
		tr := newTrap(t)
		o := s.AddOrg(sftest.OrgSpec{})
		a := authURL(t, o)
		check(t, c, a)
		s.RedirectNext(1, "https://"+tr.addr()+"/services/data/v65.0/composite")
		_, err := c.Check(context.Background(), a)
		wantError(t, err, salesforce.ReasonServerError, false)
		tr.assertUntouched(t)
	})

	t.Run("JWT login URL outside the list", func(t *testing.T) {
		tr := newTrap(t)
		o := s.AddOrg(sftest.OrgSpec{})
		key, user, pem := o.JWT()
		_, err := c.Check(context.Background(), salesforce.JWTBearer{ConsumerKey: key, Username: user, PrivateKeyPEM: pem, LoginURL: "https://" + tr.addr()})
		wantError(t, err, salesforce.ReasonHostNotAllowed, false)
		tr.assertUntouched(t)
	})

	t.Run("the fake itself needs an explicit entry", func(t *testing.T) {
		o := s.AddOrg(sftest.OrgSpec{})
		strict, err := salesforce.NewClient(salesforce.Options{RootCAs: s.CertPool()})
		if err != nil {
			t.Fatal(err)
		}
		s.ResetCalls()
		_, err = strict.Check(context.Background(), authURL(t, o))
		wantError(t, err, salesforce.ReasonHostNotAllowed, false)
		if s.TotalCalls() != 0 {
			t.Errorf("%d calls reached the fake", s.TotalCalls())
		}
	})
}

func TestUntrustedCertificate(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	c, err := salesforce.NewClient(salesforce.Options{AllowedHosts: []string{s.Host()}}) // system roots
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), authURL(t, o))
	if e := wantError(t, err, salesforce.ReasonUnreachable, false); !strings.Contains(e.Message, "not trusted") {
		t.Errorf("message %q", e.Message)
	}
}

func TestJWTBearer(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s)
	prod := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	key, user, pem := prod.JWT()
	cred := salesforce.JWTBearer{ConsumerKey: key, Username: user, PrivateKeyPEM: pem, LoginURL: s.URL()}

	res := check(t, c, cred)
	if res.Facts.Username != user || res.Facts.OrgID != prod.OrgID() || res.RotatedAuthURL != nil {
		t.Fatalf("facts %+v", res.Facts)
	}
	if s.Calls("token") != 1 || s.Calls("composite") != 1 {
		t.Fatalf("first JWT check: token %d composite %d", s.Calls("token"), s.Calls("composite"))
	}
	s.ResetCalls()
	check(t, c, &cred)
	if s.TotalCalls() != 1 {
		t.Fatalf("steady state: %d calls", s.TotalCalls())
	}
	prod.ExpireAccessTokens()
	s.ResetCalls()
	check(t, c, cred)
	if s.Calls("token") != 1 || s.Calls("composite") != 2 {
		t.Fatalf("after expiry: token %d composite %d", s.Calls("token"), s.Calls("composite"))
	}

	sandbox := s.AddOrg(sftest.OrgSpec{Kind: sftest.Sandbox})
	skey, suser, spem := sandbox.JWT()
	sb := salesforce.JWTBearer{ConsumerKey: skey, Username: suser, PrivateKeyPEM: spem, Sandbox: true, LoginURL: s.URL()}
	if f := check(t, c, sb).Facts; !f.IsSandbox {
		t.Fatalf("sandbox facts %+v", f)
	}
	if sb.Audience() != "https://test.salesforce.com" || cred.Audience() != "https://login.salesforce.com" {
		t.Fatal("audiences")
	}

	rejects := []struct {
		name string
		cred salesforce.JWTBearer
		code string
	}{
		{"sandbox asserted with the production audience", salesforce.JWTBearer{ConsumerKey: skey, Username: suser, PrivateKeyPEM: spem, LoginURL: s.URL()}, "invalid_grant"},
		{"wrong user", salesforce.JWTBearer{ConsumerKey: key, Username: "someone@else.example.com", PrivateKeyPEM: pem, LoginURL: s.URL()}, "invalid_grant"},
		{"unknown consumer key", salesforce.JWTBearer{ConsumerKey: "3MVG9unknown", Username: user, PrivateKeyPEM: pem, LoginURL: s.URL()}, "invalid_client_id"},
		{"key of another app", salesforce.JWTBearer{ConsumerKey: key, Username: user, PrivateKeyPEM: spem, LoginURL: s.URL()}, "invalid_grant"},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Check(context.Background(), tt.cred)
			if e := wantError(t, err, salesforce.ReasonCredentialRejected, false); e.Code != tt.code {
				t.Fatalf("code %q, want %q (%s)", e.Code, tt.code, e.Message)
			}
		})
	}

	t.Run("slow login host times out", func(t *testing.T) {
		fast := newClient(t, s, func(o *salesforce.Options) { o.Timeout = 300 * time.Millisecond })
		s.SetSlowDelay(5 * time.Second)
		s.FailNext(1, sftest.FailSlow)
		start := time.Now()
		_, err := fast.Check(context.Background(), cred)
		wantError(t, err, salesforce.ReasonUnreachable, true)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the JWT token call ignored the timeout: %v", d)
		}
	})

	s.ResetCalls()
	_, err := c.Check(context.Background(), salesforce.JWTBearer{ConsumerKey: key, Username: user, PrivateKeyPEM: []byte("not a key"), LoginURL: s.URL()})
	wantError(t, err, salesforce.ReasonAuthConfigInvalid, false)
	if s.TotalCalls() != 0 {
		t.Fatalf("an unusable key still cost %d calls", s.TotalCalls())
	}
}

func TestConcurrentChecks(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s)
	var orgs []*sftest.Org
	var creds []salesforce.AuthURL
	for i := range 4 {
		o := s.AddOrg(sftest.OrgSpec{})
		o.SetRotateRefreshTokens(i%2 == 0)
		orgs = append(orgs, o)
		creds = append(creds, authURL(t, o))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if _, err := c.Check(context.Background(), creds[g%len(creds)]); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent check: %v", err)
	}
	if s.Calls("token") != len(orgs) {
		t.Fatalf("token calls %d, want one per credential (%d)", s.Calls("token"), len(orgs))
	}
}

func TestForget(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s)
	a := authURL(t, o)
	check(t, c, a)
	ch := newMemChain("ns/a-auth/sfdxAuthUrl", a)
	if _, err := c.CheckChain(context.Background(), ch, ""); err != nil {
		t.Fatal(err)
	}
	c.Forget(ch.ChainID())
	s.ResetCalls()
	if _, err := c.CheckChain(context.Background(), ch, ""); err != nil {
		t.Fatal(err)
	}
	if s.TotalCalls() != 2 {
		t.Fatalf("after Forget: %d calls, want a fresh login", s.TotalCalls())
	}
	c.Forget("no such chain")
}

func TestObserve(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	var mu sync.Mutex
	var seen []string
	c := newClient(t, s, func(opts *salesforce.Options) {
		opts.Observe = func(endpoint, outcome string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if d <= 0 {
				t.Errorf("duration %v", d)
			}
			seen = append(seen, endpoint+":"+outcome)
		}
	})
	a := authURL(t, o)
	check(t, c, a)
	o.ExpireAccessTokens()
	check(t, c, a)
	o.SetRateLimited(true)
	_, _ = c.Check(context.Background(), a)
	want := "token:ok composite:ok composite:unauthorized token:ok composite:ok composite:rate_limited"
	if got := strings.Join(seen, " "); got != want {
		t.Fatalf("observed %q, want %q", got, want)
	}
}

func TestCheckRejectsIncompleteCredentials(t *testing.T) {
	c, err := salesforce.NewClient(salesforce.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cred := range []salesforce.Credential{nil, (*salesforce.AuthURL)(nil), salesforce.AuthURL{Host: "acme.my.salesforce.com"},
		salesforce.AuthURL{ClientID: "PlatformCLI", RefreshToken: "x", Host: "bad_host"}} {
		_, err := c.Check(context.Background(), cred)
		wantError(t, err, salesforce.ReasonAuthURLInvalid, false)
	}
}

func BenchmarkCheckSteadyState(b *testing.B) {
	s := sftest.NewServer(b)
	o := s.AddOrg(sftest.OrgSpec{DailyAPIMax: 1 << 40})
	c := newClient(b, s)
	a := authURL(b, o)
	if _, err := c.Check(context.Background(), a); err != nil {
		b.Fatal(err)
	}
	s.ResetCalls()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Check(context.Background(), a); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(s.TotalCalls())/float64(b.N), "requests/op")
}
