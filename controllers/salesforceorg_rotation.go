package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8sretry "k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// Refresh-token rotation. When Salesforce answers a token refresh with a new refresh token, the
// old one is already dead, so the new one must be durable before it is used:
//
//  1. The client calls persist from inside the token exchange, before the new access token is
//     used for anything (salesforce.Client.CheckWith). persist writes the new auth URL into the
//     org's Secret; if that fails, the check stops there and the client offers the same rotation
//     to persist first on every later attempt.
//  2. persist then records the rotation in the org's rotation record, a Secret the operator owns
//     (`<org>-rotation`, owned by the org): the newest auth URL and hashes of the dead ones it
//     replaced. When something else (a GitOps tool, External Secrets) writes a dead value back into
//     the auth Secret, the record tells it apart from a new credential a person put there, and the
//     operator restores the newest one: while alive and after a restart alike.
//  3. A person's new credential always wins: a value that is neither the one rotated from, nor
//     the newest, nor a dead one, is never overwritten.
//
// The writes run with their own timeout, not the reconcile's context, so a graceful shutdown
// finishes them, and through a context whose logger never dumps request bodies.

const (
	// rotationRecordKey holds the newest auth URL in the rotation record.
	rotationRecordKey = "sfdxAuthUrl"
	// rotationReplacedKey holds the SHA-256 hashes of the dead auth URLs, newest first, one a line.
	rotationReplacedKey = "replaced"
	// rotationRecordsKept bounds how many dead values a record remembers.
	rotationRecordsKept = 8
)

// rotationRecordName is the name of the org's rotation record Secret.
func rotationRecordName(org *sfv1.SalesforceOrg) string {
	name := org.Name + "-rotation"
	if len(name) > 253 {
		sum := sha256.Sum256([]byte(org.Name))
		name = org.Name[:230] + "-" + hex.EncodeToString(sum[:4]) + "-rotation"
	}
	return name
}

func hashOf(a salesforce.AuthURL) string {
	sum := sha256.Sum256([]byte(a.Reveal()))
	return hex.EncodeToString(sum[:])
}

// quiet is ctx with a logger that drops everything: client-go dumps request and response bodies
// through the context's logger at high verbosity, and a Secret's body is a credential.
func quiet(ctx context.Context) context.Context {
	return logr.NewContext(ctx, logr.Discard())
}

// rotationRecord is the parsed record; nil when the org has none.
type rotationRecord struct {
	newest   salesforce.AuthURL
	replaced []string
}

func (rec *rotationRecord) isDead(a salesforce.AuthURL) bool {
	return rec != nil && slices.Contains(rec.replaced, hashOf(a))
}

