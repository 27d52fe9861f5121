package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/controllers"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// What the harness does in the cluster, all through the API server as a user would, and what it
// learns, only from what a user sees: org conditions, plus the fake's word on whether the refresh
// token in the Secret still works.

// org is one SalesforceOrg of a trial and its fake org.
type org struct {
	ns, name string
	secret   string // the auth Secret's name
	fake     *sftest.Org
	original string // the auth URL first put in the Secret; never printed
}

func (o *org) secretName() string { return o.secret }

// orgOptions vary createOrgWith's org.
type orgOptions struct {
	marker string            // a "Test connection" request present from the start ("": none)
	labels map[string]string // the SalesforceOrg's labels (a shard, say)
	// on is an org whose fake org and Secret the new one names too (nil: a fake org and a
	// Secret of its own): two orgs on one Secret key, as admission would refuse.
	on *org
}

// createOrg creates the fake org (rotating refresh tokens), its Secret and a SalesforceOrg
// checked once an hour, so that only manager starts and the harness's requests cause checks.
// marker, when set, is a "Test connection" request present from the start.
func (h *harness) createOrg(ctx context.Context, ns, name, marker string) (*org, error) {
	return h.createOrgWith(ctx, ns, name, orgOptions{marker: marker})
}

// createOrgWith is createOrg with labels, or on the Secret of another org (opt.on).
func (h *harness) createOrgWith(ctx context.Context, ns, name string, opt orgOptions) (*org, error) {
	var objs []client.Object
	o := &org{ns: ns, name: name}
	if opt.on != nil {
		o.secret, o.fake, o.original = opt.on.secret, opt.on.fake, opt.on.original
	} else {
		fo := h.fake.AddOrg(sftest.OrgSpec{Name: ns + "-" + name, Kind: sftest.Production})
		fo.SetRotateRefreshTokens(true)
		o.secret, o.fake, o.original = name+"-auth", fo, fo.AuthURL()
		objs = append(objs, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.secret, Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			StringData: map[string]string{sfv1.DefaultAuthSecretKey: o.original}})
	}
	so := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: opt.labels}, Spec: sfv1.SalesforceOrgSpec{
		Type:          sfv1.OrgTypeProduction,
		AuthSecretRef: sfv1.SecretKeyReference{Name: o.secret},
		CheckInterval: &metav1.Duration{Duration: time.Hour},
	}}
	if opt.marker != "" {
		so.Annotations = map[string]string{sfv1.ReconcileRequestedAtAnnotation: opt.marker}
	}
	for _, obj := range append(objs, so) {
		if err := h.k8s.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("creating %s/%s: %w", ns, obj.GetName(), err)
		}
	}
	return o, nil
}

func (h *harness) createNamespace(ctx context.Context, ns string) error {
	return h.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
}

