package sftest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// grantAnswer is a token endpoint's answer. Its tokens must never be printed: failure messages
// show only the status and the error fields.
type grantAnswer struct {
	status           int
	err, description string
	access, refresh  string
}

func (a grantAnswer) String() string {
	if a.status == http.StatusOK {
		return "200"
	}
	return fmt.Sprintf("%d %s %q", a.status, a.err, a.description)
}

// postRefresh presents refresh token t to the token endpoint, on a connection of its own. It may
// run outside the test's goroutine.
func postRefresh(ctx context.Context, s *Server, t string) (grantAnswer, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}, DisableKeepAlives: true}}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t}, "client_id": {"PlatformCLI"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/services/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return grantAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return grantAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return grantAnswer{}, err
	}
	a := grantAnswer{status: resp.StatusCode}
	if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return a, nil
	}
	var m struct {
		AccessToken      string `json:"access_token"`
		RefreshToken     string `json:"refresh_token"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return grantAnswer{}, fmt.Errorf("token answer (%d) is not JSON", resp.StatusCode)
	}
	a.err, a.description, a.access, a.refresh = m.Error, m.ErrorDescription, m.AccessToken, m.RefreshToken
	return a, nil
}

func refresh(t *testing.T, s *Server, token string) grantAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := postRefresh(ctx, s, token)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// next is the refresh token to present after a successful answer: the rotated one, if any.
func (a grantAnswer) next(presented string) string {
	if a.refresh != "" {
		return a.refresh
	}
	return presented
}

func wantExpired(t *testing.T, what string, a grantAnswer) {
	t.Helper()
	if a.status != 400 || a.err != "invalid_grant" || a.description != "expired access/refresh token" {
		t.Errorf("%s: %s, want 400 invalid_grant \"expired access/refresh token\"", what, a)
	}
}

// sessionStatus is the status of a REST call with access token tok.
func sessionStatus(t *testing.T, s *Server, tok string) int {
	t.Helper()
	a := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil)
	if a.status == 401 && a.body != `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]` {
		t.Errorf("a dead session: %d %s, want 401 INVALID_SESSION_ID", a.status, a.body)
	}
	return a.status
}

func TestReplayedRefreshTokenRevokesItsChain(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rotate       bool
		lenient      bool // SetDefaultStrictRotation(false) before the org is added
		noDetection  bool // SetReuseDetection(false)
		replayStatus int
		chainAlive   bool
		spent        int
	}{
		{name: "rotation on: the replay revokes the chain", rotate: true, replayStatus: 400, spent: 1},
		{name: "reuse detection off: the spent token is refused, the chain lives", rotate: true, noDetection: true, replayStatus: 400, chainAlive: true, spent: 1},
		{name: "strictness off for the server: as reuse detection off", rotate: true, lenient: true, replayStatus: 400, chainAlive: true, spent: 1},
		{name: "rotation off: a token is used again and again", replayStatus: 200, chainAlive: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t)
			if tc.lenient {
				s.SetDefaultStrictRotation(false)
			}
			o := s.AddOrg(OrgSpec{})
			o.SetRotateRefreshTokens(tc.rotate)
			if tc.noDetection {
				o.SetReuseDetection(false)
			}

			first := refreshToken(o)
			a := refresh(t, s, first)
			if a.status != 200 || (a.refresh != "") != tc.rotate {
				t.Fatalf("first refresh: %s, rotated %v", a, a.refresh != "")
			}
			access, current := a.access, a.next(first)

			// Another login of the same user: a chain of its own.
			o.Reauthorize()
			other := refreshToken(o)
			b := refresh(t, s, other)
			if b.status != 200 {
				t.Fatalf("the other login's refresh: %s", b)
			}
			otherAccess, otherCurrent := b.access, b.next(other)
			s.ResetCalls()

			replay := refresh(t, s, first)
			if replay.status != tc.replayStatus {
				t.Fatalf("replay of the first token: %s, want %d", replay, tc.replayStatus)
			}
			if tc.replayStatus == 400 {
				wantExpired(t, "replay", replay)
			}

			if tc.chainAlive {
				if got := sessionStatus(t, s, access); got != 200 {
					t.Errorf("the chain's access token: %d, want 200", got)
				}
				if a := refresh(t, s, current); a.status != 200 {
					t.Errorf("the chain's current refresh token: %s, want 200", a)
				}
			} else {
				if got := sessionStatus(t, s, access); got != 401 {
					t.Errorf("the chain's access token: %d, want 401 INVALID_SESSION_ID", got)
				}
				if s.RefreshTokenLive(current) {
					t.Error("the chain's current refresh token is still live")
				}
				// Revoked, never spent: an ordinary invalid_grant, not a second replay.
				wantExpired(t, "the chain's former current refresh token", refresh(t, s, current))
			}

			if got := sessionStatus(t, s, otherAccess); got != 200 {
				t.Errorf("the other login's access token: %d, want 200", got)
			}
			if a := refresh(t, s, otherCurrent); a.status != 200 {
				t.Errorf("the other login's refresh token: %s, want 200", a)
			}

			wantRevoked := 0
			if !tc.chainAlive {
				wantRevoked = 1
			}
			s.ResetCalls() // must not reset the misuse counters
			if o.SpentTokensPresented() != tc.spent || s.SpentTokensPresented() != tc.spent {
				t.Errorf("SpentTokensPresented: org %d server %d, want %d", o.SpentTokensPresented(), s.SpentTokensPresented(), tc.spent)
			}
			if o.ChainsRevoked() != wantRevoked || s.ChainsRevoked() != wantRevoked {
				t.Errorf("ChainsRevoked: org %d server %d, want %d", o.ChainsRevoked(), s.ChainsRevoked(), wantRevoked)
			}
			if o.ConcurrentRefreshesRefused() != 0 {
				t.Errorf("ConcurrentRefreshesRefused: %d", o.ConcurrentRefreshesRefused())
			}
		})
	}
}

// waitFor polls cond until it holds, for at most 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Server) inFlightRefreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

func TestConcurrentRefreshOfOneToken(t *testing.T) {
	const processing = `{"error":"invalid_grant","error_description":"token request is already being processed"}`
	for _, tc := range []struct {
		name                  string
		rotate                bool
		noRefusal             bool
		noDetection           bool
		refused, spent        int
		winnerLives           bool // the successful request's chain lives on
		bothSucceed           bool
		secondIsTheRefusedOne bool
	}{
		{name: "rotation on: the second is refused, the first goes on", rotate: true, refused: 1, winnerLives: true, secondIsTheRefusedOne: true},
		{name: "refusal off: the later one replays a spent token and revokes the chain", rotate: true, noRefusal: true, spent: 1},
		{name: "refusal and reuse detection off: the later one is refused as spent", rotate: true, noRefusal: true, noDetection: true, spent: 1, winnerLives: true},
		{name: "rotation off: both go through", winnerLives: true, bothSucceed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t)
			o := s.AddOrg(OrgSpec{})
			o.SetRotateRefreshTokens(tc.rotate)
			if tc.noRefusal {
				o.SetConcurrentRefreshRefusal(false)
			}
			if tc.noDetection {
				o.SetReuseDetection(false)
			}
			tok := refreshToken(o)
			// Salesforce far away: every request, logins included, is in flight this long.
			s.SetLatency(300 * time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			answers, errs := make([]grantAnswer, 2), make([]error, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					answers[i], errs[i] = postRefresh(ctx, s, tok)
				}()
				if i == 0 { // the second starts once the first is accepted
					waitFor(t, "the first refresh to arrive", func() bool { return s.Calls("token") == 1 })
				}
			}
			wg.Wait()
			s.SetLatency(0)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
			}
			if s.inFlightRefreshes() != 0 {
				t.Errorf("%d refresh tokens still in flight after both answers", s.inFlightRefreshes())
			}

			var winner grantAnswer
			var losers []grantAnswer
			for _, a := range answers {
				if a.status == 200 && winner.status == 0 {
					winner = a
				} else {
					losers = append(losers, a)
				}
			}
			switch {
			case winner.status != 200:
				t.Fatalf("no request succeeded: %s, %s", answers[0], answers[1])
			case tc.bothSucceed:
				if losers[0].status != 200 {
					t.Errorf("the other request: %s, want 200", losers[0])
				}
			case tc.secondIsTheRefusedOne:
				if answers[0].status != 200 {
					t.Errorf("the first request: %s, want 200", answers[0])
				}
				raw, _ := json.Marshal(map[string]string{"error": answers[1].err, "error_description": answers[1].description})
				if answers[1].status != 400 || string(raw) != processing {
					t.Errorf("the second request: %s, want 400 %s", answers[1], processing)
				}
			default:
				wantExpired(t, "the later request", losers[0])
			}

			if got := sessionStatus(t, s, winner.access); (got == 200) != tc.winnerLives {
				t.Errorf("the successful request's access token: %d, want it alive %v", got, tc.winnerLives)
			}
			if next := winner.next(tok); s.RefreshTokenLive(next) != tc.winnerLives {
				t.Errorf("the successful request's refresh token live %v, want %v", s.RefreshTokenLive(next), tc.winnerLives)
			}
			if tc.rotate && s.RefreshTokenLive(tok) {
				t.Error("the presented token is still live after a rotation")
			}
			if o.ConcurrentRefreshesRefused() != tc.refused || s.ConcurrentRefreshesRefused() != tc.refused {
				t.Errorf("ConcurrentRefreshesRefused: org %d server %d, want %d", o.ConcurrentRefreshesRefused(), s.ConcurrentRefreshesRefused(), tc.refused)
			}
			if o.SpentTokensPresented() != tc.spent || s.SpentTokensPresented() != tc.spent {
				t.Errorf("SpentTokensPresented: org %d server %d, want %d", o.SpentTokensPresented(), s.SpentTokensPresented(), tc.spent)
			}
		})
	}
}

// TestInFlightRefreshIsReleasedOnEveryPath: a refresh that is never answered (the client gave up,
// an injected failure) spends nothing and leaves nothing in flight: the next refresh with the same
// token succeeds.
func TestInFlightRefreshIsReleasedOnEveryPath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(s *Server)
		undo   func(s *Server)
		gaveUp bool // the client gives up before the answer
	}{
		{name: "client gives up during the latency", gaveUp: true,
			inject: func(s *Server) { s.SetLatency(5 * time.Second) }, undo: func(s *Server) { s.SetLatency(0) }},
		{name: "client gives up during FailSlow", gaveUp: true,
			inject: func(s *Server) { s.SetSlowDelay(5 * time.Second); s.FailNext(1, FailSlow) }},
		{name: "Fail5xx", inject: func(s *Server) { s.FailNext(1, Fail5xx) }},
		{name: "FailHTML", inject: func(s *Server) { s.FailNext(1, FailHTML) }},
		{name: "FailDrop", inject: func(s *Server) { s.FailNext(1, FailDrop) }},
		{name: "FailEndpoint", inject: func(s *Server) { s.FailEndpoint("token", Fail5xx) }, undo: func(s *Server) { s.FailEndpoint("token", 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t)
			o := s.AddOrg(OrgSpec{})
			o.SetRotateRefreshTokens(true)
			tok := refreshToken(o)
			tc.inject(s)
			timeout := 5 * time.Second
			if tc.gaveUp {
				timeout = 100 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			a, err := postRefresh(ctx, s, tok)
			cancel()
			// A client that gave up may still read the empty 200 that net/http sends for a handler
			// that wrote nothing: only a token answer is a success.
			if err == nil && a.access != "" {
				t.Fatalf("the injected failure did not happen: %s", a)
			}
			if tc.undo != nil {
				tc.undo(s)
			}
			waitFor(t, "the first refresh to leave the flight", func() bool { return s.inFlightRefreshes() == 0 })
			if a := refresh(t, s, tok); a.status != 200 || a.refresh == "" {
				t.Errorf("the same token afterwards: %s, want 200 with a rotated token", a)
			}
			if o.ConcurrentRefreshesRefused() != 0 || o.SpentTokensPresented() != 0 || o.ChainsRevoked() != 0 {
				t.Errorf("counters: refused %d spent %d revoked %d, want none", o.ConcurrentRefreshesRefused(), o.SpentTokensPresented(), o.ChainsRevoked())
			}
		})
	}
}

// TestChainsFollowEveryFreshGrant: an authorization_code exchange and a sandbox refresh start
// chains of their own; a replay in one leaves the others, and JWT sessions, alive.
func TestChainsFollowEveryFreshGrant(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{Kind: Sandbox})
	o.SetRotateRefreshTokens(true)

	first := refreshToken(o)
	a := refresh(t, s, first)
	if a.status != 200 {
		t.Fatalf("refresh: %s", a)
	}
	ex := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"authorization_code"}, "code": {o.AuthorizationCode()}, "client_id": {"PlatformCLI"}})
	var m map[string]string
	if err := json.Unmarshal([]byte(ex.body), &m); err != nil || ex.status != 200 {
		t.Fatalf("authorization_code: %d", ex.status)
	}
	codeAccess, codeRefresh := m["access_token"], m["refresh_token"]

	wantExpired(t, "replay", refresh(t, s, first))
	if sessionStatus(t, s, a.access) != 401 || s.RefreshTokenLive(a.refresh) {
		t.Error("the replayed chain lives on")
	}
	if sessionStatus(t, s, codeAccess) != 200 || !s.RefreshTokenLive(codeRefresh) {
		t.Error("the authorization code's chain died with another")
	}

	o.RefreshSandbox() // every old token dies; a fresh one starts a chain
	fresh := refreshToken(o)
	b := refresh(t, s, fresh)
	if b.status != 200 || sessionStatus(t, s, b.access) != 200 {
		t.Fatalf("after the sandbox refresh: %s", b)
	}
	if sessionStatus(t, s, codeAccess) != 401 {
		t.Error("a session from before the sandbox refresh lives on")
	}
	if o.SpentTokensPresented() != 1 || o.ChainsRevoked() != 1 {
		t.Errorf("spent %d revoked %d, want 1 and 1", o.SpentTokensPresented(), o.ChainsRevoked())
	}
}

// Salesforce answers every refresh of a chain with the chain's live session, rotation or not;
// revoking that access token ends it for every holder and leaves the refresh token alive, and
// the next refresh opens a new session.
func TestOneSessionPerChain(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		s := NewServer(t)
		o := s.AddOrg(OrgSpec{})
		o.SetRotateRefreshTokens(rotate)
		first := login(t, s, o)
		second := login(t, s, o)
		if first["access_token"] != second["access_token"] {
			t.Fatalf("rotate=%v: two refreshes of one chain answered two sessions", rotate)
		}
		tok := first["access_token"].(string)
		if !accessTokenShape.MatchString(tok) || !strings.HasPrefix(tok, o.OrgID()[:15]+"!") {
			t.Errorf("access token is not in Salesforce's shape (00D…!…)")
		}
		if a := do(t, s, "POST", "/services/oauth2/revoke", "", url.Values{"token": {tok}}); a.status != 200 {
			t.Fatalf("revoke: %d", a.status)
		}
		if s.AccessTokenLive(tok) || o.AccessTokensRevoked() != 1 {
			t.Errorf("rotate=%v: the revoked session lives on (revoked %d)", rotate, o.AccessTokensRevoked())
		}
		third := login(t, s, o)
		if third["access_token"] == tok || !s.AccessTokenLive(third["access_token"].(string)) {
			t.Errorf("rotate=%v: the refresh after a revocation must open a new session", rotate)
		}
		if a := do(t, s, "POST", "/services/oauth2/revoke", "", url.Values{"token": {tok}}); a.status != 400 || !strings.Contains(a.body, `"invalid_token"`) {
			t.Errorf("revoking a dead token: %d %s", a.status, a.body)
		}
	}
}

// accessTokenShape is the Salesforce CLI's own test of an opaque access token.
var accessTokenShape = regexp.MustCompile(`^(00D\w{12,15})![.\w]*$`)
