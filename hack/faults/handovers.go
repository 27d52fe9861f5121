package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// Hand-over cases during rotation: one credential chain, one owner, while the owner changes.
// The fake rotates the refresh token on every exchange and refuses what Salesforce refuses, and
// a churn ends every session at the fake and requests a check of every org every 200–500 ms, so
// that exchanges happen all the time; meanwhile the leader is stopped with a standby running
// (SIGTERM, SIGKILL), or the orgs move to another shard's manager. A second org naming the
// Secret key of a first must stall (SecretKeyInUse) and leave the first's chain alone. Each case
// counts the spent refresh tokens presented, which revoke a chain at Salesforce: there must be
// none, but after a SIGKILL inside the write window (the rotated token lost with the killed
// process: the next owner can only present the spent one), counted apart as in the matrix.

const (
	handOverOrgs = 4 // orgs per hand-over case
	// handOverStopWithin: the leader is stopped, or the orgs moved, 0 to this long after one of
	// the churn's exchanges was granted, while the others of its round are in flight.
	handOverStopWithin = 50 * time.Millisecond
	// sharedKeyRounds is how many exchanges the shared-key case forces on the older org.
	sharedKeyRounds = 10
	// shardKey names the shards of the shard case.
	shard1, shard2 = "shard1", "shard2"
	// exchangesAfter is how many exchanges per org the new owner must be granted under the churn
	// before the case stops the churn and judges (orgs that get none are judged all the same).
	exchangesAfter = 2
)

// handOverLease are the lease settings of the leader hand-over cases: a killed leader's lease
// ends after handOverLeaseDuration instead of the shipped 60 s, which would only stretch the case.
var handOverLease = leaseSettings{Name: "15s / 10s / 2s", Args: []string{
	"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"}}

const handOverLeaseDuration = 15 * time.Second

