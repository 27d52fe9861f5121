package salesforce_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// memStore is a stored credential in memory, as a Secret holds one: a value and a version that
// every write bumps. memChain is one user's view of it (one reconcile's chain object).
type memStore struct {
	mu      sync.Mutex
	value   salesforce.AuthURL
	version int
}

type memChain struct {
	id    string
	store *memStore

	mu        sync.Mutex
	seen      int   // the store's version as this view last read or wrote it
	refuse    error // Claim's answer when set
	persistFn func(from, rotated salesforce.AuthURL) error
}

func newMemChain(id string, a salesforce.AuthURL) *memChain {
	return &memChain{id: id, store: &memStore{value: a, version: 1}}
}

// view is another user of the same stored chain.
func (m *memChain) view() *memChain { return &memChain{id: m.id, store: m.store} }

func (m *memChain) ChainID() string { return m.id }

func (m *memChain) Version() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == 0 {
		return ""
	}
	return strconv.Itoa(m.seen)
}

func (m *memChain) Load(context.Context) (salesforce.Credential, error) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = m.store.version
	return m.store.value, nil
}

func (m *memChain) Claim(_ context.Context, _ salesforce.AuthURL, seen salesforce.Rotation) (time.Time, error) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != nil && seen != salesforce.RotationNotSeen {
		return time.Time{}, m.refuse
	}
	if m.seen != m.store.version {
		return time.Time{}, salesforce.ErrClaimStale
	}
	m.store.version++
	m.seen = m.store.version
	return time.Now().Add(salesforce.ClaimTTL), nil
}

func (m *memChain) Persist(_ context.Context, from, rotated salesforce.AuthURL) error {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.persistFn != nil {
		if err := m.persistFn(from, rotated); err != nil {
			return err
		}
	}
	if m.store.value == from {
		m.store.value = rotated
		m.store.version++
	}
	m.seen = m.store.version
	return nil
}

// set writes a value as a person (or a tool) would.
func (m *memChain) set(a salesforce.AuthURL) {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	m.store.value = a
	m.store.version++
}

func (m *memChain) get() salesforce.AuthURL {
	m.store.mu.Lock()
	defer m.store.mu.Unlock()
	return m.store.value
}

// Two readers of one chain at once: the one that waited re-reads the stored value under the
// lock, and never presents the token the first one's rotation spent. Salesforce revokes the
// whole chain for that (the fake does too, and counts it).
func TestOneChainTwoUsersNeverPresentASpentToken(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	o.SetRotateRefreshTokens(true)
	sb := s.AddOrg(sftest.OrgSpec{Kind: sftest.Sandbox, Production: o, SandboxName: "qa"})
	_ = sb
	c := newClient(t, s)
	ch := newMemChain("ns/prod-auth/sfdxAuthUrl", authURL(t, o))
	ctx := context.Background()
	for i := range 20 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for j := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each user is its own chain object (its own reconcile), sharing only the store.
				user := ch.view()
				var err error
				if j%2 == 0 {
					_, err = c.CheckChain(ctx, user, "")
				} else {
					_, err = c.AuthorizeSandbox(ctx, user, "", "qa")
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		o.ExpireAccessTokens() // every round needs an exchange
	}
	wantLiveChain(t, o, ch)
}

// wantLiveChain: no spent token was presented, and the store holds the org's live token.
func wantLiveChain(t *testing.T, o *sftest.Org, ch *memChain) {
	t.Helper()
	if n := o.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
	if ch.get().RefreshToken != authURL(t, o).RefreshToken {
		t.Fatal("the store does not hold the org's live refresh token")
	}
}

// A done context starts no exchange: nothing reaches the token endpoint.
func TestCancelledContextStartsNoExchange(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	o.SetRotateRefreshTokens(true)
	c := newClient(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.CheckChain(ctx, newMemChain("ns/a/k", authURL(t, o)), "")
	wantError(t, err, salesforce.ReasonUnreachable, true)
	if n := s.Calls("token"); n != 0 {
		t.Fatalf("%d token requests from a cancelled check", n)
	}
}

// A chain whose rotation could not be saved is not exchanged (Claim refuses); one seen not to
// rotate still is.
func TestUnsaveableChainIsNotExchanged(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	c := newClient(t, s)
	ch := newMemChain("ns/ro/k", authURL(t, o))
	refused := errors.New("immutable")
	ch.refuse = refused
	if _, err := c.CheckChain(context.Background(), ch, ""); !errors.Is(err, refused) {
		t.Fatalf("err %v, want Claim's refusal", err)
	}
	if n := s.Calls("token"); n != 0 {
		t.Fatalf("%d token requests for a chain that cannot be saved", n)
	}
	// Once seen not to rotate (the store was writable then), an exchange is allowed.
	ch.refuse = nil
	if _, err := c.CheckChain(context.Background(), ch, ""); err != nil {
		t.Fatal(err)
	}
	ch.refuse = refused
	o.ExpireAccessTokens()
	if _, err := c.CheckChain(context.Background(), ch, ""); err != nil {
		t.Fatalf("a chain seen not to rotate: %v", err)
	}
}

// A rotation that cannot be saved stops everything for the chain until it is; the stored value
// (now dead) is never presented meanwhile.
func TestPendingRotationBlocksTheChain(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	o.SetRotateRefreshTokens(true)
	c := newClient(t, s)
	ch := newMemChain("ns/a/k", authURL(t, o))
	ch.persistFn = func(_, _ salesforce.AuthURL) error { return errors.New("write refused") }
	_, err := c.CheckChain(context.Background(), ch, "")
	wantError(t, err, salesforce.ReasonSecretUpdateFailed, true)
	s.ResetCalls()
	o.ExpireAccessTokens()
	_, err = c.CheckChain(context.Background(), ch, "x")
	wantError(t, err, salesforce.ReasonSecretUpdateFailed, true)
	if s.TotalCalls() != 0 {
		t.Fatalf("%d calls while a rotation waited to be saved", s.TotalCalls())
	}
	ch.persistFn = nil
	if _, err := c.CheckChain(context.Background(), ch, "x"); err != nil {
		t.Fatal(err)
	}
	wantLiveChain(t, o, ch)
}

// A dead value written back into the store (a GitOps revert) is never exchanged: the newest is
// saved over it. A new value (a person's new login) starts afresh.
func TestRevertedValueIsNeverExchanged(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{Kind: sftest.Production})
	o.SetRotateRefreshTokens(true)
	c := newClient(t, s)
	first := authURL(t, o)
	ch := newMemChain("ns/a/k", first)
	if _, err := c.CheckChain(context.Background(), ch, ""); err != nil {
		t.Fatal(err)
	}
	live := ch.get()
	ch.set(first) // the revert
	o.ExpireAccessTokens()
	if _, err := c.CheckChain(context.Background(), ch, "changed"); err != nil {
		t.Fatal(err)
	}
	if n := o.SpentTokensPresented(); n != 0 {
		t.Fatalf("%d spent refresh tokens presented", n)
	}
	if got := ch.get(); got == first || got != authURL(t, o) {
		t.Fatal("the store was not restored to the chain's live token")
	}
	_ = live
	fresh, err := salesforce.ParseAuthURL(o.Reauthorize())
	if err != nil {
		t.Fatal(err)
	}
	ch.set(fresh)
	if _, err := c.CheckChain(context.Background(), ch, "new"); err != nil {
		t.Fatalf("a person's new credential: %v", err)
	}
}
