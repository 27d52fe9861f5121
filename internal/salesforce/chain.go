package salesforce

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"
)

// One owner per credential chain. Salesforce enforces one-time-use refresh tokens: an exchange
// rotates the token, presenting a spent one revokes the whole chain (the live token and every
// access token issued from it), and a second exchange of one token while the first is in flight
// is refused. So every use of a stored credential goes through its chain's session here, keyed
// by where the credential is stored (Chain.ChainID: a Secret and key), never by its value:
//
//   - one lock per chain: one exchange at a time, and whoever waited re-reads the stored value
//     (Chain.Load) under the lock before it exchanges, so a reader that read before another's
//     rotation never presents the token that rotation spent;
//   - Chain.Claim right before an exchange: the store proves it can take the rotated token (a
//     real write), and claims the exchange from every other process until a deadline that bounds
//     the token request and the write-back;
//   - a rotated token is saved (Chain.Persist) before its access token is used for anything; until
//     it is, nothing else is sent for the chain;
//   - a context that is done starts no exchange (a stopping process, a lost lease), and once
//     sent, the token request and the write-back run to their own bounds, not the caller's.

// Chain is one stored credential: where it lives, and how to read it, claim its exchange and save
// its rotation. The client calls every method with the chain's lock held.
type Chain interface {
	// ChainID names where the credential is stored (such as namespace/Secret/key): one session
	// and one lock per ID. It is never derived from the credential's value.
	ChainID() string
	// Version is the stored value's version as this Chain last read or wrote it ("" when unknown).
	Version() string
	// Load reads the stored credential afresh.
	Load(ctx context.Context) (Credential, error)
	// Claim is called after Load, right before cred's refresh token is exchanged. It returns when
	// the claim ends (the exchange and its write-back must be done by then; zero: no claim was
	// needed), or why the exchange must not happen: a rotation could not be saved (unless seen
	// says the chain was seen not to rotate), or another process holds the claim. An error that
	// is ErrClaimStale makes the client Load again and retry.
	Claim(ctx context.Context, cred AuthURL, seen Rotation) (until time.Time, err error)
	// Persist saves rotated, the chain's new credential that replaced from. Salesforce already
	// revoked from, so until Persist succeeds the client sends nothing else for the chain.
	Persist(ctx context.Context, from, rotated AuthURL) error
}

// Rotation is what the client has seen of a chain's refresh-token rotation.
type Rotation int

const (
	// RotationUnknown: no exchange of the chain has been seen (since it was loaded).
	RotationUnknown Rotation = iota
	// RotationSeen: an exchange returned a new refresh token.
	RotationSeen
	// RotationNotSeen: the last exchange returned no new refresh token (the connected app does
	// not rotate), so an exchange can be made even where a rotation could not be saved.
	RotationNotSeen
)

// ErrClaimStale is what Claim returns when the stored value changed since Load (a write
// conflict): the client loads again and retries.
var ErrClaimStale = errors.New("the stored credential changed since it was read")

const (
	// exchangeTimeout bounds a token request when its Claim gave no deadline.
	exchangeTimeout = 20 * time.Second
	// persistTimeout bounds one Persist call; it runs even while the caller's context is being
	// cancelled (a graceful shutdown), because the old refresh token is already dead.
	persistTimeout = 15 * time.Second
	// ClaimTTL is how long a Claim should hold: a token request and a write-back, with room.
	// A graceful stop (the manager's shutdown grace) must be longer, so a stopping process
	// finishes every exchange it started.
	ClaimTTL = exchangeTimeout + persistTimeout + 5*time.Second
	// spentRemembered bounds how many rotated-away values a session remembers.
	spentRemembered = 8
	// claimRetries bounds Load-and-Claim rounds lost to concurrent writes.
	claimRetries = 3
)

// session is one chain's state. lock is a one-slot channel so that waiting for it honours the
// caller's context; every field but lastUsed is guarded by it.
type session struct {
	lock    chan struct{}
	limiter *rate.Limiter // the org's courtesy bucket; nil when unbounded

	cred        Credential // the chain's newest credential, as loaded or as rotated
	version     string     // the stored version cred was loaded from or written to
	pending     *AuthURL   // a rotation Salesforce issued that is not saved yet
	pendingFrom AuthURL
	spent       []string // cache keys of values this chain rotated away, newest first
	rotation    Rotation

	access      string
	instanceURL string
	orgID       string
	userID      string

	lastUsed time.Time // guarded by Client.mu
}

