package controllers

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/rules"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// The steps that lead to a check and the check itself: is the auth Secret there (from cached
// metadata, without reading its data), is this org its chain's one owner, and the call to
// Salesforce through the chain, whose outcome (or Salesforce's error, wrapped) goes to summarise.

// secretInCache reads the auth Secret's resourceVersion from the metadata cache. The cache holds
// only Secrets labelled as credentials; a Secret it lacks stalls the org without a read of its
// data (its creation or labelling wakes the org).
func (r *SalesforceOrgReconciler) secretInCache(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	name := org.CredentialSecret()
	cached := secretMeta()
	err := r.SecretMetadata.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, cached)
	switch {
	case apierrors.IsNotFound(err) && org.Source() == sfv1.CredentialSourceSandboxOf:
		return nextStep, nil // not authorised yet: the check derives it
	case apierrors.IsNotFound(err):
		return nextStep, r.secretMissing(ctx, rc)
	case err != nil:
		return nextStep, unhandledErr(err, "Reading Secret %q failed", name)
	}
	rc.in.cachedSecretVersion = cached.ResourceVersion
	return nextStep, nil
}

// secretMissing tells a Secret that does not exist from one that is not labelled as a
// credential, by its metadata alone (read live, never its data).
func (r *SalesforceOrgReconciler) secretMissing(ctx context.Context, rc *orgReconcile) *orgError {
	org := rc.org
	name := org.CredentialSecret()
	live := secretMeta()
	err := r.APIReader.Get(quiet(ctx), types.NamespacedName{Namespace: org.Namespace, Name: name}, live)
	switch {
	case apierrors.IsNotFound(err):
		return rc.verdict(credentialUnusable(org, "", sfv1.ReasonSecretNotFound, "%s", secretNotFoundMessage(org)))
	case err != nil:
		return unhandledErr(err, "Reading Secret %q failed", name)
	case live.Labels[sfv1.CredentialLabel] != "true":
		return rc.verdict(credentialUnusable(org, "", sfv1.ReasonSecretNotLabelled,
			"Secret %q is not labelled %s=true, and the operator reads only Secrets that opt in: kubectl label secret %s %s=true.",
			name, sfv1.CredentialLabel, name, sfv1.CredentialLabel))
	}
	// Labelled, and the cache has not seen it yet: its event will wake the org.
	return retryingErr(r.retryBase(), sfv1.ReasonProgressing, "Waiting for Secret %q to reach the operator's cache.", name)
}

// verdict records a verdict on the credential as this reconcile's check, and returns it.
func (rc *orgReconcile) verdict(e *orgError) *orgError {
	rc.found.check = &checkRecord{at: time.Now(), secretVersion: e.verdictOn}
	return e
}

// chainOwner stops an org whose credential chain another, older org already stores at the same
// Secret key (admission refuses the second; this reports it when admission was bypassed): one
// chain, one owner. The Secret-to-orgs map makes it free unless two orgs name one Secret.
func (r *SalesforceOrgReconciler) chainOwner(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	key, ok := rules.ChainKey(org)
	if !ok || r.secretUsers == nil || len(r.secretUsers.orgs(org.Namespace, key.Secret)) < 2 {
		return nextStep, nil
	}
	sharers, err := rules.ChainSharers(ctx, r.APIReader, org)
	if err != nil {
		return nextStep, unhandledErr(err, "Listing the orgs that name Secret %q failed", key.Secret)
	}
	if len(sharers) == 0 || rules.Older(org, &sharers[0]) {
		return nextStep, nil
	}
	msg := rules.ChainInUseMessage(org, sharers[0].Name, !sharers[0].DeletionTimestamp.IsZero())
	rc.found.check = &checkRecord{at: time.Now()}
	return nextStep, stallingErr(checkIntervalOf(org), sfv1.ReasonSecretKeyInUse, "%s", msg).disconnected()
}

// check calls Salesforce through the org's credential chain (the client re-reads the Secret
// before any exchange, claims it, and persists a rotation before it uses the new token), and
// returns its outcome: the facts found, or the failure as an *orgError. A sandbox whose own token
// is rejected is authorised again through its production org (salesforceorg_sandbox.go).
func (r *SalesforceOrgReconciler) check(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	now := time.Now()
	ch := r.chainFor(rc.org)
	ch.production = rc.in.production
	rc.memory.chainID = ch.ChainID()
	res, err := r.checkChain(ctx, ch, rc.in.cachedSecretVersion)
	rc.keepChainFindings(ch)
	if rc.in.production != nil && salesforce.ReasonOf(err) == salesforce.ReasonCredentialRejected {
		ch, res, err = r.reauthoriseSandbox(ctx, rc, ch)
	}

	var held *claimHeldError
	var pe *salesforce.ProductionError
	var oe *orgError
	switch {
	case errors.As(err, &held): // also the production org's chain's, through a *ProductionError
		log.FromContext(ctx).V(1).Info("waiting for another process's claim on the credential", "claim", held.Error())
		return stepResult{outcome: outcomeConnection, requeueAfter: held.after}, nil
	case errors.As(err, &pe):
		return r.productionFailed(rc, pe.Err, now)
	case errors.As(err, &oe):
		if oe.verdictOn != nil {
			rc.found.check = &checkRecord{at: now, secretVersion: oe.verdictOn}
		}
		return nextStep, oe // the chain's own outcome: the Secret, not Salesforce
	case err != nil && !isSalesforceError(err):
		return nextStep, asOrgError(err)
	}
	checkDuration.WithLabelValues(reasonOf(err)).Observe(time.Since(now).Seconds())
	secretVersion := rc.in.cachedSecretVersion
	if ch.version != "" {
		secretVersion = ch.version
	}
	rc.found.check = &checkRecord{at: now, secretVersion: &secretVersion}
	if err != nil {
		rc.found.check.salesforceFailed = true
		return nextStep, salesforceFailure(err)
	}
	rc.found.check.facts = &res.Facts
	return stepResult{outcome: outcomeConnection, requeueAfter: untilNextCheck}, nil
}

func (r *SalesforceOrgReconciler) checkChain(ctx context.Context, ch *orgChain, storedVersion string) (*salesforce.CheckResult, error) {
	checkCtx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	return r.Salesforce.CheckChain(checkCtx, ch, storedVersion)
}

// keepChainFindings keeps what the chain learned of the Secret for summarise.
func (rc *orgReconcile) keepChainFindings(ch *orgChain) {
	if ch.writable != nil {
		rc.found.secretWritable = ch.writable
	}
	if ch.sandboxAuthSecret != "" {
		rc.found.sandboxAuthSecret = ch.sandboxAuthSecret
	}
}

// isSalesforceError is an error of the Salesforce client: a check's outcome.
func isSalesforceError(err error) bool {
	var se *salesforce.Error
	return errors.As(err, &se)
}