// handOverCases runs the cases at once, each in its namespace with managers watching only it:
// they wait mostly (a lease, a claim), each on its own. seed seeds their random moments.
func (h *harness) handOverCases(ctx context.Context, seed uint64) (*HandOverResults, error) {
	seeds := rand.New(rand.NewPCG(seed, seed))
	r := &HandOverResults{Lease: handOverLease.Name}
	signals := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}
	r.Leader = make([]LeaderHandOver, len(signals))
	r.Shard, r.SharedKey = &ShardHandOver{}, &SharedKeyCase{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	run := func(name string, seed uint64, f func(rng *rand.Rand) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(rand.New(rand.NewPCG(seed, seed))); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	for i, sig := range signals {
		run("leader hand-over during rotation, "+signalName(sig), seeds.Uint64(), func(rng *rand.Rand) (err error) {
			r.Leader[i], err = h.leaderRotation(ctx, sig, rng)
			return err
		})
	}
	run("shard hand-over during rotation", seeds.Uint64(), func(rng *rand.Rand) (err error) {
		*r.Shard, err = h.shardRotation(ctx, rng)
		return err
	})
	run("two orgs on one Secret key", seeds.Uint64(), func(*rand.Rand) (err error) {
		*r.SharedKey, err = h.sharedKey(ctx)
		return err
	})
	wg.Wait()
	return r, errors.Join(errs...)
}

// createOrgs creates n orgs named org-0… in ns (which it creates), with opt.
func (h *harness) createOrgs(ctx context.Context, ns string, n int, opt orgOptions) ([]*org, error) {
	if err := h.createNamespace(ctx, ns); err != nil {
		return nil, err
	}
	var orgs []*org
	for i := range n {
		o, err := h.createOrgWith(ctx, ns, fmt.Sprintf("org-%d", i), opt)
		if err != nil {
			return nil, err
		}
		orgs = append(orgs, o)
	}
	return orgs, nil
}

// allOK fails unless every org's verdict is ok.
func allOK(orgs []*org, verdicts map[*org]string, who string, m *manager) error {
	for _, o := range orgs {
		if v := verdicts[o]; v != ok {
			return fmt.Errorf("%s did not connect %s: %s; its log: %s", who, o.name, v, m.log)
		}
	}
	return nil
}

// stopAfterExchange waits until the orgs' fake orgs granted one round of the churn's exchanges
// (one per org) and then one more, and returns 0 to handOverStopWithin after that one, at random:
// a moment while exchanges happen. It fails when m exits or nothing is granted in time.
func (h *harness) stopAfterExchange(ctx context.Context, orgs []*org, m *manager, rng *rand.Rand) error {
	if err := h.waitGrants(ctx, orgs, refreshesGranted(orgs)+len(orgs), m); err != nil {
		return err
	}
	if err := h.waitGrants(ctx, orgs, refreshesGranted(orgs)+1, m); err != nil {
		return err
	}
	return sleep(ctx, time.Duration(rng.Int64N(int64(handOverStopWithin)+1)))
}

// waitGrants waits until the orgs' fake orgs granted want refreshes in all.
func (h *harness) waitGrants(ctx context.Context, orgs []*org, want int, m *manager) error {
	deadline := time.Now().Add(afterFault)
	for refreshesGranted(orgs) < want {
		switch {
		case m.exited():
			return fmt.Errorf("the manager exited; its log: %s", m.log)
		case time.Now().After(deadline):
			return fmt.Errorf("the churn's checks made no refresh-token exchange in %s; the manager's log: %s", afterFault, m.log)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// waitEachGranted waits (up to timeout) until every org's fake org granted n refreshes more than
// it had in since, or the org's credential was rejected: the new owner exchanged under the churn.
// An org that does not get there is left to the final verdict; the wait fails only when a
// manager of ms exits or ctx ends.
func (h *harness) waitEachGranted(ctx context.Context, orgs []*org, since map[*org]int, n int, timeout time.Duration, ms ...*manager) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		done := true
		for _, o := range orgs {
			if o.fake.RefreshesGranted() >= since[o]+n {
				continue
			}
			rejected, err := h.rejected(ctx, o)
			if err != nil {
				return err
			}
			done = done && rejected
		}
		if done {
			return nil
		}
		for _, m := range ms {
			if m.exited() {
				return fmt.Errorf("a manager exited; its log: %s", m.log)
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// rejected says whether the org's Connected reason is CredentialRejected and its Secret's refresh
// token dead: lost, no exchange to wait for.
func (h *harness) rejected(ctx context.Context, o *org) (bool, error) {
	so := &sfv1.SalesforceOrg{}
	if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, so); err != nil {
		return false, err
	}
	if c := meta.FindStatusCondition(so.Status.Conditions, sfv1.ConditionConnected); c == nil || c.Reason != sfv1.ReasonCredentialRejected {
		return false, nil
	}
	live, err := h.secretLive(ctx, o)
	return !live, err
}

func grantsByOrg(orgs []*org) map[*org]int {
	out := map[*org]int{}
	for _, o := range orgs {
		out[o] = o.fake.RefreshesGranted()
	}
	return out
}

// tally counts the verdicts and the spent tokens of a hand-over. stoppedAt and sig say which
// losses (and the spent tokens their orgs' next owner presented) fall inside a SIGKILL's write
// window; sig 0: none does.
func (h *harness) tally(orgs []*org, verdicts map[*org]string, sig syscall.Signal, stoppedAt time.Time) Tally {
	t := Tally{Orgs: len(orgs), Why: map[string]int{}}
	for _, o := range orgs {
		v, s := verdicts[o], o.fake.SpentTokensPresented()
		if v == ok {
			t.OK++
			t.Spent += s
			continue
		}
		gap := stoppedAt.Sub(o.fake.RefreshIssuedAt())
		if sig == syscall.SIGKILL && gap >= 0 && gap < h.cfg.WriteWindow {
			t.InWindow++
			t.SpentInWindow += s
			t.Why[v+fmt.Sprintf(" (killed %s after the token was issued: inside the write window)", gap.Round(time.Millisecond))]++
			continue
		}
		if sig == syscall.SIGKILL && gap < 0 && -gap < h.cfg.WriteWindow {
			t.InWindow++
			t.SpentInWindow += s
			t.Why[v+fmt.Sprintf(" (the token was issued %s after the kill: its request was in flight)", (-gap).Round(time.Millisecond))]++
			continue
		}
		t.Lost++
		t.Spent += s
		t.Why[v]++
	}
	t.Refused = refreshesRefused(orgs)
	return t
}

// leaderRotation: two managers electing a leader in the case's namespace, the orgs rotating and
// churning; the leader stopped with sig while exchanges happen. The standby must take over and
// end with every org Connected, its Secret's token live, no spent token presented.
func (h *harness) leaderRotation(ctx context.Context, sig syscall.Signal, rng *rand.Rand) (LeaderHandOver, error) {
	r, began := LeaderHandOver{Signal: sig}, time.Now()
	ns := "rotating-leader-" + strings.ToLower(signalName(sig))
	marker := h.newMarker()
	orgs, err := h.createOrgs(ctx, ns, handOverOrgs, orgOptions{marker: marker})
	if err != nil {
		return r, err
	}
	args := append(leaderArgs(ns, handOverLease.Args...), watch(ns)...)
	leader, err := h.managers.start(args...)
	if err != nil {
		return r, err
	}
	defer func() { leader.stop(syscall.SIGKILL, killExit) }() // on the error paths
	l, err := h.waitLease(ctx, ns, leader, leaderTimeout, func(l *coordinationv1.Lease) bool { return holderOf(l) != "" })
	if err != nil {
		return r, fmt.Errorf("the first manager never led: %w", err)
	}
	holder := holderOf(l)
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err == nil {
		err = allOK(orgs, verdicts, "the leader", leader)
	}
	if err != nil {
		return r, err
	}
	standby, err := h.managers.start(args...)
	if err != nil {
		return r, err
	}
	defer func() { standby.stop(syscall.SIGKILL, killExit) }() // on the error paths
	if err := waitLog(ctx, standby, "attempting to acquire leader lease", leaderTimeout); err != nil {
		return r, fmt.Errorf("the standby: %w", err)
	}

	ch := h.startChurn(ctx, orgs, rng.Uint64())
	defer func() { _, _ = ch.stop() }() // on the error paths
	if err := h.stopAfterExchange(ctx, orgs, leader, rng); err != nil {
		return r, fmt.Errorf("the leader under the churn: %w", err)
	}
	stoppedAt := time.Now()
	r.ByLeader = refreshesGranted(orgs)
	if !leader.stop(sig, gracefulExit) {
		r.Problems = append(r.Problems, fmt.Sprintf("the leader did not exit within %s of %s and was killed", gracefulExit, signalName(sig)))
	}
	r.LeaderExited = leader.exitedAt.Sub(stoppedAt)
	var claimsEnd time.Time
	if r.ClaimsLeft, claimsEnd, err = h.claimsHeld(ctx, orgs); err != nil {
		return r, err
	}
	taken := func(l *coordinationv1.Lease) bool { return holderOf(l) != "" && holderOf(l) != holder }
	if _, err := h.waitLease(ctx, ns, standby, handOverLeaseDuration+afterFault, taken); err != nil {
		r.Problems = append(r.Problems, "the standby "+err.Error())
	} else {
		r.Acquired = time.Since(stoppedAt)
		// The churn goes on until the new leader exchanged each org's token (a claim the old
		// one left holds an org off up to claimWait).
		if err := h.waitEachGranted(ctx, orgs, grantsByOrg(orgs), exchangesAfter, claimWait+afterFault, standby); err != nil {
			r.Problems = append(r.Problems, "the new leader "+err.Error())
		}
	}
	if r.ChurnRounds, err = ch.stop(); err != nil {
		return r, err
	}
	// The last checks come once the old leader's claims ended, so that the new leader decides
	// every org itself (an org whose rotated token died with a killed leader shows it only then).
	if err := sleep(ctx, time.Until(claimsEnd)); err != nil {
		return r, err
	}
	if marker, err = h.requestChecks(ctx, orgs); err != nil {
		return r, err
	}
	if verdicts, err = h.settle(ctx, orgs, marker, afterFault+claimWait); err != nil {
		return r, err
	}
	r.Settled = time.Since(stoppedAt)
	if standby.exited() {
		r.Problems = append(r.Problems, "the new leader exited; its log: "+standby.log)
	}
	standby.stop(syscall.SIGTERM, gracefulExit)
	if err := h.recheckSecrets(ctx, verdicts); err != nil {
		return r, err
	}
	r.ByStandby = refreshesGranted(orgs) - r.ByLeader
	r.Tally = h.tally(orgs, verdicts, sig, stoppedAt)
	r.Problems = append(r.Problems, r.Tally.problems()...)
	h.progress("leader hand-over during rotation, %s: %s (the case took %s)", signalName(sig), r.Outcome(), time.Since(began).Round(time.Second))
	return r, h.deleteOrgs(ctx, orgs)
}

// shardRotation: a manager per shard, each leading its own lease; the orgs, in shard1, rotating
// and churning, are moved to shard2 while exchanges happen. shard1's manager drops them from its
// cache mid-exchange and shard2's picks them up at once: the exchange claim must keep the two
// from exchanging one token twice.
func (h *harness) shardRotation(ctx context.Context, rng *rand.Rand) (ShardHandOver, error) {
	r, began := ShardHandOver{}, time.Now()
	ns := "rotating-shard"
	marker := h.newMarker()
	orgs, err := h.createOrgs(ctx, ns, handOverOrgs, orgOptions{marker: marker, labels: map[string]string{sfv1.ShardLabel: shard1}})
	if err != nil {
		return r, err
	}
	var ms []*manager
	defer func() { // on the error paths
		for _, m := range ms {
			m.stop(syscall.SIGKILL, killExit)
		}
	}()
	for _, shard := range []string{shard1, shard2} {
		m, err := h.managers.start(append(leaderArgs(ns, watch(ns)...), "--watch-label-selector="+sfv1.ShardLabel+"="+shard)...)
		if err != nil {
			return r, err
		}
		ms = append(ms, m)
	}
	if err := h.waitLeaders(ctx, ns, len(ms), ms...); err != nil {
		return r, err
	}
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err == nil {
		err = allOK(orgs, verdicts, "the manager of "+shard1, ms[0])
	}
	if err != nil {
		return r, err
	}

	ch := h.startChurn(ctx, orgs, rng.Uint64())
	defer func() { _, _ = ch.stop() }() // on the error paths
	if err := h.stopAfterExchange(ctx, orgs, ms[0], rng); err != nil {
		return r, fmt.Errorf("the manager of %s under the churn: %w", shard1, err)
	}
	movedAt := time.Now()
	r.ByShard1 = refreshesGranted(orgs)
	if err := h.label(ctx, orgs, sfv1.ShardLabel, shard2); err != nil {
		return r, err
	}
	r.Moved = time.Since(movedAt)
	if r.ClaimsAtMove, _, err = h.claimsHeld(ctx, orgs); err != nil {
		return r, err
	}
	if err := h.waitEachGranted(ctx, orgs, grantsByOrg(orgs), exchangesAfter, claimWait+afterFault, ms...); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	if r.ChurnRounds, err = ch.stop(); err != nil {
		return r, err
	}
	if marker, err = h.requestChecks(ctx, orgs); err != nil {
		return r, err
	}
	// Only shard2's manager watches the orgs now: the check requested last is its.
	verdicts, err = h.settle(ctx, orgs, marker, afterFault+claimWait)
	if err != nil {
		return r, err
	}
	r.Settled = time.Since(movedAt)
	for _, m := range ms {
		if m.exited() {
			r.Problems = append(r.Problems, "a manager exited; its log: "+m.log)
		}
		m.stop(syscall.SIGTERM, gracefulExit)
	}
	if err := h.recheckSecrets(ctx, verdicts); err != nil {
		return r, err
	}
	r.ByShard2 = refreshesGranted(orgs) - r.ByShard1
	r.Tally = h.tally(orgs, verdicts, 0, movedAt)
	r.Problems = append(r.Problems, r.Tally.problems()...)
	h.progress("shard hand-over during rotation: %s (the case took %s)", r.Outcome(), time.Since(began).Round(time.Second))
	return r, h.deleteOrgs(ctx, orgs)
}

// waitLeaders waits until n leases in ns have a holder (each shard has its own lease).
func (h *harness) waitLeaders(ctx context.Context, ns string, n int, ms ...*manager) error {
	deadline := time.Now().Add(leaderTimeout)
	for {
		var leases coordinationv1.LeaseList
		if err := h.k8s.List(ctx, &leases, client.InNamespace(ns)); err != nil {
			return err
		}
		held := 0
		for i := range leases.Items {
			if holderOf(&leases.Items[i]) != "" {
				held++
			}
		}
		if held >= n {
			return nil
		}
		for _, m := range ms {
			if m.exited() {
				return fmt.Errorf("a manager exited before leading; its log: %s", m.log)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d shard managers led within %s", held, n, leaderTimeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// sharedKey: with admission off (the harness runs the managers without webhooks), a newer org
// names the Secret key of an older, Connected one. The newer must stall (Ready reason
// SecretKeyInUse) and never be checked, while the older stays Connected through
// sharedKeyRounds forced exchanges, with no spent token presented.
func (h *harness) sharedKey(ctx context.Context) (SharedKeyCase, error) {
	r, began := SharedKeyCase{Rounds: sharedKeyRounds}, time.Now()
	ns := "shared-key"
	if err := h.createNamespace(ctx, ns); err != nil {
		return r, err
	}
	marker := h.newMarker()
	older, err := h.createOrgWith(ctx, ns, "org-a", orgOptions{marker: marker})
	if err != nil {
		return r, err
	}
	orgs := []*org{older}
	m, err := h.managers.start(watch(ns)...)
	if err != nil {
		return r, err
	}
	defer func() { m.stop(syscall.SIGKILL, killExit) }() // on the error paths
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err == nil {
		err = allOK(orgs, verdicts, "the manager", m)
	}
	if err != nil {
		return r, err
	}
	newer, err := h.createOrgWith(ctx, ns, "org-b", orgOptions{marker: h.newMarker(), on: older})
	if err != nil {
		return r, err
	}
	orgs = append(orgs, newer)

	for range sharedKeyRounds {
		granted := older.fake.RefreshesGranted()
		older.fake.ExpireAccessTokens() // the next check must exchange the refresh token
		if marker, err = h.requestChecks(ctx, orgs); err != nil {
			return r, err
		}
		if verdicts, err = h.settle(ctx, []*org{older}, marker, h.cfg.Settle); err != nil {
			return r, err
		}
		if v := verdicts[older]; v == ok {
			r.OlderConnected++
		} else {
			r.why("the older org: " + v)
		}
		v, err := h.sharerVerdict(ctx, newer, marker, h.cfg.Settle)
		if err != nil {
			return r, err
		}
		if v == ok {
			r.NewerRefused++
		} else {
			r.why("the newer org: " + v)
		}
		r.Exchanges += older.fake.RefreshesGranted() - granted
	}
	m.stop(syscall.SIGTERM, gracefulExit)
	if err := h.recheckSecrets(ctx, verdicts); err != nil {
		return r, err
	}
	if verdicts[older] != ok {
		r.why("the older org, with the manager stopped: " + verdicts[older])
	}
	r.Spent, r.Refused = older.fake.SpentTokensPresented(), older.fake.ConcurrentRefreshesRefused()
	r.Problems = r.problems()
	h.progress("two orgs on one Secret key: %s (the case took %s)", r.Outcome(), time.Since(began).Round(time.Second))
	return r, h.deleteOrgs(ctx, orgs)
}

// sharerVerdict waits until the operator handled marker on o, an org naming another's Secret
// key: ok when it stalled (Ready False, reason SecretKeyInUse) without ever connecting;
// otherwise what it saw at the deadline, or at once when o ever connected.
func (h *harness) sharerVerdict(ctx context.Context, o *org, marker string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		so := &sfv1.SalesforceOrg{}
		if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, so); err != nil {
			return "", err
		}
		conn := meta.FindStatusCondition(so.Status.Conditions, sfv1.ConditionConnected)
		ready := meta.FindStatusCondition(so.Status.Conditions, sfv1.ConditionReady)
		seen := "the check request not handled yet"
		switch {
		case so.Status.LastConnectedTime != nil || (conn != nil && conn.Status == metav1.ConditionTrue) || so.Status.OrgID != "":
			return "checked: it connected with the other org's credential", nil
		case so.Status.LastHandledReconcileAt != marker:
		case ready == nil:
			seen = "no Ready condition"
		case ready.Status == metav1.ConditionFalse && ready.Reason == sfv1.ReasonSecretKeyInUse:
			return ok, nil
		default:
			seen = fmt.Sprintf("Ready=%s %s", ready.Status, ready.Reason)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("not stalled with %s in %s (last seen: %s)", sfv1.ReasonSecretKeyInUse, timeout, seen), nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return "", err
		}
	}
}