// loadRotationRecord reads the org's rotation record, if the metadata cache says it exists.
func (r *SalesforceOrgReconciler) loadRotationRecord(ctx context.Context, org *sfv1.SalesforceOrg) (*rotationRecord, error) {
	key := types.NamespacedName{Namespace: org.Namespace, Name: rotationRecordName(org)}
	if exists, err := r.secretExists(ctx, key); err != nil || !exists {
		return nil, err
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(quiet(ctx), key, s); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(s, org) {
		return nil, nil // not ours: never trust a record the operator did not write for this org
	}
	u, err := salesforce.ParseAuthURL(string(s.Data[rotationRecordKey]))
	if err != nil {
		return nil, nil
	}
	return &rotationRecord{newest: u, replaced: strings.Fields(string(s.Data[rotationReplacedKey]))}, nil
}

// restoreReverted is the rotation phase before a check: when the auth Secret holds a value that
// Salesforce already rotated away, it writes the newest one back and returns it.
func (r *SalesforceOrgReconciler) restoreReverted(ctx context.Context, sc *orgScope, cred salesforce.AuthURL) (salesforce.AuthURL, error) {
	if sc.secret != nil && sc.secret.ResourceVersion == sc.org.Status.CheckedSecretVersion {
		return cred, nil // the version already checked (or written by us): nothing was written back since
	}
	rec, err := r.loadRotationRecord(ctx, sc.org)
	if err != nil {
		return cred, unhandled(err, "Reading the rotation record of the org failed")
	}
	if rec == nil || cred == rec.newest || !rec.isDead(cred) {
		return cred, nil
	}
	msg := fmt.Sprintf("Secret %q was overwritten with a refresh token that Salesforce had already rotated away; the operator restored the current one. If a tool (External Secrets, Argo CD, Flux) manages this Secret, turn off refresh-token rotation on the connected app, or let the operator own the Secret.",
		sc.org.CredentialSecret())
	if err := r.writeAuthSecret(ctx, sc, rec.newest, func(cur salesforce.AuthURL, ok bool) bool { return ok && rec.isDead(cur) }); err != nil {
		return cred, retry(r.retryBase(), sfv1.ReasonSecretUpdateFailed,
			"Secret %q holds a refresh token that Salesforce already rotated away, and restoring the current one failed (%s). Check the operator's RBAC for update on secrets.",
			sc.org.CredentialSecret(), apierrors.ReasonForError(err))
	}
	r.Notify.warning(ctx, sc.org, sfv1.ReasonCredentialReverted, "RestoreRotation", "%s", msg)
	return rec.newest, nil
}

// persistFor is the salesforce.Persist of one check of the org: write the rotated auth URL into
// the auth Secret (unless a person replaced it meanwhile), then into the rotation record. The
// first write goes straight to the Secret as this reconcile read it (one API call: the window in
// which a killed process could lose the new token), re-reading only on a conflict.
func (r *SalesforceOrgReconciler) persistFor(sc *orgScope, old salesforce.AuthURL) salesforce.Persist {
	return func(ctx context.Context, rotated salesforce.AuthURL) error {
		var rec *rotationRecord
		recLoaded := false
		err := r.writeAuthSecret(ctx, sc, rotated, func(cur salesforce.AuthURL, ok bool) bool {
			if ok && cur == old {
				return true
			}
			if !recLoaded {
				rec, _ = r.loadRotationRecord(ctx, sc.org)
				recLoaded = true
			}
			return ok && rec.isDead(cur)
		})
		if err != nil {
			return fmt.Errorf("writing it back to Secret %q failed (%s); the operator keeps it in memory and retries before anything else. Check the operator's RBAC for update on secrets",
				sc.org.CredentialSecret(), apierrors.ReasonForError(err))
		}
		if !recLoaded {
			rec, _ = r.loadRotationRecord(ctx, sc.org)
		}
		if err := r.writeRotationRecord(ctx, sc.org, rotated, old, rec); err != nil {
			// The auth Secret holds the new token, which is what matters; only revert protection is missing.
			log.FromContext(ctx).Info("the rotation record could not be written; a revert of the Secret cannot be undone after a restart",
				"reason", apierrors.ReasonForError(err))
		}
		r.Notify.normal(ctx, sc.org, sfv1.ReasonCredentialRotated, "PersistRotation",
			"Salesforce rotated the refresh token; the new one was saved to Secret %q.", sc.org.CredentialSecret())
		return nil
	}
}

// writeAuthSecret writes a into the auth Secret's key when overwrite(current value) allows it,
// and records the Secret's new resourceVersion as the one checked. It first tries the Secret as
// this reconcile read it (sc.secret), and reads it again only after a conflict. A value a person
// put there meanwhile wins: nothing is written, and no error is returned.
func (r *SalesforceOrgReconciler) writeAuthSecret(ctx context.Context, sc *orgScope, a salesforce.AuthURL, overwrite func(cur salesforce.AuthURL, parsed bool) bool) error {
	key := sc.org.AuthSecretKey()
	name := types.NamespacedName{Namespace: sc.org.Namespace, Name: sc.org.CredentialSecret()}
	qctx := quiet(ctx)
	known := sc.secret
	return k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		cur := &corev1.Secret{}
		if known != nil {
			known.DeepCopyInto(cur)
			known = nil
		} else if err := r.APIReader.Get(qctx, name, cur); err != nil {
			return err
		}
		u, err := salesforce.ParseAuthURL(string(cur.Data[key]))
		if err == nil && u == a {
			sc.writtenSecretVersion = cur.ResourceVersion
			return nil
		}
		if !overwrite(u, err == nil) {
			return nil // replaced by a person: their credential wins
		}
		if cur.Data == nil {
			cur.Data = map[string][]byte{}
		}
		cur.Data[key] = []byte(a.Reveal())
		if err := r.Update(qctx, cur); err != nil {
			return err
		}
		sc.writtenSecretVersion = cur.ResourceVersion
		sc.secret = cur
		return nil
	})
}

