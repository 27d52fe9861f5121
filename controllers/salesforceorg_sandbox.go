package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/rules"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// A sandbox authorised through its production org (spec.sandboxOf), as the Salesforce CLI does:
// the production org's session asks its Tooling API's sandboxAuth for a code for the sandbox's
// user, and the code is exchanged for the sandbox's refresh token. The credential lives in a
// Secret the operator owns (<org>-sandbox-auth, owned by the org), and is derived again, without a
// person, whenever Salesforce rejects it (a sandbox refresh kills the sandbox's tokens).

// production finds a sandboxOf org's production org, which must be Active and Connected, and in
// the same shard: only one process may exchange its refresh token.
func (r *SalesforceOrgReconciler) production(ctx context.Context, rc *orgReconcile) (stepResult, error) {
	org := rc.org
	if org.Source() != sfv1.CredentialSourceSandboxOf {
		return nextStep, nil
	}
	name := org.Spec.SandboxOf.ProductionOrgRef.Name
	prod := &sfv1.SalesforceOrg{}
	why := ""
	if err := r.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, prod); err != nil {
		if !apierrors.IsNotFound(err) {
			return nextStep, unhandledErr(err, "Reading the production org %q failed", name)
		}
		if err := r.shardOfProduction(ctx, org); err != nil {
			return nextStep, err
		}
		why = "does not exist (yet)"
	} else if !prod.IsActive() {
		why = "is Inactive"
	} else if prod.Status.Connection != sfv1.ConnectionConnected {
		why = "is not Connected"
	} else if prod.Source() == sfv1.CredentialSourceSandboxOf {
		why = "is itself a sandbox authorised through another org"
	}
	if why != "" {
		return nextStep, waitingErr(0, sfv1.ReasonProductionOrgNotReady,
			"The sandbox is authorised through its production org, SalesforceOrg %q, which %s: it waits until that org is Active and Connected.", name, why).disconnected()
	}
	rc.in.production = prod
	return nextStep, nil
}

// shardOfProduction tells a production org that is missing from a production org in another
// shard (this manager's cache holds its own shard only): read live, only then.
func (r *SalesforceOrgReconciler) shardOfProduction(ctx context.Context, org *sfv1.SalesforceOrg) *orgError {
	msg, err := rules.ShardConflict(ctx, r.APIReader, org)
	if client.IgnoreNotFound(err) != nil {
		return asOrgError(err)
	}
	if err != nil || msg == "" {
		return nil // none, or the cache has not seen it yet: its event wakes the sandbox
	}
	return stallingErr(checkIntervalOf(org), sfv1.ReasonShardMismatch, "%s", msg).disconnected()
}

// reauthoriseSandbox authorises a sandbox again through its production org after Salesforce
// rejected its own token (a sandbox refresh kills the sandbox's tokens), and checks it with the
// new credential. When the authorisation fails, the failed chain is returned with its error.
func (r *SalesforceOrgReconciler) reauthoriseSandbox(ctx context.Context, rc *orgReconcile, failed *orgChain) (*orgChain, *salesforce.CheckResult, error) {
	ch := r.chainFor(rc.org)
	ch.production = rc.in.production
	if _, _, err := r.deriveSandboxCredential(ctx, ch); err != nil {
		return failed, nil, err
	}
	rc.keepChainFindings(ch)
	res, err := r.checkChain(ctx, ch, ch.wroteVersion)
	rc.keepChainFindings(ch)
	return ch, res, err
}

// Keys of the Secret that holds a sandbox's credential: an auth URL when the production org uses
// one; the sandbox user and login URL when it uses JWT (the key stays in production's Secret).
const (
	sandboxUsernameKey = "username"
	sandboxLoginURLKey = "loginUrl"
)

// loadSandboxCredential is Load of a sandbox's chain: the credential in the Secret the operator
// owns, derived through the production org when there is none.
func (r *SalesforceOrgReconciler) loadSandboxCredential(ctx context.Context, ch *orgChain) (salesforce.Credential, error) {
	org := ch.org
	secret := &corev1.Secret{}
	err := r.APIReader.Get(quiet(ctx), ch.secret, secret)
	switch {
	case err == nil && metav1.IsControlledBy(secret, org):
		if cred, ok, err := r.storedSandboxCredential(ctx, ch, secret); err != nil || ok {
			if err == nil {
				ch.stored, ch.version = secret, secret.ResourceVersion
				ch.sandboxAuthSecret = secret.Name
			}
			return cred, err
		}
	case err == nil:
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretNameTaken,
			"Secret %q exists but the operator did not create it for this sandbox, and never takes over a Secret: delete or rename it, so that the operator can keep the sandbox's credential there.", ch.secret.Name)
	case !apierrors.IsNotFound(err):
		return nil, unhandledErr(err, "Reading Secret %q failed", ch.secret.Name)
	}
	cred, secret, err := r.deriveSandboxCredential(ctx, ch)
	if secret != nil {
		ch.version = secret.ResourceVersion
	}
	return cred, err
}

