package controllers_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// handOutBenchOrgs is how many Connected orgs get a hand-out each, all at once.
const handOutBenchOrgs = 100

// BenchmarkHandOut measures what a SalesforceAccessToken costs: handOutBenchOrgs Connected orgs
// each get one at once, created by a pipeline's ServiceAccount bound to the shipped
// org-user ClusterRole, and then all are deleted at once. For each round it reports
// the Salesforce calls (the fake's count) and the API-server requests of the manager (the suite's
// request log: admission included, the manager serves it) per hand-out, and hand-outs per second:
// from the first create to the last Ready=True (AccessIssued) seen, polled every 20 ms. The
// withdrawal (delete: the Secret deleted, the token revoked) is reported the same way. The fake
// answers at once and the suite's manager has no Salesforce QPS bound; see the README's "Scale and
// sharding" for what the defaults change. Run it alone:
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s go test ./controllers -run '^$' -bench HandOut -benchtime 1x -v
func BenchmarkHandOut(b *testing.B) {
	ctx := context.Background()
	ns := testkit.Namespace(b, k8s, "bench")
	deployer := pipelineAccount(b, ns, "deployer")
	orgs := make([]string, handOutBenchOrgs)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%03d", i)
		fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-" + orgs[i], Kind: sftest.Production})
		testkit.PutSecret(b, k8s, ns, orgs[i]+"-auth", fo.AuthURL())
		org := newOrg(ns, orgs[i], sfv1.OrgTypeProduction, orgs[i]+"-auth")
		org.Spec.CheckInterval = &metav1.Duration{Duration: time.Hour}
		mustCreate(b, org)
	}
	testkit.Eventually(b, 2*time.Minute, "every org Connected", func() string {
		var list sfv1.SalesforceOrgList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return testkit.APIError(err)
		}
		connected := 0
		for _, o := range list.Items {
			if o.Status.Connection == sfv1.ConnectionConnected {
				connected++
			}
		}
		if connected < len(orgs) {
			return fmt.Sprintf("%d of %d Connected", connected, len(orgs))
		}
		return ""
	})
	time.Sleep(2 * time.Second) // the first checks' follow-ups (events, the writability probe) settle

	b.ResetTimer()
	var issue, withdraw handOutRound
	for round := 0; round < b.N; round++ {
		names := make([]string, len(orgs))
		for i, org := range orgs {
			names[i] = fmt.Sprintf("%s-%d", org, round)
		}
		issue = measureHandOuts(b, ns, len(names), func(i int) error {
			return deployer.Create(ctx, newAccessToken(ns, names[i], orgs[i]))
		}, func(list []sfv1.SalesforceAccessToken) int {
			ready := 0
			for _, at := range list {
				c := meta.FindStatusCondition(at.Status.Conditions, sfv1.ConditionReady)
				if c != nil && c.Status == metav1.ConditionTrue && c.Reason == sfv1.ReasonAccessIssued && c.ObservedGeneration == at.Generation {
					ready++
				}
			}
			return ready
		})
		withdraw = measureHandOuts(b, ns, len(names), func(i int) error {
			err := deployer.Delete(ctx, newAccessToken(ns, names[i], orgs[i]))
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}, func(list []sfv1.SalesforceAccessToken) int {
			return len(names) - len(list)
		})
	}
	b.StopTimer()
	b.ReportMetric(issue.perSecond(), "handouts/s")
	b.ReportMetric(issue.callsPer(), "sf-calls/handout")
	b.ReportMetric(issue.requestsPer(), "api-requests/handout")
	b.ReportMetric(withdraw.perSecond(), "withdrawals/s")
	b.ReportMetric(withdraw.callsPer(), "sf-calls/withdrawal")
	b.ReportMetric(withdraw.requestsPer(), "api-requests/withdrawal")
	b.Logf("%d orgs, one hand-out each at once (last round):\n"+
		"| | per second | Salesforce calls each | API-server requests each |\n|---|---|---|---|\n"+
		"| hand-out (create to Ready) | %.0f | %.2f | %.2f |\n| withdrawal (delete to gone) | %.0f | %.2f | %.2f |\n"+
		"hand-out requests: %s\nhand-out calls: %s\nwithdrawal requests: %s\nwithdrawal calls: %s",
		len(orgs), issue.perSecond(), issue.callsPer(), issue.requestsPer(),
		withdraw.perSecond(), withdraw.callsPer(), withdraw.requestsPer(),
		issue.requestsByKind(), issue.callsByEndpoint(), withdraw.requestsByKind(), withdraw.callsByEndpoint())
}

// handOutRound is what n hand-outs (or withdrawals), started at once, cost.
type handOutRound struct {
	n        int
	took     time.Duration
	requests map[string]int // the manager's API-server requests, by "VERB resource"
	calls    map[string]int // the fake's calls, by endpoint
}

func (r handOutRound) perSecond() float64 { return float64(r.n) / r.took.Seconds() }

func (r handOutRound) callsPer() float64 { return float64(total(r.calls)) / float64(r.n) }

func (r handOutRound) requestsPer() float64 { return float64(total(r.requests)) / float64(r.n) }

func (r handOutRound) requestsByKind() string { return perEach(r.requests, r.n) }

func (r handOutRound) callsByEndpoint() string { return perEach(r.calls, r.n) }

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// perEach lists m's counts divided by n, largest first.
func perEach(m map[string]int, n int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return m[b] - m[a] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(m[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// measureHandOuts starts do(0..n-1) at once, waits until done(list of the namespace's
// SalesforceAccessTokens) reaches n, and counts what it cost the manager and the fake meanwhile.
func measureHandOuts(b *testing.B, ns string, n int, do func(i int) error, done func([]sfv1.SalesforceAccessToken) int) handOutRound {
	b.Helper()
	ctx := context.Background()
	endpoints := []string{}
	for _, ep := range sftest.Endpoints {
		endpoints = append(endpoints, ep.Name)
	}
	endpoints = append(endpoints, "other")
	before := map[string]int{}
	for _, ep := range endpoints {
		before[ep] = fakeSF.Calls(ep)
	}
	mark := mgrRequests.mark()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = do(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("request %d: %s", i, testkit.APIError(err))
		}
	}
	var took time.Duration
	for deadline := start.Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var list sfv1.SalesforceAccessTokenList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			b.Fatal(testkit.APIError(err))
		}
		if got := done(list.Items); got == n {
			took = time.Since(start)
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("only %d of %d done after 2 minutes", got, n)
		}
	}
	time.Sleep(time.Second) // the last ones' follow-ups (events) are part of the cost
	r := handOutRound{n: n, took: took, requests: map[string]int{}, calls: map[string]int{}}
	for _, what := range append(mgrRequests.since(mark, ns), mgrRequests.since(mark, "")...) {
		r.requests[what]++
	}
	for _, ep := range endpoints {
		if d := fakeSF.Calls(ep) - before[ep]; d > 0 {
			r.calls[ep] = d
		}
	}
	return r
}
