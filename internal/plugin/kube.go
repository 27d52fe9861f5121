package plugin

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --salesforce-ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--salesforce-ca-file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// writeAuthSecret puts the auth URL under key in the Secret ns/name, creating it when missing,
// and labels it as a credential so that the operator may read it. The value is never printed;
// API errors are about the Secret's name, never its data.
func writeAuthSecret(ctx context.Context, c client.Client, ns, name, key string, a salesforce.AuthURL) (created bool, err error) {
	s := &corev1.Secret{}
	err = c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{sfv1.CredentialLabel: "true"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{key: []byte(a.Reveal())},
		}
		if err := c.Create(ctx, s); err != nil {
			return false, fmt.Errorf("creating Secret %s/%s: %w", ns, name, apiError(err))
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading Secret %s/%s: %w", ns, name, apiError(err))
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[sfv1.CredentialLabel] = "true"
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[key] = []byte(a.Reveal())
	if err := c.Update(ctx, s); err != nil {
		return false, fmt.Errorf("updating Secret %s/%s: %w", ns, name, apiError(err))
	}
	return false, nil
}

// apiError keeps an API error's status message only: an admission refusal or an RBAC denial,
// never a request body.
func apiError(err error) error {
	if st, ok := err.(apierrors.APIStatus); ok {
		return fmt.Errorf("%s", st.Status().Message)
	}
	return err
}

// requestCheck sets the reconcile-requested-at annotation to a fresh value and returns it: the
// operator checks the org at once and echoes the value to status.lastHandledReconcileAt.
func requestCheck(ctx context.Context, c client.Client, org *sfv1.SalesforceOrg) (string, error) {
	v := time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(org.DeepCopy())
	if org.Annotations == nil {
		org.Annotations = map[string]string{}
	}
	org.Annotations[sfv1.ReconcileRequestedAtAnnotation] = v
	if err := c.Patch(ctx, org, patch); err != nil {
		return "", fmt.Errorf("requesting a check of SalesforceOrg %s/%s: %w", org.Namespace, org.Name, apiError(err))
	}
	return v, nil
}

// waitForAnswer polls the org until the operator has handled the request v, and returns the org
// as it then was.
func waitForAnswer(parent context.Context, c client.Client, key types.NamespacedName, v string, timeout time.Duration) (*sfv1.SalesforceOrg, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		org := &sfv1.SalesforceOrg{}
		if err := c.Get(ctx, key, org); err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("reading SalesforceOrg %s: %w", key, apiError(err))
		}
		if org.Status.LastHandledReconcileAt == v {
			return org, nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil, &ExitError{Code: ExitNoAnswer, Err: fmt.Errorf("interrupted while waiting for the operator's check of SalesforceOrg %s: what was written stays, and the check still runs; see it with: kubectl salesforce test %s -n %s",
					key, key.Name, key.Namespace)}
			}
			return nil, &ExitError{Code: ExitNoAnswer, Err: fmt.Errorf("the operator did not answer the check of SalesforceOrg %s within %s: is it running, and does it watch namespace %s?",
				key, timeout, key.Namespace)}
		case <-tick.C:
		}
	}
}

// report prints the org's connection and readiness with the reason and message that explain
// them, and returns an ExitError unless the org is Ready: a Connected org that is not Ready (a
// wrong spec.type, a Dev Hub that is none) must fail a CI gate too. The reason is the Connected
// condition's while the org is not Connected, else Ready's.
func report(w io.Writer, org *sfv1.SalesforceOrg) error {
	conn := org.Status.Connection
	if conn == "" {
		conn = sfv1.ConnectionUnknown
	}
	ready := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionReady)
	isReady := ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == org.Generation
	cond := ready
	if conn != sfv1.ConnectionConnected || isReady {
		if c := meta.FindStatusCondition(org.Status.Conditions, sfv1.ConditionConnected); c != nil {
			cond = c
		}
	}
	state := "Ready"
	if !isReady {
		state = "not Ready"
	}
	reason, msg := "", ""
	if cond != nil {
		reason, msg = cond.Reason, cond.Message
	}
	fmt.Fprintf(w, "salesforceorg/%s: %s, %s\n  reason:  %s\n  message: %s\n", org.Name, conn, state, reason, msg)
	if isReady {
		return nil
	}
	return &ExitError{Code: ExitNotReady}
}

// getOrg reads the SalesforceOrg ns/name; found is false when it does not exist.
func getOrg(ctx context.Context, c client.Client, ns, name string) (org *sfv1.SalesforceOrg, found bool, err error) {
	org = &sfv1.SalesforceOrg{}
	err = c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, org)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading SalesforceOrg %s/%s: %w", ns, name, apiError(err))
	}
	return org, true, nil
}

// existingOrg reads the SalesforceOrg name of the command's namespace, which must exist.
func (o *options) existingOrg(ctx context.Context, name string) (client.Client, *sfv1.SalesforceOrg, error) {
	ns, err := o.namespace()
	if err != nil {
		return nil, nil, err
	}
	kc, err := o.client()
	if err != nil {
		return nil, nil, err
	}
	org, found, err := getOrg(ctx, kc, ns, name)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, nil, fmt.Errorf("SalesforceOrg %s/%s not found", ns, name)
	}
	return kc, org, nil
}