// deleteOrgs removes the orgs so that later managers do not check them. Namespaces cannot be
// deleted on envtest (no namespace controller), and the manager may be stopped, so the harness
// drops the finalizer itself.
func (h *harness) deleteOrgs(ctx context.Context, orgs []*org) error {
	for _, o := range orgs {
		so := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: o.ns, Name: o.name}}
		noFinalizers := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`))
		if err := h.k8s.Patch(ctx, so, noFinalizers); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("releasing %s/%s: %w", o.ns, o.name, err)
		}
		if err := h.k8s.Delete(ctx, so); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s/%s: %w", o.ns, o.name, err)
		}
	}
	return nil
}

// requestChecks sets the "Test connection" annotation of every org to a fresh marker, which the
// operator echoes to status.lastHandledReconcileAt once it handled it.
func (h *harness) requestChecks(ctx context.Context, orgs []*org) (string, error) {
	marker := h.newMarker()
	patch := client.RawPatch("application/merge-patch+json",
		[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, sfv1.ReconcileRequestedAtAnnotation, marker)))
	for _, o := range orgs {
		if err := h.k8s.Patch(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: o.ns, Name: o.name}}, patch); err != nil {
			return "", fmt.Errorf("requesting a check of %s/%s: %w", o.ns, o.name, err)
		}
	}
	return marker, nil
}

// writeSecret puts authURL in the org's Secret, as a GitOps tool reverting it would.
func (h *harness) writeSecret(ctx context.Context, o *org, authURL string) error {
	s := &corev1.Secret{}
	if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.secretName()}, s); err != nil {
		return err
	}
	s.Data = map[string][]byte{sfv1.DefaultAuthSecretKey: []byte(authURL)}
	return h.k8s.Update(ctx, s)
}

// secretToken is the refresh token the org's Secret holds now ("" when none parses).
func (h *harness) secretToken(ctx context.Context, o *org) (string, error) {
	s := &corev1.Secret{}
	if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.secretName()}, s); err != nil {
		return "", err
	}
	u, err := salesforce.ParseAuthURL(string(s.Data[sfv1.DefaultAuthSecretKey]))
	if err != nil {
		return "", nil
	}
	return u.RefreshToken, nil
}

// secretLive says whether the Secret's refresh token still works at the fake.
func (h *harness) secretLive(ctx context.Context, o *org) (bool, error) {
	t, err := h.secretToken(ctx, o)
	return err == nil && h.fake.RefreshTokenLive(t), err
}

// Verdicts. Every loss says why, in words that never hold a credential.
const (
	ok             = ""
	lostRejected   = "CredentialRejected"
	lostDeadSecret = "Connected, but the Secret's refresh token is dead"
)

// settle waits (up to timeout) until the operator handled marker on every org and says, per org:
// ok when Ready and Connected are True and the Secret's refresh token is live; lostRejected once
// the Connected reason is CredentialRejected and the Secret's refresh token is dead; otherwise, at
// the deadline, what it last saw.
func (h *harness) settle(ctx context.Context, orgs []*org, marker string, timeout time.Duration) (map[*org]string, error) {
	verdicts := map[*org]string{}
	last := map[*org]string{}
	deadline := time.Now().Add(timeout)
	for len(verdicts) < len(orgs) {
		for _, o := range orgs {
			if _, done := verdicts[o]; done {
				continue
			}
			v, seen, err := h.verdict(ctx, o, marker)
			if err != nil {
				return nil, err
			}
			if seen == "" {
				verdicts[o] = v
			}
			last[o] = seen
		}
		if len(verdicts) == len(orgs) {
			break
		}
		if time.Now().After(deadline) {
			for _, o := range orgs {
				if _, done := verdicts[o]; !done {
					verdicts[o] = fmt.Sprintf("no verdict in %s (last seen: %s)", timeout, last[o])
				}
			}
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return verdicts, nil
}

// verdict judges one org once: seen is "" when v is final, else what is still awaited.
func (h *harness) verdict(ctx context.Context, o *org, marker string) (v, seen string, err error) {
	so := &sfv1.SalesforceOrg{}
	if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, so); err != nil {
		return "", "", err
	}
	if so.Status.LastHandledReconcileAt != marker {
		return "", "the check request not handled yet", nil
	}
	conn := meta.FindStatusCondition(so.Status.Conditions, sfv1.ConditionConnected)
	ready := meta.IsStatusConditionTrue(so.Status.Conditions, sfv1.ConditionReady)
	switch {
	case conn == nil:
		return "", "no Connected condition", nil
	case conn.Reason == sfv1.ReasonCredentialRejected:
		// Final once the Secret's refresh token is dead too. With a live one the condition is
		// stale (the manager handled the request without a check: it waits for another
		// process's exchange claim to end) or transient (the hand-over cases end every session at
		// the fake, now and then between an exchange and the call that uses its access token):
		// the next check decides.
		live, err := h.secretLive(ctx, o)
		if err != nil {
			return "", "", err
		}
		if live {
			return "", "CredentialRejected, though the Secret's refresh token is live", nil
		}
		return lostRejected, "", nil
	case conn.Status != metav1.ConditionTrue || !ready:
		return "", fmt.Sprintf("Connected=%s %s, Ready=%v", conn.Status, conn.Reason, ready), nil
	}
	live, err := h.secretLive(ctx, o)
	if err != nil {
		return "", "", err
	}
	if !live {
		return "", lostDeadSecret, nil
	}
	return ok, "", nil
}

// whyCounts turns loss reasons into "2 CredentialRejected, 1 no verdict in time".
func whyCounts(why map[string]int) string {
	var parts []string
	for r, n := range why {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// claimSkew is the clock difference between two operator processes that an exchange claim
// tolerates (controllers' claimSkew): a claim holds another process off until its end plus this.
const claimSkew = 5 * time.Second

// claimWait is the longest a manager waits before exchanging a token whose Secret holds another
// process's claim: a killed process's claim, say, which nothing ends early.
const claimWait = salesforce.ClaimTTL + claimSkew

// claimsHeld counts the orgs' Secrets (each once) holding an exchange claim that still holds
// other processes off, what a stopped manager left behind, and says when the last of them stops
// doing so (its end plus the skew).
func (h *harness) claimsHeld(ctx context.Context, orgs []*org) (n int, end time.Time, err error) {
	seen := map[string]bool{}
	for _, o := range orgs {
		key := o.ns + "/" + o.secret
		if seen[key] {
			continue
		}
		seen[key] = true
		s := &corev1.Secret{}
		if err := h.k8s.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.secret}, s); err != nil {
			return 0, end, err
		}
		f := strings.Fields(s.Annotations[controllers.ExchangeClaimAnnotation])
		if len(f) != 2 {
			continue
		}
		if until, err := time.Parse(time.RFC3339, f[1]); err == nil && time.Now().Before(until.Add(claimSkew)) {
			n++
			if until.Add(claimSkew).After(end) {
				end = until.Add(claimSkew)
			}
		}
	}
	return n, end, nil
}

// fakesOf is the orgs' fake orgs, each once (two orgs may share one Secret, so one fake org).
func fakesOf(orgs []*org) []*sftest.Org {
	var out []*sftest.Org
	for _, o := range orgs {
		if !slices.Contains(out, o.fake) {
			out = append(out, o.fake)
		}
	}
	return out
}

// sumFakes adds f over the orgs' fake orgs.
func sumFakes(orgs []*org, f func(*sftest.Org) int) int {
	n := 0
	for _, fo := range fakesOf(orgs) {
		n += f(fo)
	}
	return n
}

// spentPresented is how many times a spent refresh token of the orgs was presented: Salesforce
// revokes the whole chain for it.
func spentPresented(orgs []*org) int {
	return sumFakes(orgs, (*sftest.Org).SpentTokensPresented)
}

func refreshesGranted(orgs []*org) int {
	return sumFakes(orgs, (*sftest.Org).RefreshesGranted)
}

func refreshesRefused(orgs []*org) int {
	return sumFakes(orgs, (*sftest.Org).ConcurrentRefreshesRefused)
}

// label sets the orgs' label key to value.
func (h *harness) label(ctx context.Context, orgs []*org, key, value string) error {
	patch := client.RawPatch("application/merge-patch+json",
		[]byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, value)))
	for _, o := range orgs {
		if err := h.k8s.Patch(ctx, &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: o.ns, Name: o.name}}, patch); err != nil {
			return fmt.Errorf("labelling %s/%s: %w", o.ns, o.name, err)
		}
	}
	return nil
}

// churn keeps exchanges coming: every 200–500 ms it ends the orgs' sessions at the fake
// (ExpireAccessTokens) and requests a check of each, so that every check the operator runs
// needs a refresh-token exchange. It runs until stop; seed seeds its random pauses.
type churn struct {
	halt   chan struct{}
	done   chan struct{}
	rounds int   // read after done
	err    error // read after done
}

func (h *harness) startChurn(ctx context.Context, orgs []*org, seed uint64) *churn {
	c := &churn{halt: make(chan struct{}), done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(seed, seed))
	go func() {
		defer close(c.done)
		for {
			for _, fo := range fakesOf(orgs) {
				fo.ExpireAccessTokens()
			}
			if _, err := h.requestChecks(ctx, orgs); err != nil {
				c.err = err
				return
			}
			c.rounds++
			t := time.NewTimer(200*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond))))
			select {
			case <-t.C:
			case <-c.halt:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				c.err = ctx.Err()
				return
			}
		}
	}()
	return c
}

// stop ends the churn and returns how many rounds it made.
func (c *churn) stop() (int, error) {
	select {
	case <-c.done:
	default:
		close(c.halt)
		<-c.done
	}
	return c.rounds, c.err
}
