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
	g := s.refresh[t]
	return g != nil && g.org.valid[t] && !g.org.deleted
}

// RefreshIssuedAt is when the org's newest refresh token was issued (by login, rotation or
// re-authorisation). A fault-injection run compares it with the moment it killed the manager:
// a token issued just before the kill existed only in the dead process's memory.
func (o *Org) RefreshIssuedAt() time.Time {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.currentIssued
}

// Call is one HTTP request in the call log: its endpoint, the org it was attributed to ("" when
// none), and when it arrived and was answered.
type Call struct {
	Endpoint, Org string
	Start, End    time.Time
}

// StartCallLog starts (or restarts, empty) a log of every request from now on, for benchmarks
// that time a burst of checks by what Salesforce saw rather than by polling a counter. It is off
// by default: a test server keeps no log.
func (s *Server) StartCallLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logging, s.log = true, nil
}

// CallLog returns the requests answered since StartCallLog, in the order they were answered.
func (s *Server) CallLog() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.log...)
}

// logCall appends a request answered now to the call log, when it is on.
func (s *Server) logCall(ep string, o *Org, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.logging {
		return
	}
	c := Call{Endpoint: ep, Start: start, End: time.Now()}
	if o != nil {
		c.Org = o.spec.Name
	}
	s.log = append(s.log, c)
}
