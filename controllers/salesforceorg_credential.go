package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// An org's credential as its Secret holds it: whether the Secret is there (from cached metadata,
// without reading its data), and the credential read from it, directly from the API server, with
// the sentence that says what is wrong with it and how to fix it.

// dueCredential is the auth Secret's resourceVersion as the metadata cache has it. The cache
// holds only Secrets labelled as credentials; a Secret it lacks stalls the org without a read of
// its data (its creation or labelling wakes the org).
func (r *SalesforceOrgReconciler) dueCredential(ctx context.Context, sc *orgScope) (string, error) {
	org := sc.org
	name := org.CredentialSecret()
	meta := secretMeta()
	err := r.SecretMetadata.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, meta)
	switch {
	case apierrors.IsNotFound(err) && org.Source() == sfv1.CredentialSourceSandboxOf:
		return "", nil // not authorised yet: the check derives it
	case apierrors.IsNotFound(err):
		return "", r.secretMissing(ctx, sc)
	case err != nil:
		return "", unhandled(err, "Reading Secret %q failed", name)
	}
	return meta.ResourceVersion, nil
}

// secretMissing tells a Secret that does not exist from one that is not labelled as a
// credential, by its metadata alone (read live, never its data).
func (r *SalesforceOrgReconciler) secretMissing(ctx context.Context, sc *orgScope) error {
	org := sc.org
	name := org.CredentialSecret()
	meta := secretMeta()
	err := r.APIReader.Get(quiet(ctx), types.NamespacedName{Namespace: org.Namespace, Name: name}, meta)
	switch {
	case apierrors.IsNotFound(err):
		return r.credentialFailed(ctx, sc, "", sfv1.ReasonSecretNotFound, "%s", secretNotFoundMessage(org))
	case err != nil:
		return unhandled(err, "Reading Secret %q failed", name)
	case meta.Labels[sfv1.CredentialLabel] != "true":
		return r.credentialFailed(ctx, sc, "", sfv1.ReasonSecretNotLabelled,
			"Secret %q is not labelled %s=true, and the operator reads only Secrets that opt in: kubectl label secret %s %s=true.",
			name, sfv1.CredentialLabel, name, sfv1.CredentialLabel)
	}
	// Labelled, and the cache has not seen it yet: its event will wake the org.
	return retry(r.retryBase(), sfv1.ReasonProgressing, "Waiting for Secret %q to reach the operator's cache.", name)
}

