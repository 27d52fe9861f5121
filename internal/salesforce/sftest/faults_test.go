package sftest

import (
	"net/url"
	"testing"
	"time"
)

func TestCheckDelaySparesLogins(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	s.SetCheckDelay(300 * time.Millisecond)
	start := time.Now()
	tok := login(t, s, o)["access_token"].(string)
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Errorf("a login waited %s", d)
	}
	start = time.Now()
	if a := do(t, s, "GET", "/services/data/v65.0/limits", tok, nil); a.status != 200 {
		t.Errorf("delayed call: %d", a.status)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a REST call answered in %s, before the delay", d)
	}
	s.SetCheckDelay(0)
	start = time.Now()
	do(t, s, "GET", "/services/data/v65.0/limits", tok, nil)
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Errorf("with the delay off, a REST call took %s", d)
	}
}

func TestRefreshTokenLiveFollowsRotation(t *testing.T) {
	s := NewServer(t)
	o := s.AddOrg(OrgSpec{})
	o.SetRotateRefreshTokens(true)
	first := refreshToken(o)
	if !s.RefreshTokenLive(first) || s.RefreshTokenLive("no-such-token") {
		t.Fatal("a fresh org's token is not live, or an unknown one is")
	}
	a := do(t, s, "POST", "/services/oauth2/token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}, "client_id": {"PlatformCLI"}})
	if a.status != 200 {
		t.Fatalf("token: %d", a.status)
	}
	if s.RefreshTokenLive(first) || !s.RefreshTokenLive(refreshToken(o)) {
		t.Error("after a rotation the old token should be dead and the new one live")
	}
	o.Delete()
	if s.RefreshTokenLive(refreshToken(o)) {
		t.Error("a deleted org's token is live")
	}
}
