package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// A sandbox authorised through its production org (spec.sandboxOf), as the Salesforce CLI does:
// the production org's session asks its Tooling API's sandboxAuth for a code for the sandbox's
// user, and the code is exchanged for the sandbox's refresh token. The credential lives in a
// Secret the operator owns (<org>-sandbox-auth, owned by the org), and is derived again, without a
// person, whenever Salesforce rejects it (a sandbox refresh kills the sandbox's tokens).

// production finds a sandboxOf org's production org, which must be Active and Connected.
func (r *SalesforceOrgReconciler) production(ctx context.Context, sc *orgScope) error {
	org := sc.org
	if org.Source() != sfv1.CredentialSourceSandboxOf {
		return nil
	}
	name := org.Spec.SandboxOf.ProductionOrgRef.Name
	prod := &sfv1.SalesforceOrg{}
	why := ""
	if err := r.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, prod); err != nil {
		if !apierrors.IsNotFound(err) {
			return unhandled(err, "Reading the production org %q failed", name)
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
		msg := fmt.Sprintf("The sandbox is authorised through its production org, SalesforceOrg %q, which %s: it waits until that org is Active and Connected.", name, why)
		r.setDisconnected(ctx, org, sfv1.ReasonProductionOrgNotReady, msg)
		return wait(0, sfv1.ReasonProductionOrgNotReady, "%s", msg)
	}
	sc.prod = prod
	return nil
}

// Keys of the Secret that holds a sandbox's credential: an auth URL when the production org uses
// one; the sandbox user and login URL when it uses JWT (the key stays in production's Secret).
const (
	sandboxUsernameKey = "username"
	sandboxLoginURLKey = "loginUrl"
)

// sandboxCredential reads the sandbox's credential from the Secret the operator owns, or derives
// it through the production org when there is none or force is set.
func (r *SalesforceOrgReconciler) sandboxCredential(ctx context.Context, sc *orgScope, force bool) (salesforce.Credential, *corev1.Secret, error) {
	org := sc.org
	key := types.NamespacedName{Namespace: org.Namespace, Name: org.SandboxAuthSecretName()}
	if !force {
		secret := &corev1.Secret{}
		err := r.APIReader.Get(quiet(ctx), key, secret)
		switch {
		case err == nil && metav1.IsControlledBy(secret, org):
			if cred, ok, err := r.storedSandboxCredential(ctx, sc, secret); err != nil || ok {
				if err == nil {
					sc.secret = secret
					org.Status.SandboxAuthSecret = secret.Name
				}
				return cred, secret, err
			}
		case err == nil:
			return nil, nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretUpdateFailed,
				"Secret %q exists but is not the operator's: delete or rename it, so that the operator can keep the sandbox's credential there.", key.Name)
		case !apierrors.IsNotFound(err):
			return nil, nil, unhandled(err, "Reading Secret %q failed", key.Name)
		}
	}
	auth, err := r.authorizeSandbox(ctx, sc)
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
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: key.Name}}
	if _, err := controllerutil.CreateOrUpdate(quiet(ctx), r.Client, secret, func() error {
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels["app.kubernetes.io/managed-by"] = "salesforce-operator"
		secret.Labels[sfv1.CredentialLabel] = "true"
		secret.Type = corev1.SecretTypeOpaque
		secret.Data = data
		return controllerutil.SetControllerReference(org, secret, r.Scheme())
	}); err != nil {
		return nil, nil, retry(r.retryBase(), sfv1.ReasonSecretUpdateFailed,
			"The sandbox was authorised, but writing its credential to Secret %q failed (%s). Check the operator's RBAC for create and update on secrets.",
			key.Name, apierrors.ReasonForError(err))
	}
	sc.secret = secret
	sc.writtenSecretVersion = secret.ResourceVersion
	org.Status.SandboxAuthSecret = secret.Name
	return auth.Credential, secret, nil
}

// storedSandboxCredential is the credential the owned Secret describes; ok is false when it
// describes none (derive it again).
func (r *SalesforceOrgReconciler) storedSandboxCredential(ctx context.Context, sc *orgScope, secret *corev1.Secret) (salesforce.Credential, bool, error) {
	if raw, ok := secret.Data[sfv1.DefaultAuthSecretKey]; ok {
		cred, err := salesforce.ParseAuthURL(string(raw))
		return cred, err == nil, nil
	}
	user := string(secret.Data[sandboxUsernameKey])
	if user == "" {
		return nil, false, nil
	}
	prodCred, err := r.productionCredential(ctx, sc)
	if err != nil {
		return nil, false, err
	}
	j, ok := prodCred.(salesforce.JWTBearer)
	if !ok {
		return nil, false, nil // production changed its credential source: derive again
	}
	j.Username, j.LoginURL, j.Sandbox = user, string(secret.Data[sandboxLoginURLKey]), true
	return j, true, nil
}

// productionCredential reads the production org's credential, as its own reconcile would.
func (r *SalesforceOrgReconciler) productionCredential(ctx context.Context, sc *orgScope) (salesforce.Credential, error) {
	prodScope := &orgScope{org: sc.prod.DeepCopy(), mem: &orgMemory{}}
	prodCred, _, err := r.credential(ctx, prodScope)
	if err != nil {
		msg := fmt.Sprintf("The production org %q's credential cannot be used", sc.prod.Name)
		if c := findCondition(prodScope.org.Status.Conditions, sfv1.ConditionConnected); c != nil && c.Status == metav1.ConditionFalse {
			msg += ": " + c.Message
		}
		return nil, wait(r.retryBase(), sfv1.ReasonProductionOrgNotReady, "%s", msg)
	}
	sc.prodScope = prodScope
	return prodCred, nil
}

// authorizeSandbox asks the production org for the sandbox's credential.
func (r *SalesforceOrgReconciler) authorizeSandbox(ctx context.Context, sc *orgScope) (*salesforce.SandboxAuthorization, error) {
	prodCred, err := r.productionCredential(ctx, sc)
	if err != nil {
		return nil, err
	}
	var persist salesforce.Persist
	if a, ok := prodCred.(salesforce.AuthURL); ok {
		persist = r.persistFor(sc.prodScope, a)
	}
	return r.Salesforce.AuthorizeSandbox(ctx, prodCred, persist, sc.org.Spec.SandboxOf.SandboxName)
}

// isCheckError is an error of the Salesforce client (a check outcome), as opposed to a typed
// phase outcome that must stop the reconcile as it is.
func isCheckError(err error) bool {
	var se *salesforce.Error
	return errors.As(err, &se)
}
