package controllers

import (
	"context"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// The org reconciler is the one owner of every org's credential chain; hand-outs
// (SalesforceAccessToken) get their access through it, never by reading the credential.

// orgAccess is what the hand-out reconciler needs of the chain owner.
type orgAccess interface {
	// Access returns a live access token of the org, through its chain (its lock, its claim).
	Access(ctx context.Context, org *sfv1.SalesforceOrg) (salesforce.Access, error)
	// Revoke revokes a handed-out access token at Salesforce, under the org's chain lock, and
	// drops it from the chain's session. org may be nil (the org is gone): then no lock is needed.
	Revoke(ctx context.Context, org *sfv1.SalesforceOrg, instanceURL, token string) error
}

// Access returns a live access token of org through the same session and lock as its checks.
// The chain is one of its own (what it learns of the Secret is the org's own reconcile's to
// report), and it never authorises a sandbox afresh: that is the sandbox's own check's work.
func (r *SalesforceOrgReconciler) Access(ctx context.Context, org *sfv1.SalesforceOrg) (salesforce.Access, error) {
	ch := r.chainFor(org.DeepCopy())
	actx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	return r.Salesforce.Access(actx, ch, "")
}

// Revoke revokes token at Salesforce; see orgAccess.
func (r *SalesforceOrgReconciler) Revoke(ctx context.Context, org *sfv1.SalesforceOrg, instanceURL, token string) error {
	var ch salesforce.Chain
	if org != nil {
		ch = r.chainFor(org.DeepCopy())
	}
	rctx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	return r.Salesforce.RevokeAccess(rctx, ch, instanceURL, token)
}