func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// secretExists asks the metadata cache whether a Secret exists.
func (r *SalesforceOrgReconciler) secretExists(ctx context.Context, key types.NamespacedName) (bool, error) {
	err := r.SecretMetadata.Get(ctx, key, secretMeta())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// secretNotFoundMessage says how to create the org's credential Secret.
func secretNotFoundMessage(org *sfv1.SalesforceOrg) string {
	name := org.CredentialSecret()
	if org.Source() == sfv1.CredentialSourceJWT {
		key := org.Spec.JWT.PrivateKeySecretRef.Key
		return fmt.Sprintf("Secret %q not found in namespace %q: create it with the connected app's private key under key %q, labelled %s=true (kubectl create secret generic %s --from-file=%s=server.key && kubectl label secret %s %s=true).",
			name, org.Namespace, key, sfv1.CredentialLabel, name, key, name, sfv1.CredentialLabel)
	}
	key := org.AuthSecretKey()
	return fmt.Sprintf("Secret %q not found in namespace %q: create it with the org's SFDX auth URL under key %q, labelled %s=true (kubectl create secret generic %s --from-literal=%s=\"$(sf org auth show-sfdx-auth-url --target-org <alias> --json | jq -r .result.sfdxAuthUrl)\" && kubectl label secret %s %s=true).",
		name, org.Namespace, key, sfv1.CredentialLabel, name, key, name, sfv1.CredentialLabel)
}

// credential reads the credential Secret (directly, never from a cache) and builds the
// credential from it: an auth URL (restoring a reverted rotation, and probing whether a rotation
// could be saved), or a JWT bearer grant.
func (r *SalesforceOrgReconciler) credential(ctx context.Context, sc *orgScope) (salesforce.Credential, *corev1.Secret, error) {
	org := sc.org
	name := org.CredentialSecret()
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(quiet(ctx), types.NamespacedName{Namespace: org.Namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, r.credentialFailed(ctx, sc, "", sfv1.ReasonSecretNotFound, "%s", secretNotFoundMessage(org))
		}
		return nil, nil, unhandled(err, "Reading Secret %q failed", name)
	}
	if secret.Labels[sfv1.CredentialLabel] != "true" {
		return nil, nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretNotLabelled,
			"Secret %q is not labelled %s=true, and the operator reads only Secrets that opt in: kubectl label secret %s %s=true.",
			name, sfv1.CredentialLabel, name, sfv1.CredentialLabel)
	}
	sc.secret = secret
	if org.Source() == sfv1.CredentialSourceJWT {
		cred, err := r.jwtCredential(ctx, sc, secret)
		return cred, secret, err
	}
	key := org.AuthSecretKey()
	raw, ok := secret.Data[key]
	if !ok {
		return nil, nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q: put the SFDX auth URL under %q, or set spec.authSecretRef.key to the key that holds it.",
			name, key, key)
	}
	cred, err := salesforce.ParseAuthURL(string(raw))
	if err != nil {
		return nil, nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonAuthURLInvalid,
			"Secret %q key %q: %s", name, key, sentence(err))
	}
	if cred, err = r.restoreReverted(ctx, sc, cred); err != nil {
		return nil, nil, err
	}
	if externalManager(sc.secret, sc.org) != "" {
		r.noteWritable(ctx, sc, sc.secret, nil)
	}
	return cred, sc.secret, nil
}

// jwtCredential builds the JWT bearer credential from spec.jwt and its Secret. The login host
// defaults by type (test.salesforce.com for sandboxes and scratch orgs), and so does the audience.
func (r *SalesforceOrgReconciler) jwtCredential(ctx context.Context, sc *orgScope, secret *corev1.Secret) (salesforce.Credential, error) {
	org, spec := sc.org, sc.org.Spec.JWT
	key := spec.PrivateKeySecretRef.Key
	if key == "" {
		key = "tls.key"
	}
	pemBytes, ok := secret.Data[key]
	if !ok {
		return nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q: put the connected app's private key (PEM) under %q, or set spec.jwt.privateKeySecretRef.key to the key that holds it.",
			secret.Name, key, key)
	}
	if err := salesforce.CheckPrivateKey(pemBytes); err != nil {
		return nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonAuthConfigInvalid,
			"Secret %q key %q: %s", secret.Name, key, sentence(err))
	}
	clientID := spec.ClientID
	if spec.ClientIDKey != "" {
		v, ok := secret.Data[spec.ClientIDKey]
		if !ok || strings.TrimSpace(string(v)) == "" {
			return nil, r.credentialFailed(ctx, sc, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
				"Secret %q has no key %q: put the connected app's consumer key under %q, or set spec.jwt.clientId.",
				secret.Name, spec.ClientIDKey, spec.ClientIDKey)
		}
		clientID = strings.TrimSpace(string(v))
	}
	return salesforce.JWTBearer{
		ConsumerKey:   clientID,
		Username:      spec.Username,
		PrivateKeyPEM: pemBytes,
		Sandbox:       org.Spec.Type == sfv1.OrgTypeSandbox || org.Spec.Type == sfv1.OrgTypeScratch,
		LoginURL:      spec.LoginURL,
	}, nil
}

// credentialFailed records a credential that cannot be used as checked (for the Secret version
// it read) and stalls: nothing changes until a person fixes the Secret, whose change wakes the org.
func (r *SalesforceOrgReconciler) credentialFailed(ctx context.Context, sc *orgScope, secretVersion, reason, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	org := sc.org
	org.Status.LastCheckTime = &metav1.Time{Time: time.Now()}
	org.Status.CheckedSecretVersion = secretVersion
	sc.checked = true
	r.setDisconnected(ctx, org, reason, msg)
	return stall(r.interval(org), reason, "%s", msg)
}
