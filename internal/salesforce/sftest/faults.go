package sftest

import (
	"net/http"
	"time"
)

// Knobs for fault-injection runs (hack/faults), where the operator runs as its own process and
// the fake is all that can be asked what happened to a credential.

// SetCheckDelay makes every request but the OAuth ones (token, revoke) wait d before it is
// answered: a slow org as a check sees it after logging in, while logins stay fast. Zero (the
// default) turns it off. The wait is cut short when the client gives up or the server closes.
func (s *Server) SetCheckDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkDelay = d
}

// SetLatency makes every request, logins included, wait d before it is answered: Salesforce as
// far away as a real one (benchmarks). Zero (the default) turns it off.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// checkDelayLocked is the wait SetCheckDelay and SetLatency impose on a request to endpoint ep.
func (s *Server) checkDelayLocked(ep string) time.Duration {
	if ep == "token" || ep == "revoke" {
		return s.latency
	}
	return s.checkDelay + s.latency
}

// pause waits d and says whether to answer: false when the client gave up or the server closed.
func (s *Server) pause(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

// RefreshTokenLive says whether refresh token t works at the token endpoint now: issued by the
// fake, not rotated away or revoked, its org not deleted. It lets a test judge a stored
// credential without spending it (a refresh with rotation on would kill it).
func (s *Server) RefreshTokenLive(t string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.refresh[t]
	return o != nil && o.valid[t] && !o.deleted
}

// RefreshIssuedAt is when the org's newest refresh token was issued (by login, rotation or
// re-authorisation). A fault-injection run compares it with the moment it killed the manager:
// a token issued just before the kill existed only in the dead process's memory.
func (o *Org) RefreshIssuedAt() time.Time {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.currentIssued
}
