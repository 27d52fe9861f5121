package salesforce_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// A rotated refresh token is handed to Persist inside the token exchange: before the new access
// token is used for anything (no REST call has been made when Persist runs).
func TestPersistRunsBeforeTheNewTokenIsUsed(t *testing.T) {
	s, o, c, old := rotatingOrg(t)
	var persisted []salesforce.AuthURL
	res, err := c.CheckWith(context.Background(), old, func(_ context.Context, rotated salesforce.AuthURL) error {
		if n := s.TotalCalls(); n != 1 || s.Calls("token") != 1 {
			t.Errorf("persist ran after %d requests (%d token): the new token was used first", n, s.Calls("token"))
		}
		persisted = append(persisted, rotated)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(persisted) != 1 || persisted[0].Reveal() != o.AuthURL() {
		t.Fatalf("persist got %d URLs, want the org's rotated one", len(persisted))
	}
	if res.RotatedAuthURL == nil || *res.RotatedAuthURL != persisted[0] {
		t.Fatal("the result does not report the rotation")
	}
}

// A failed Persist stops the check before any REST call; the next check offers the same rotated
// URL to Persist first, without another token request; once saved, the dead credential is
// forgotten, so rotations do not accumulate in the client's memory.
func TestFailedPersistStopsTheCheckAndIsOfferedFirst(t *testing.T) {
	s, o, c, old := rotatingOrg(t)

	_, err := c.CheckWith(context.Background(), old, func(context.Context, salesforce.AuthURL) error {
		return errors.New("writing Secret \"x\" failed (Forbidden)")
	})
	wantError(t, err, salesforce.ReasonSecretUpdateFailed, true, old.RefreshToken)
	if s.TotalCalls() != 1 {
		t.Fatalf("a failed persist must stop the check: %d requests", s.TotalCalls())
	}

	var offered salesforce.AuthURL
	if _, err := c.CheckWith(context.Background(), old, func(_ context.Context, rotated salesforce.AuthURL) error {
		if s.TotalCalls() != 1 {
			t.Errorf("the pending rotation was not offered first (%d requests)", s.TotalCalls())
		}
		offered = rotated
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if offered.Reveal() != o.AuthURL() || s.Calls("token") != 1 {
		t.Fatalf("the pending rotation must be saved without a new token request (token calls %d)", s.Calls("token"))
	}
	if n := c.SessionCount(); n != 1 {
		t.Fatalf("after the rotation was saved the client holds %d cache keys, want 1", n)
	}

	// Many rotations, each saved: still one key.
	cur := offered
	for range 20 {
		o.ExpireAccessTokens()
		if _, err := c.CheckWith(context.Background(), cur, func(_ context.Context, rotated salesforce.AuthURL) error {
			cur = rotated
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.SessionCount(); n != 1 {
		t.Fatalf("after 20 saved rotations the client holds %d cache keys, want 1", n)
	}
}

// A check cancelled while the token request is in flight still finishes the token exchange and
// the persist: Salesforce may already have rotated the token.
func TestCancellationDoesNotDropARotation(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	o.SetRotateRefreshTokens(true)
	c := newClient(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	saved := false
	_, err := c.CheckWith(ctx, authURL(t, o), func(pctx context.Context, rotated salesforce.AuthURL) error {
		cancel() // the shutdown begins while we save
		if pctx.Err() != nil {
			t.Error("persist's context is cancelled with the check's")
		}
		saved = rotated.Reveal() == o.AuthURL()
		return nil
	})
	if !saved {
		t.Fatal("the rotation was not saved")
	}
	if err == nil || s.Calls("composite") != 0 {
		t.Fatalf("after cancellation the check must stop before using the token (err %v, composite %d)", err, s.Calls("composite"))
	}
}
