package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// What the harness does in the cluster, all through the API server as a user would, and what it
// learns, only from what a user sees: org conditions, plus the fake's word on whether the refresh
// token in the Secret still works.

// org is one SalesforceOrg of a trial and its fake org.
type org struct {
	ns, name string
	fake     *sftest.Org
	original string // the auth URL first put in the Secret; never printed
}

func (o *org) secretName() string { return o.name + "-auth" }

// createOrg creates the fake org (rotating refresh tokens), its Secret and a SalesforceOrg
// checked once an hour, so that only manager starts and the harness's requests cause checks.
// marker, when set, is a "Test connection" request present from the start.
func (h *harness) createOrg(ctx context.Context, ns, name, marker string) (*org, error) {
	fo := h.fake.AddOrg(sftest.OrgSpec{Name: ns + "-" + name, Kind: sftest.Production})
	fo.SetRotateRefreshTokens(true)
	o := &org{ns: ns, name: name, fake: fo, original: fo.AuthURL()}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.secretName(), Labels: map[string]string{sfv1.CredentialLabel: "true"}},
		StringData: map[string]string{sfv1.DefaultAuthSecretKey: o.original}}
	so := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: sfv1.SalesforceOrgSpec{
		Type:          sfv1.OrgTypeProduction,
		AuthSecretRef: sfv1.SecretKeyReference{Name: o.secretName()},
		CheckInterval: &metav1.Duration{Duration: time.Hour},
	}}
	if marker != "" {
		so.Annotations = map[string]string{sfv1.ReconcileRequestedAtAnnotation: marker}
	}
	for _, obj := range []client.Object{secret, so} {
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
// the Connected reason is CredentialRejected; otherwise, at the deadline, what it last saw.
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
