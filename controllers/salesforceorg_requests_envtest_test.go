package controllers_test

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// requestLog records the manager's requests to the API server as "VERB resource[/subresource]",
// by namespace, so a test can count what one re-check costs the API server.
type requestLog struct {
	mu        sync.Mutex
	seen      []loggedRequest
	slowReads map[string]time.Duration // by namespace; see slowSecretReads
}

type loggedRequest struct{ namespace, what string }

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		ns, what := describeRequest(req)
		l.mu.Lock()
		l.seen = append(l.seen, loggedRequest{ns, what})
		slow := l.slowReads[ns]
		l.mu.Unlock()
		resp, err := rt.RoundTrip(req)
		if slow > 0 && what == "GET secrets" {
			// The answer was read now and arrives later: what it says may be stale by then.
			time.Sleep(time.Duration(rand.Int64N(int64(slow))))
		}
		return resp, err
	})
}

// slowSecretReads makes the manager's Secret reads in namespace ns take up to max, at random (0:
// as fast as they are), as a busy API server does: it widens the moments in which two readers
// of one credential can interleave.
func (l *requestLog) slowSecretReads(ns string, max time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slowReads == nil {
		l.slowReads = map[string]time.Duration{}
	}
	l.slowReads[ns] = max
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// describeRequest reads a request's namespace and "VERB resource[/subresource]" from its path
// (/api/v1/namespaces/NS/RESOURCE/NAME/SUB or /apis/GROUP/VERSION/namespaces/...).
func describeRequest(req *http.Request) (string, string) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	i := slices.Index(parts, "namespaces")
	if i < 0 || i+2 >= len(parts) {
		return "", req.Method + " " + req.URL.Path
	}
	what := parts[i+2]
	if i+4 < len(parts) {
		what += "/" + parts[i+4]
	}
	verb := req.Method
	if req.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	return parts[i+1], verb + " " + what
}

// mark is where the log ends now.
func (l *requestLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// since lists the requests in namespace ns logged after mark.
func (l *requestLog) since(mark int, ns string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.seen[mark:] {
		if r.namespace == ns {
			out = append(out, r.what)
		}
	}
	slices.Sort(out)
	return out
}

// A re-check of an org whose Secret did not change costs the API server one status write (the
// request's echo in lastHandledReconcileAt) and no Secret read; a refresh of the access token
// reads the Secret, live, once, and claims it (one write, which also proves a rotated token could
// be saved) before the refresh token is exchanged.
func TestRecheckAPIRequests(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "quiet", sftest.Production, sfv1.OrgTypeProduction)
	// The first check's follow-ups (its event, the Secret's writability probe) are done by the
	// time the first re-check is handled; count from the second.
	waitHandled(t, ns, "quiet", requestCheck(t, ns, "quiet"))

	want := []string{"PATCH salesforceorgs/status"}
	for i := 0; i < 3; i++ {
		mark := mgrRequests.mark()
		waitHandled(t, ns, "quiet", requestCheck(t, ns, "quiet"))
		if got := mgrRequests.since(mark, ns); !slices.Equal(got, want) {
			t.Errorf("re-check %d of an unchanged org sent %q to the API server, want %q", i+1, got, want)
		}
	}

	fo.ExpireAccessTokens()
	mark, calls := mgrRequests.mark(), fakeSF.CallsFor(fo)
	waitHandled(t, ns, "quiet", requestCheck(t, ns, "quiet"))
	want = []string{"GET secrets", "PATCH salesforceorgs/status", "PUT secrets"}
	if got := mgrRequests.since(mark, ns); !slices.Equal(got, want) {
		t.Errorf("a re-check that refreshed the access token sent %q to the API server, want %q", got, want)
	}
	// 401 with the held token, then (after reading the Secret) token and the check again.
	if n := fakeSF.CallsFor(fo) - calls; n != 3 {
		t.Errorf("the refresh cost %d Salesforce requests, want 3", n)
	}
}
