package sftest

import (
	"net/http"
	"strings"
	"time"
)

// Salesforce's one-time-use refresh tokens (see docs/salesforce-protocol.md), as strict as
// Salesforce: with rotation on, a replayed refresh token revokes its credential chain, and a
// refresh presenting a token that another request is still refreshing is refused.

// chain is one credential chain: the line of refresh tokens of one login. A fresh grant (AddOrg's
// token, Reauthorize, an authorization_code exchange, RefreshSandbox) starts one; a rotation
// issues its next token. Every access token remembers the chain it came from, so that revoking
// the chain kills exactly that login's tokens and leaves the org's other logins alone.
type chain struct {
	current string // its newest refresh token, the only one that can still be live
	revoked bool   // by reuse detection: current and every access token of the chain are dead
	// session is the chain's access token: Salesforce answers every refresh of a chain with the
	// same access token while its session lives, and a new one only once it ended (revoked,
	// expired). So everyone holding an access token of one chain holds the same session.
	session string
}

// refreshGrant is one refresh token ever issued.
type refreshGrant struct {
	org   *Org
	chain *chain
	// spent: a successful refresh rotated it away. Presenting it again is a replay. A token that
	// died otherwise (revoked, its chain revoked, its sandbox refreshed) is not spent.
	spent bool
}

// newRefreshTokenLocked issues a refresh token that becomes the org's current one (AuthURL), as
// the next token of ch, or as the first of a new chain when ch is nil; it returns the token and
// its chain.
func (o *Org) newRefreshTokenLocked(ch *chain) (string, *chain) {
	if ch == nil {
		ch = &chain{}
	}
	t := randomToken(48)
	o.s.issued = append(o.s.issued, t)
	o.current = t
	o.currentIssued = time.Now()
	o.valid[t] = true
	o.s.refresh[t] = &refreshGrant{org: o, chain: ch}
	ch.current = t
	return t, ch
}

// issueAccessLocked answers an access token of the org's current epoch, from chain ch (nil for a
// JWT grant or a frontdoor session, which belong to no refresh-token chain). A chain's live
// session is answered again (see chain.session); a new one is issued only when it has none.
func (o *Org) issueAccessLocked(ch *chain) string {
	if ch != nil {
		if g := o.s.access[ch.session]; g != nil && g.liveLocked() {
			return ch.session
		}
	}
	t := accessToken(o.orgID)
	o.s.issued = append(o.s.issued, t)
	o.s.access[t] = &accessGrant{org: o, epoch: o.epoch, chain: ch}
	if ch != nil {
		ch.session = t
	}
	return t
}

// accessToken is a new access token in Salesforce's shape, "<15-character org id>!<opaque>": the
// Salesforce CLI recognises an access token by it (a --target-org value that matches is used as
// a token, not looked up as a username).
func accessToken(orgID string) string {
	prefix := orgID
	if len(prefix) > 15 {
		prefix = prefix[:15]
	}
	body := strings.NewReplacer("-", ".", "_", ".").Replace(randomToken(72))
	return prefix + "!AQ" + body
}

// rotateLocked spends g's token, which a successful refresh presented, and issues the next one of
// its chain.
func (o *Org) rotateLocked(t string, g *refreshGrant) string {
	g.spent = true
	delete(o.valid, t)
	next, _ := o.newRefreshTokenLocked(g.chain)
	return next
}

// revokeChainLocked is reuse detection's punishment: the chain's current refresh token and every
// access token issued from it die.
func (o *Org) revokeChainLocked(ch *chain) {
	if ch.revoked {
		return
	}
	ch.revoked = true
	delete(o.valid, ch.current)
	o.chainsRevoked++
}

// refreshGrantLocked answers a refresh_token grant. concurrent says that another request
// presenting the same token was in flight when this one was accepted.
func (s *Server) refreshGrantLocked(r *http.Request, concurrent bool) reply {
	f := r.PostForm
	t := f.Get("refresh_token")
	g := s.refresh[t]
	switch {
	case g == nil:
		return oauthErrorReply("invalid_grant", "expired access/refresh token")
	case g.org.deleted:
		return orgGoneReply()
	}
	o := g.org
	if concurrent && o.rotate && o.concurrentRefusal {
		// Salesforce refuses it before looking further; it spends and revokes nothing.
		o.concurrentRefused++
		return oauthErrorReply("invalid_grant", "token request is already being processed")
	}
	if g.spent {
		o.spentPresented++
		if o.rotate && o.reuseDetection {
			o.revokeChainLocked(g.chain)
		}
		return oauthErrorReply("invalid_grant", "expired access/refresh token")
	}
	if !o.valid[t] {
		return oauthErrorReply("invalid_grant", "expired access/refresh token")
	}
	if rp, ok := o.checkClientLocked(f); !ok {
		return rp
	}
	if rp, ok := o.checkLoginLocked(); !ok {
		return rp
	}
	var newRefresh string
	if o.rotate {
		newRefresh = o.rotateLocked(t, g)
	}
	o.refreshesGranted++
	return s.tokenReplyLocked(o, g.chain, newRefresh, "refresh_token api web id")
}

