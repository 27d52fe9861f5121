package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// An org's credential as its Secret holds it, read directly from the API server when the org's
// chain loads it (orgChain.Load), with the verdict that says what is wrong with it and how to fix
// it (credentialUnusable). Whether the Secret is there at all is the secretInCache step's
// question (salesforceorg_check.go), answered from cached metadata.

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

// credential reads the chain's credential Secret (directly, never from a cache) and builds the
// credential from it: an auth URL (restoring a reverted rotation), or a JWT bearer grant. What is
// wrong with the Secret is a verdict (credentialUnusable) that says how to fix it.
func (r *SalesforceOrgReconciler) credential(ctx context.Context, ch *orgChain) (salesforce.Credential, error) {
	org := ch.org
	name := ch.secret.Name
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(quiet(ctx), ch.secret, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, credentialUnusable(org, "", sfv1.ReasonSecretNotFound, "%s", secretNotFoundMessage(org))
		}
		return nil, unhandledErr(err, "Reading Secret %q failed", name)
	}
	if secret.Labels[sfv1.CredentialLabel] != "true" {
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretNotLabelled,
			"Secret %q is not labelled %s=true, and the operator reads only Secrets that opt in: kubectl label secret %s %s=true.",
			name, sfv1.CredentialLabel, name, sfv1.CredentialLabel)
	}
	ch.stored, ch.version = secret, secret.ResourceVersion
	if org.Source() == sfv1.CredentialSourceJWT {
		return jwtCredential(org, secret)
	}
	key := org.AuthSecretKey()
	raw, ok := secret.Data[key]
	if !ok {
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q: put the SFDX auth URL under %q, or set spec.authSecretRef.key to the key that holds it.",
			name, key, key)
	}
	cred, err := salesforce.ParseAuthURL(string(raw))
	if err != nil {
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonAuthURLInvalid,
			"Secret %q key %q: %s", name, key, sentence(err))
	}
	if cred, err = r.restoreReverted(ctx, ch, cred); err != nil {
		return nil, err
	}
	if externalManager(ch.stored, org) != "" {
		ch.noteWritable(ch.stored, nil)
	}
	return cred, nil
}

// jwtCredential builds the JWT bearer credential from spec.jwt and its Secret. The login host
// defaults by type (test.salesforce.com for sandboxes and scratch orgs), and so does the audience.
func jwtCredential(org *sfv1.SalesforceOrg, secret *corev1.Secret) (salesforce.Credential, error) {
	spec := org.Spec.JWT
	key := spec.PrivateKeySecretRef.Key
	if key == "" {
		key = "tls.key"
	}
	pemBytes, ok := secret.Data[key]
	if !ok {
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q: put the connected app's private key (PEM) under %q, or set spec.jwt.privateKeySecretRef.key to the key that holds it.",
			secret.Name, key, key)
	}
	if err := salesforce.CheckPrivateKey(pemBytes); err != nil {
		return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonAuthConfigInvalid,
			"Secret %q key %q: %s", secret.Name, key, sentence(err))
	}
	clientID := spec.ClientID
	if spec.ClientIDKey != "" {
		v, ok := secret.Data[spec.ClientIDKey]
		if !ok || strings.TrimSpace(string(v)) == "" {
			return nil, credentialUnusable(org, secret.ResourceVersion, sfv1.ReasonSecretKeyNotFound,
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
