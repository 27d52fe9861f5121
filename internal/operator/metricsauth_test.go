package operator

import (
	"crypto/sha256"
	"net/http"
	"testing"
	"time"
)

// The review caches never hold more than their bound, whatever a flood of tokens brings, and an
// entry expires.
func TestReviewCacheIsBounded(t *testing.T) {
	c := newTTLCache[bool](8)
	for i := range 100 {
		c.put(sha256.Sum256([]byte{byte(i)}), true, time.Minute)
		if len(c.m) > 8 {
			t.Fatalf("%d entries after %d puts, bound 8", len(c.m), i+1)
		}
	}
	k := sha256.Sum256([]byte("gone"))
	c.put(k, true, -time.Second)
	if _, ok := c.get(k); ok {
		t.Error("an expired entry was returned")
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer ": "", "": "", "abc": "",
	} {
		req := &http.Request{Header: http.Header{}}
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		if got, ok := bearerToken(req); ok != (want != "") || ok && got != want {
			t.Errorf("%q: %q %v, want %q", header, got, ok, want)
		}
	}
}