// deriveSandboxCredential authorises the sandbox through its production org and keeps the
// credential in the Secret the operator owns.
func (r *SalesforceOrgReconciler) deriveSandboxCredential(ctx context.Context, ch *orgChain) (salesforce.Credential, *corev1.Secret, error) {
	org := ch.org
	key := types.NamespacedName{Namespace: org.Namespace, Name: org.SandboxAuthSecretName()}
	auth, err := r.authorizeSandbox(ctx, ch)
	if err != nil {
		return nil, nil, err
	}
	data := map[string][]byte{}
	switch c := auth.Credential.(type) {
	case salesforce.AuthURL:
		data[sfv1.DefaultAuthSecretKey] = []byte(c.Reveal())
	case salesforce.JWTBearer:
		data[sandboxUsernameKey], data[sandboxLoginURLKey] = []byte(c.Username), []byte(c.LoginURL)
	}
	secret := &corev1.Secret{}
	err = r.APIReader.Get(quiet(ctx), key, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: key.Name, Labels: map[string]string{
			"app.kubernetes.io/managed-by": "salesforce-operator",
			sfv1.CredentialLabel:           "true",
		}}, Type: corev1.SecretTypeOpaque, Data: data}
		if err = controllerutil.SetControllerReference(org, secret, r.Scheme()); err == nil {
			err = r.Create(quiet(ctx), secret)
		}
	case err != nil:
	case !metav1.IsControlledBy(secret, org):
		return nil, nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretNameTaken,
			"Secret %q exists but the operator did not create it for this sandbox, and never takes over a Secret: delete or rename it, so that the operator can keep the sandbox's credential there.", key.Name)
	default:
		secret.Data = data
		delete(secret.Annotations, ExchangeClaimAnnotation)
		err = r.Update(quiet(ctx), secret)
	}
	if err != nil {
		return nil, nil, retryingErr(r.retryBase(), sfv1.ReasonSecretUpdateFailed,
			"The sandbox was authorised, but writing its credential to Secret %q failed (%s). Check the operator's RBAC for create and update on secrets.",
			key.Name, apierrors.ReasonForError(err))
	}
	r.ownWrites.wrote(secret)
	ch.stored, ch.wroteVersion = secret, secret.ResourceVersion
	ch.sandboxAuthSecret = secret.Name
	return auth.Credential, secret, nil
}

// storedSandboxCredential is the credential the owned Secret describes; ok is false when it
// describes none (derive it again).
func (r *SalesforceOrgReconciler) storedSandboxCredential(ctx context.Context, ch *orgChain, secret *corev1.Secret) (salesforce.Credential, bool, error) {
	if raw, ok := secret.Data[sfv1.DefaultAuthSecretKey]; ok {
		cred, err := salesforce.ParseAuthURL(string(raw))
		return cred, err == nil, nil
	}
	user := string(secret.Data[sandboxUsernameKey])
	if user == "" {
		return nil, false, nil
	}
	if ch.production == nil || ch.production.Source() != sfv1.CredentialSourceJWT {
		return nil, false, nil // production changed its credential source: derive again
	}
	prodCred, err := r.credential(ctx, r.chainFor(ch.production.DeepCopy()))
	if err != nil {
		return nil, false, &salesforce.ProductionError{Err: err}
	}
	j, ok := prodCred.(salesforce.JWTBearer)
	if !ok {
		return nil, false, nil
	}
	j.Username, j.LoginURL, j.Sandbox = user, string(secret.Data[sandboxLoginURLKey]), true
	return j, true, nil
}

// authorizeSandbox asks the production org for the sandbox's credential, through the production
// org's own chain: the same session and lock as the production org's checks.
func (r *SalesforceOrgReconciler) authorizeSandbox(ctx context.Context, ch *orgChain) (*salesforce.SandboxAuthorization, error) {
	if ch.production == nil { // a chain made without the production step (chainFor alone)
		return nil, waitingErr(0, sfv1.ReasonProductionOrgNotReady,
			"The sandbox is authorised through its production org, SalesforceOrg %q, which was not read for this chain.", ch.org.Spec.SandboxOf.ProductionOrgRef.Name)
	}
	prodChain := r.chainFor(ch.production.DeepCopy())
	cctx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	return r.Salesforce.AuthorizeSandbox(cctx, prodChain, "", ch.org.Spec.SandboxOf.SandboxName)
}

// productionFailed is the sandbox's check when the production org's credential failed: the
// production org's problem, which the sandbox waits out (its events wake the sandbox).
func (r *SalesforceOrgReconciler) productionFailed(rc *orgReconcile, cause error, now time.Time) (stepResult, error) {
	why := cause.Error()
	var se *salesforce.Error
	var oe *orgError
	switch {
	case errors.As(cause, &se):
		why = sentence(se)
	case errors.As(cause, &oe):
		why = oe.msg
	}
	name := rc.org.Spec.SandboxOf.ProductionOrgRef.Name
	msg := fmt.Sprintf("The sandbox is authorised through its production org, SalesforceOrg %q, whose credential failed: %s The sandbox reconnects when that org does.", name, why)
	if se != nil && se.Reason == salesforce.ReasonCredentialRejected {
		msg = fmt.Sprintf("The sandbox is authorised through its production org, SalesforceOrg %q, whose credential Salesforce rejected (%s): reconnect the production org (kubectl salesforce reconnect %s); the sandbox reconnects when it does.",
			name, withCodeOf(se), name)
	}
	rc.found.check = &checkRecord{at: now}
	return nextStep, waitingErr(checkIntervalOf(rc.org), sfv1.ReasonProductionOrgNotReady, "%s", msg).disconnected()
}

func withCodeOf(se *salesforce.Error) string {
	if se.Code != "" {
		return se.Code
	}
	return "no code given"
}
