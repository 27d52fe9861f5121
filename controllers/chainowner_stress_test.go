package controllers_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// chainStressIterations is how many rounds TestProductionChainUnderLoad runs: a few in make test,
// CHAIN_STRESS_ITERATIONS=300 (make test-chains) for the full run.
func chainStressIterations(t *testing.T) int {
	if v := os.Getenv("CHAIN_STRESS_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAIN_STRESS_ITERATIONS=%q: want a positive number", v)
		}
		return n
	}
	return 15
}

// A production org and six sandboxes authorised through it, every one of them needing the
// production org's rotating refresh token at the same moment, round after round: the
// production org's check (its access token expired) and each sandbox's re-authorisation (its
// own tokens revoked). Salesforce revokes the whole chain the moment a spent refresh token is
// presented, and the fake does too: one replay and every org here would be disconnected for
// good. Every round must present 0 spent tokens and end with every org Connected.
func TestProductionChainUnderLoad(t *testing.T) {
	ns := newNamespace(t)
	// Secret reads as slow as a busy API server's: a reader that read the production Secret before
	// another reader's rotation reaches the client after it.
	mgrRequests.slowSecretReads(ns, 40*time.Millisecond)
	prodFake, _ := connectedOrg(t, ns, "prod", sftest.Production, sfv1.OrgTypeProduction)
	prodFake.SetRotateRefreshTokens(true) // reuse detection and concurrent-refresh refusal are on with it
	const sandboxes = 6
	var sbFakes []*sftest.Org
	var names []string
	for i := range sandboxes {
		name := fmt.Sprintf("sb%d", i)
		sb := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-" + name, Kind: sftest.Sandbox, Production: prodFake, SandboxName: name})
		sb.SetRotateRefreshTokens(true)
		sbFakes = append(sbFakes, sb)
		names = append(names, name)
		mustCreate(t, sandboxOfOrg(ns, name, "prod", name))
	}
	all := append([]string{"prod"}, names...)
	for _, n := range all {
		waitOrgReady(t, ns, n, metav1.ConditionTrue, sfv1.ReasonConnected)
	}

	type row struct {
		rounds                     string
		exchanges, spent, refused  int
		disconnected, notConnected int
	}
	var rows []row
	var why []string
	iterations := chainStressIterations(t)
	block := max(1, iterations/5)
	cur := row{}
	start := 0
	exchangesBefore := prodFake.RefreshesGranted()
	for i := range iterations {
		prodFake.ExpireAccessTokens()
		for _, sb := range sbFakes {
			sb.RevokeRefreshTokens()
		}
		var wg sync.WaitGroup
		reqs := make([]string, len(all))
		for j, n := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reqs[j] = requestCheck(t, ns, n)
			}()
		}
		wg.Wait()
		for j, n := range all {
			// Each org must handle the request and be Connected; one that is not within the
			// limit is counted (and the run goes on, so the table shows where it went wrong).
			deadline := time.Now().Add(15 * time.Second)
			for {
				o := getOrg(t, ns, n)
				c := meta.FindStatusCondition(o.Status.Conditions, sfv1.ConditionConnected)
				if o.Status.LastHandledReconcileAt == reqs[j] && c != nil && c.Status == metav1.ConditionTrue {
					break
				}
				if time.Now().After(deadline) {
					cur.disconnected++
					if c != nil {
						why = append(why, fmt.Sprintf("round %d, %s: %s: %s", i+1, n, c.Reason, c.Message))
					}
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		lastRound := i == iterations-1 || cur.disconnected > 0 // a revoked chain stays revoked: stop there
		if (i+1)%block == 0 || lastRound {
			cur.rounds = fmt.Sprintf("%d–%d", start+1, i+1)
			cur.exchanges = prodFake.RefreshesGranted() - exchangesBefore
			cur.spent = prodFake.SpentTokensPresented()
			cur.refused = prodFake.ConcurrentRefreshesRefused()
			for _, sb := range sbFakes {
				cur.spent += sb.SpentTokensPresented()
			}
			for _, n := range all {
				c := meta.FindStatusCondition(getOrg(t, ns, n).Status.Conditions, sfv1.ConditionConnected)
				if c == nil || c.Status != metav1.ConditionTrue {
					cur.notConnected++
				}
			}
			rows = append(rows, cur)
			if cur.disconnected > 0 {
				break
			}
			cur, start, exchangesBefore = row{}, i+1, prodFake.RefreshesGranted()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "production + %d sandboxOf sandboxes, %d rounds, every org needing the production token at once:\n", sandboxes, iterations)
	fmt.Fprintf(&b, "| rounds | production token exchanges | spent tokens presented | concurrent refreshes refused | disconnections | not Connected at the end |\n|---|---|---|---|---|---|\n")
	failed := false
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d |\n", r.rounds, r.exchanges, r.spent, r.refused, r.disconnected, r.notConnected)
		failed = failed || r.spent != 0 || r.disconnected != 0 || r.notConnected != 0
	}
	t.Log("\n" + b.String())
	if failed {
		t.Fatalf("a spent refresh token was presented, or an org was disconnected (see the table):\n%s", strings.Join(why[:min(len(why), 10)], "\n"))
	}
	for _, n := range all {
		for _, e := range orgEvents(t, ns, n) {
			if e.Type == "Warning" {
				t.Errorf("%s: a Warning event %s: %s", n, e.Reason, e.Note)
			}
		}
	}
}