// writeRotationRecord creates or updates the org's rotation record: the newest auth URL, and the
// dead one it replaced in front of those the record already knew.
func (r *SalesforceOrgReconciler) writeRotationRecord(ctx context.Context, org *sfv1.SalesforceOrg, newest, dead salesforce.AuthURL, rec *rotationRecord) error {
	replaced := []string{hashOf(dead)}
	if rec != nil {
		for _, h := range rec.replaced {
			if len(replaced) < rotationRecordsKept && !slices.Contains(replaced, h) {
				replaced = append(replaced, h)
			}
		}
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: rotationRecordName(org)}}
	_, err := controllerutil.CreateOrUpdate(quiet(ctx), r.Client, s, func() error {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels["app.kubernetes.io/managed-by"] = "salesforce-operator"
		s.Labels[sfv1.CredentialLabel] = "true"
		s.Type = corev1.SecretTypeOpaque
		s.Data = map[string][]byte{
			rotationRecordKey:   []byte(newest.Reveal()),
			rotationReplacedKey: []byte(strings.Join(replaced, "\n")),
		}
		return controllerutil.SetControllerReference(org, s, r.Scheme())
	})
	return err
}

// probeWritable sets the SecretWritable condition: can a rotated refresh token be saved to the
// auth Secret? A dry-run update answers for RBAC and admission; owner references and the
// well-known markers of External Secrets, Sealed Secrets, Argo CD and Flux say who would overwrite
// it. Probed once per Secret version, before the first check of that version.
func (r *SalesforceOrgReconciler) probeWritable(ctx context.Context, sc *orgScope, secret *corev1.Secret) {
	if sc.mem.probedSecretVersion == secret.ResourceVersion {
		return
	}
	status, reason, msg := metav1.ConditionTrue, sfv1.ReasonSecretWritable, fmt.Sprintf("A rotated refresh token can be saved to Secret %q.", secret.Name)
	err := r.Update(quiet(ctx), secret.DeepCopy(), client.DryRunAll)
	switch {
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
		status, reason = metav1.ConditionFalse, sfv1.ReasonSecretUpdateForbidden
		msg = fmt.Sprintf("The operator may not update Secret %q (%s), so a refresh token that Salesforce rotates would be lost. Turn off refresh-token rotation on the connected app, or grant the operator update on the Secret.",
			secret.Name, apierrors.ReasonForError(err))
	case err != nil:
		return // could not tell now; probe again next time
	default:
		if by := externalManager(secret); by != "" {
			status, reason = metav1.ConditionFalse, sfv1.ReasonSecretManagedExternally
			msg = fmt.Sprintf("Secret %q is managed by %s, which would overwrite a refresh token that Salesforce rotates with one it has already revoked (the operator restores it each time). Turn off refresh-token rotation on the connected app, or let the operator own the Secret.",
				secret.Name, by)
		}
	}
	sc.mem.probedSecretVersion = secret.ResourceVersion
	prev := findCondition(sc.org.Status.Conditions, sfv1.ConditionSecretWritable)
	setCondition(sc.org, sfv1.ConditionSecretWritable, status, reason, msg)
	if status == metav1.ConditionFalse && (prev == nil || prev.Reason != reason) {
		r.Notify.warning(ctx, sc.org, reason, "ProbeSecret", "%s", msg)
	}
}

// externalManager names the controller that owns the Secret's content, or "".
func externalManager(s *corev1.Secret) string {
	for _, ref := range s.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			return fmt.Sprintf("%s %q", ref.Kind, ref.Name)
		}
	}
	for k := range s.Annotations {
		switch {
		case strings.HasPrefix(k, "reconcile.external-secrets.io/"):
			return "External Secrets"
		case k == "argocd.argoproj.io/tracking-id":
			return "Argo CD"
		}
	}
	for k := range s.Labels {
		switch {
		case strings.HasPrefix(k, "reconcile.external-secrets.io/"):
			return "External Secrets"
		case strings.HasPrefix(k, "kustomize.toolkit.fluxcd.io/"), strings.HasPrefix(k, "helm.toolkit.fluxcd.io/"):
			return "Flux"
		}
	}
	return ""
}
