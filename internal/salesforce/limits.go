package salesforce

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/time/rate"
)

// Courtesy limits: however many orgs the operator checks, it never sends more than a set number
// of calls per second to one Salesforce instance host, nor for one org, so that 10,000 orgs on one
// instance cannot trip Salesforce's own limits. A call waits for its turn (bounded by its context).

// limits holds the token buckets: one per host, created on first use, and one per session.
type limits struct {
	hostQPS, orgQPS float64

	mu    sync.Mutex
	hosts map[string]*rate.Limiter
}

func newLimits(hostQPS, orgQPS float64) *limits {
	return &limits{hostQPS: hostQPS, orgQPS: orgQPS, hosts: map[string]*rate.Limiter{}}
}

// bucket holds calls to qps a second. Its burst is one call, so that no window of a second ever
// sees more than qps of them (a burst of b would let b+qps through in the first second).
func bucket(qps float64) *rate.Limiter {
	if qps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(qps), 1)
}

func (l *limits) host(host string) *rate.Limiter {
	if l.hostQPS <= 0 {
		return nil
	}
	host = strings.ToLower(host)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.hosts[host]
	if lim == nil {
		lim = bucket(l.hostQPS)
		l.hosts[host] = lim
	}
	return lim
}

type orgLimiterKey struct{}

// withOrgLimiter makes every call under ctx wait on the org's bucket too.
func withOrgLimiter(ctx context.Context, lim *rate.Limiter) context.Context {
	if lim == nil {
		return ctx
	}
	return context.WithValue(ctx, orgLimiterKey{}, lim)
}

// wait takes a turn for a call to host: the host's bucket, then the org's.
func (l *limits) wait(ctx context.Context, host string) error {
	if lim := l.host(host); lim != nil {
		if err := lim.Wait(ctx); err != nil {
			return courtesyError(fmt.Sprintf("the operator's limit of %g calls per second to %s", l.hostQPS, host), err)
		}
	}
	if lim, _ := ctx.Value(orgLimiterKey{}).(*rate.Limiter); lim != nil {
		if err := lim.Wait(ctx); err != nil {
			return courtesyError(fmt.Sprintf("the operator's limit of %g calls per second for one org", l.orgQPS), err)
		}
	}
	return nil
}

func courtesyError(what string, err error) *Error {
	return &Error{Reason: ReasonRateLimited, Retryable: true, cause: err,
		Message: what + " left no turn before the call's deadline; the check is retried"}
}