// lockChain returns id's session, locked: the caller calls unlock. Waiting ends with ctx.
func (c *Client) lockChain(ctx context.Context, id string) (*session, func(), error) {
	now := time.Now()
	c.mu.Lock()
	if now.Sub(c.lastSweep) > time.Hour {
		c.lastSweep = now
		for k, s := range c.sessions {
			if now.Sub(s.lastUsed) > sessionIdleTTL {
				delete(c.sessions, k)
			}
		}
	}
	s := c.sessions[id]
	if s == nil {
		s = &session{lock: make(chan struct{}, 1), limiter: bucket(c.limits.orgQPS)}
		c.sessions[id] = s
	}
	s.lastUsed = now
	c.mu.Unlock()
	select {
	case s.lock <- struct{}{}:
		return s, func() { <-s.lock }, nil
	case <-ctx.Done():
		return nil, nil, cancelled(ctx, "while it waited for another use of the same credential")
	}
}

func cancelled(ctx context.Context, when string) *Error {
	return &Error{Reason: ReasonUnreachable, Retryable: true, cause: ctx.Err(),
		Message: "the call was cancelled " + when + " (the operator is stopping, or the check timed out); nothing was sent"}
}

// Forget drops the session of the chain (its access token and what it remembers).
func (c *Client) Forget(chainID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, chainID)
}

// use runs call with a live access token of the chain: the one the session holds when the stored
// value is still the one it came from (storedVersion "" means unknown: then only a session
// without a token loads), else one from a fresh exchange. A 401 from call drops the token, and the
// chain is loaded again and exchanged once more. It returns call's error, a 401 included when a
// fresh token got it too.
func (c *Client) use(ctx context.Context, s *session, ch Chain, storedVersion string, call func() error) error {
	if err := c.settle(ctx, s, ch); err != nil {
		return err
	}
	if s.cred == nil || s.access == "" || (storedVersion != "" && storedVersion != s.version) {
		if err := c.load(ctx, s, ch); err != nil {
			return err
		}
	}
	fresh := false
	if s.access == "" {
		if err := c.exchange(ctx, s, ch); err != nil {
			return err
		}
		fresh = true
	}
	err := call()
	var ua *unauthorizedError
	if errors.As(err, &ua) && !fresh {
		s.access = ""
		if err := c.load(ctx, s, ch); err != nil {
			return err
		}
		if err := c.exchange(ctx, s, ch); err != nil {
			return err
		}
		err = call()
	}
	return err
}

// load reads the stored credential. The same value keeps the session (and its access token); a
// value this chain rotated away (a tool wrote a dead token back) is never exchanged: the newest
// is saved over it; any other value is a new credential and starts the session afresh.
func (c *Client) load(ctx context.Context, s *session, ch Chain) error {
	cred, err := ch.Load(ctx)
	if err != nil {
		return err
	}
	cr, err := credentialValue(cred)
	if err != nil {
		return err
	}
	if err := cr.validate(c); err != nil {
		return err
	}
	switch {
	case s.cred != nil && cr.cacheKey() == s.cred.cacheKey():
	case s.isSpent(cr):
		newest, _ := s.cred.(AuthURL)
		s.pendingFrom, s.pending = cr.(AuthURL), &newest
		if err := c.settle(ctx, s, ch); err != nil {
			return err
		}
	default:
		s.reset(cr)
	}
	s.version = ch.Version()
	return nil
}

// reset starts the session afresh with a new credential (a new chain in the same place).
func (s *session) reset(cred Credential) {
	s.cred, s.version, s.pending, s.pendingFrom, s.spent, s.rotation = cred, "", nil, AuthURL{}, nil, RotationUnknown
	s.access, s.instanceURL, s.orgID, s.userID = "", "", "", ""
}

func (s *session) isSpent(cred Credential) bool {
	k := cred.cacheKey()
	for _, sp := range s.spent {
		if sp == k {
			return true
		}
	}
	return false
}