// holdLocked marks the refresh token of a refresh_token grant as in flight, from the moment
// ServeHTTP accepts the request, and says whether another request presenting it already was.
// It returns "" for any other request. Every hold is released by releaseLocked.
func (s *Server) holdLocked(r *http.Request, ep string) (token string, concurrent bool) {
	if ep != "token" || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "refresh_token" {
		return "", false
	}
	t := r.PostForm.Get("refresh_token")
	if t == "" {
		return "", false
	}
	concurrent = s.inflight[t] > 0
	s.inflight[t]++
	return t, concurrent
}

// releaseLocked ends a hold of holdLocked ("" is no hold).
func (s *Server) releaseLocked(t string) {
	if t == "" {
		return
	}
	if s.inflight[t]--; s.inflight[t] <= 0 {
		delete(s.inflight, t)
	}
}

// SetReuseDetection turns reuse detection on or off (default on, see SetDefaultStrictRotation).
// While on and while the org rotates its refresh tokens, presenting a spent refresh token (one
// that a successful refresh rotated away) revokes its chain, as Salesforce does: the chain's
// current refresh token and every access token issued from the chain die. A spent token is refused
// with invalid_grant "expired access/refresh token" either way, and counted by
// SpentTokensPresented either way.
func (o *Org) SetReuseDetection(on bool) {
	o.locked(func() {
		o.reuseDetection = on
	})
}

// SetConcurrentRefreshRefusal turns the concurrent refresh refusal on or off (default on, see
// SetDefaultStrictRotation). While on and while the org rotates its refresh tokens, a
// refresh_token grant presenting a token that another request presented and that is not answered
// yet is refused with 400 invalid_grant "token request is already being processed", as
// Salesforce does; the refused request spends and revokes nothing, and the first one goes on.
// While off, both are answered in turn: the later one presents a spent token.
func (o *Org) SetConcurrentRefreshRefusal(on bool) {
	o.locked(func() {
		o.concurrentRefusal = on
	})
}

// SpentTokensPresented is how many times a spent refresh token (rotated away by a successful
// refresh) was presented to the token endpoint for this org, whether or not reuse detection was
// on. A token revoked otherwise (by reuse detection, RevokeRefreshTokens, revoke) is not spent.
// ResetCalls leaves it alone.
func (o *Org) SpentTokensPresented() int {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.spentPresented
}

// RefreshesGranted is how many refresh_token grants of this org succeeded. ResetCalls leaves it
// alone.
func (o *Org) RefreshesGranted() int {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.refreshesGranted
}

// ConcurrentRefreshesRefused is how many refresh_token grants of this org were refused because
// another request was refreshing the same token. ResetCalls leaves it alone.
func (o *Org) ConcurrentRefreshesRefused() int {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.concurrentRefused
}

// ChainsRevoked is how many of this org's credential chains reuse detection revoked. ResetCalls
// leaves it alone.
func (o *Org) ChainsRevoked() int {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.chainsRevoked
}

// AccessTokensRevoked is how many of this org's access tokens were revoked at
// /services/oauth2/revoke. ResetCalls leaves it alone.
func (o *Org) AccessTokensRevoked() int {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.accessRevoked
}

// AccessTokenLive says whether an access token still opens a session: issued by this fake, not
// revoked, its chain not revoked, its org not deleted or refreshed since.
func (s *Server) AccessTokenLive(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.access[token]
	return g != nil && g.liveLocked() && !g.org.deleted
}

// SpentTokensPresented is the sum of Org.SpentTokensPresented over every org of the server.
func (s *Server) SpentTokensPresented() int {
	return s.sum(func(o *Org) int { return o.spentPresented })
}

// ConcurrentRefreshesRefused is the sum of Org.ConcurrentRefreshesRefused over every org.
func (s *Server) ConcurrentRefreshesRefused() int {
	return s.sum(func(o *Org) int { return o.concurrentRefused })
}

// ChainsRevoked is the sum of Org.ChainsRevoked over every org.
func (s *Server) ChainsRevoked() int {
	return s.sum(func(o *Org) int { return o.chainsRevoked })
}

func (s *Server) sum(f func(*Org) int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, o := range s.orgs {
		n += f(o)
	}
	return n
}

// SetDefaultStrictRotation sets the default of SetReuseDetection and SetConcurrentRefreshRefusal
// for the orgs added from now on (true unless changed): a test suite that must tolerate a
// client's misuse can turn both off at once. Orgs already added keep their settings.
func (s *Server) SetDefaultStrictRotation(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strictRotation = on
}
