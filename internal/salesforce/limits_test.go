package salesforce_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// However many orgs are checked at once, no more calls reach one host per second than the
// courtesy limit allows (an upper bound: a slow machine only makes it easier to meet).
func TestCourtesyLimitPerHost(t *testing.T) {
	s := sftest.NewServer(t)
	c := newClient(t, s, func(o *salesforce.Options) { o.HostQPS = 20 })
	var creds []salesforce.AuthURL
	for range 20 {
		creds = append(creds, authURL(t, s.AddOrg(sftest.OrgSpec{})))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, cr := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, _ = c.Check(ctx, cr)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	early, elapsed := s.TotalCalls(), time.Since(start)
	wg.Wait()
	// One call, then 20 per second: never more than 20 within a second.
	if limit := 1 + int(20*elapsed.Seconds()); early > limit {
		t.Fatalf("%d calls reached the host in %s, more than the limit allows (%d)", early, elapsed, limit)
	}
	if s.TotalCalls() != 40 {
		t.Fatalf("every check should still complete: %d calls, want 40", s.TotalCalls())
	}
}

// One org's calls are bounded too.
func TestCourtesyLimitPerOrg(t *testing.T) {
	s := sftest.NewServer(t)
	o := s.AddOrg(sftest.OrgSpec{})
	c := newClient(t, s, func(o *salesforce.Options) { o.OrgQPS = 2 })
	cr := authURL(t, o)
	start := time.Now()
	for range 5 {
		check(t, c, cr) // 2 + 1+1+1+1 calls
	}
	if n, d := s.TotalCalls(), time.Since(start); n != 6 || d < 2500*time.Millisecond {
		t.Fatalf("%d calls for one org in %s: the per-org bucket (2/s, a call every 500ms) did not hold them back", n, d)
	}
}
