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
			if cred, perr := salesforce.ParseAuthURL(string(secret.Data[sfv1.DefaultAuthSecretKey])); perr == nil {
				sc.secret = secret
				org.Status.SandboxAuthSecret = secret.Name
				return cred, secret, nil
			}
		case err == nil:
			return nil, nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretUpdateFailed,
				"Secret %q exists but is not the operator's: delete or rename it, so that the operator can keep the sandbox's credential there.", key.Name)
		case !apierrors.IsNotFound(err):
			return nil, nil, unhandled(err, "Reading Secret %q failed", key.Name)
		}
	}
	cred, err := r.authorizeSandbox(ctx, sc)
	if err != nil {
		return nil, nil, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: key.Name}}
	if _, err := controllerutil.CreateOrUpdate(quiet(ctx), r.Client, secret, func() error {
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels["app.kubernetes.io/managed-by"] = "salesforce-operator"
		secret.Labels[sfv1.CredentialLabel] = "true"
		secret.Type = corev1.SecretTypeOpaque
		secret.Data = map[string][]byte{sfv1.DefaultAuthSecretKey: []byte(cred.Reveal())}
		return controllerutil.SetControllerReference(org, secret, r.Scheme())
	}); err != nil {
		return nil, nil, retry(r.retryBase(), sfv1.ReasonSecretUpdateFailed,
			"The sandbox was authorised, but writing its credential to Secret %q failed (%s). Check the operator's RBAC for create and update on secrets.",
			key.Name, apierrors.ReasonForError(err))
	}
	sc.secret = secret
	sc.writtenSecretVersion = secret.ResourceVersion
	org.Status.SandboxAuthSecret = secret.Name
	return cred, secret, nil
}

// authorizeSandbox asks the production org for the sandbox's credential.
func (r *SalesforceOrgReconciler) authorizeSandbox(ctx context.Context, sc *orgScope) (salesforce.AuthURL, error) {
	prodScope := &orgScope{org: sc.prod.DeepCopy(), mem: &orgMemory{}}
	prodCred, _, err := r.credential(ctx, prodScope)
	if err != nil {
		msg := fmt.Sprintf("The production org %q's credential cannot be used", sc.prod.Name)
		if c := findCondition(prodScope.org.Status.Conditions, sfv1.ConditionConnected); c != nil && c.Status == metav1.ConditionFalse {
			msg += ": " + c.Message
		}
		return salesforce.AuthURL{}, wait(r.retryBase(), sfv1.ReasonProductionOrgNotReady, "%s", msg)
	}
	var persist salesforce.Persist
	if a, ok := prodCred.(salesforce.AuthURL); ok {
		persist = r.persistFor(prodScope, a)
	}
	auth, err := r.Salesforce.AuthorizeSandbox(ctx, prodCred, persist, sc.org.Spec.SandboxOf.SandboxName)
	if err != nil {
		return salesforce.AuthURL{}, err
	}
	a, ok := auth.Credential.(salesforce.AuthURL)
	if !ok {
		return salesforce.AuthURL{}, &salesforce.Error{Reason: salesforce.ReasonAuthConfigInvalid,
			Message: "the production org authenticates with JWT; a sandbox authorised through it is not supported yet: give the sandbox its own jwt credential"}
	}
	return a, nil
}

// isCheckError is an error of the Salesforce client (a check outcome), as opposed to a typed
// phase outcome that must stop the reconcile as it is.
func isCheckError(err error) bool {
	var se *salesforce.Error
	return errors.As(err, &se)
}