// exchange gets a new access token for s.cred. For a refresh token it first claims the exchange
// (Chain.Claim), and saves a rotation before the access token is kept. A done ctx sends nothing;
// once the token request is sent, it runs to its own deadline.
func (c *Client) exchange(ctx context.Context, s *session, ch Chain) error {
	if ctx.Err() != nil {
		return cancelled(ctx, "before the token request")
	}
	deadline := time.Now().Add(exchangeTimeout)
	from, rotating := s.cred.(AuthURL)
	if rotating {
		until, err := c.claim(ctx, s, ch)
		if err != nil {
			return err
		}
		from = s.cred.(AuthURL) // Claim may have loaded a newer value
		if !until.IsZero() {
			deadline = until.Add(-persistTimeout)
		}
		if ctx.Err() != nil {
			return cancelled(ctx, "before the token request")
		}
		if time.Until(deadline) <= time.Second {
			return &Error{Reason: ReasonUnreachable, Retryable: true, Message: "the claim on the credential ran out before the token request could be sent; nothing was sent"}
		}
	}
	lctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	info, err := s.cred.login(lctx, c)
	cancel()
	if err != nil {
		return err
	}
	s.access, s.instanceURL, s.orgID, s.userID = info.access, info.instanceURL, info.orgID, info.userID
	if !rotating {
		return nil
	}
	if info.refresh == "" || info.refresh == from.RefreshToken {
		s.rotation = RotationNotSeen
		return nil
	}
	s.rotation = RotationSeen
	n := from.WithRefreshToken(info.refresh)
	s.spent = append([]string{from.cacheKey()}, s.spent[:min(len(s.spent), spentRemembered-1)]...)
	s.cred, s.pending, s.pendingFrom = n, &n, from
	return c.settle(ctx, s, ch) // the access token waits, unused, until the rotation is saved
}

// claim asks the chain for the exchange, loading again when the stored value changed meanwhile.
func (c *Client) claim(ctx context.Context, s *session, ch Chain) (time.Time, error) {
	for i := 0; ; i++ {
		a, ok := s.cred.(AuthURL)
		if !ok {
			return time.Time{}, nil
		}
		until, err := ch.Claim(ctx, a, s.rotation)
		if !errors.Is(err, ErrClaimStale) || i+1 >= claimRetries {
			if err == nil {
				s.version = ch.Version()
			}
			return until, err
		}
		if err := c.load(ctx, s, ch); err != nil {
			return time.Time{}, err
		}
	}
}

// settle saves a rotation that Salesforce issued and the store does not have yet.
func (c *Client) settle(ctx context.Context, s *session, ch Chain) error {
	if s.pending == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
	defer cancel()
	if err := ch.Persist(pctx, s.pendingFrom, *s.pending); err != nil {
		return &Error{Reason: ReasonSecretUpdateFailed, Retryable: true,
			Message: "Salesforce rotated the refresh token, but it could not be saved: " + err.Error()}
	}
	s.pending = nil
	s.version = ch.Version()
	return nil
}

// scrubSession removes every credential the session knows from err's message.
func (s *session) scrub(err error, more ...string) error {
	secrets := append([]string{s.access}, more...)
	if s.cred != nil {
		secrets = append(secrets, s.cred.secrets()...)
	}
	if s.pending != nil {
		secrets = append(secrets, s.pending.secrets()...)
		secrets = append(secrets, s.pendingFrom.secrets()...)
	}
	return scrub(err, secrets...)
}

// valueChain is a credential given by value (tests, the plugin's one-off calls): its session is
// keyed by the value it started from, and persist (optional) saves a rotation.
type valueChain struct {
	cred    Credential
	persist Persist
}

func (v valueChain) ChainID() string                          { return "value:" + v.cred.cacheKey() }
func (v valueChain) Version() string                          { return "" }
func (v valueChain) Load(context.Context) (Credential, error) { return v.cred, nil }
func (v valueChain) Claim(context.Context, AuthURL, Rotation) (time.Time, error) {
	return time.Time{}, nil
}

func (v valueChain) Persist(ctx context.Context, _, rotated AuthURL) error {
	if v.persist == nil {
		return nil
	}
	return v.persist(ctx, rotated)
}
