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
	"k8s.io/client-go/util/retry"
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
//  2. persist then records the rotation in the org's rotation record, a Secret the operator
//     creates and owns (`<org>-rotation-<start of the org's UID>`, owned by the org; a Secret of
//     that name that the org does not control is never touched): the newest auth URL and hashes of the dead ones it
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

// rotationRecordName is the org's rotation record: the org's name and the start of its UID, so
// that no Secret that existed before the org can be it. A Secret of that name that the org does
// not control is never read or written (SecretNameTaken).
func rotationRecordName(org *sfv1.SalesforceOrg) string {
	uid := strings.ReplaceAll(string(org.UID), "-", "")
	if len(uid) > 8 {
		uid = uid[:8]
	}
	name := org.Name
	if len(name) > 230 {
		name = name[:230]
	}
	return name + "-rotation-" + uid
}

// legacyRotationRecordName is where earlier versions kept the record; it is still used when the
// org controls the Secret of that name, and never otherwise.
func legacyRotationRecordName(org *sfv1.SalesforceOrg) string {
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
	name     string
	taken    bool // a Secret of the record's name exists and is not the org's
	newest   salesforce.AuthURL
	replaced []string
}

func (rec *rotationRecord) isDead(a salesforce.AuthURL) bool {
	return rec != nil && slices.Contains(rec.replaced, hashOf(a))
}

// loadRotationRecord reads the org's rotation record, if it has one: the Secret of its name (or the
// legacy name) that the org controls. taken reports a Secret of the record's name that is not
// the org's.
func (r *SalesforceOrgReconciler) loadRotationRecord(ctx context.Context, org *sfv1.SalesforceOrg) (rec *rotationRecord, err error) {
	for _, name := range []string{rotationRecordName(org), legacyRotationRecordName(org)} {
		key := types.NamespacedName{Namespace: org.Namespace, Name: name}
		if exists, err := r.secretExists(ctx, key); err != nil || !exists {
			if err != nil {
				return nil, err
			}
			continue
		}
		s := &corev1.Secret{}
		if err := r.APIReader.Get(quiet(ctx), key, s); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		if !metav1.IsControlledBy(s, org) {
			if name == rotationRecordName(org) {
				return &rotationRecord{name: name, taken: true}, nil
			}
			continue // not ours: never trust a record the operator did not write for this org
		}
		rec := &rotationRecord{name: name}
		if u, err := salesforce.ParseAuthURL(string(s.Data[rotationRecordKey])); err == nil {
			rec.newest, rec.replaced = u, strings.Fields(string(s.Data[rotationReplacedKey]))
		}
		return rec, nil
	}
	return nil, nil
}

// restoreReverted runs when the chain loads the credential, before any exchange: when the auth
// Secret holds a value that Salesforce already rotated away, it writes the newest one back and
// returns it.
func (r *SalesforceOrgReconciler) restoreReverted(ctx context.Context, ch *orgChain, cred salesforce.AuthURL) (salesforce.AuthURL, error) {
	if ch.stored != nil && ch.stored.ResourceVersion == ch.org.Status.CheckedSecretVersion {
		return cred, nil // the version already checked (or written by us): nothing was written back since
	}
	rec, err := r.loadRotationRecord(ctx, ch.org)
	if err != nil {
		return cred, unhandledErr(err, "Reading the rotation record of the org failed")
	}
	if rec == nil || rec.taken || cred == rec.newest || !rec.isDead(cred) {
		return cred, nil
	}
	msg := revertedMessage(ch.org)
	if err := r.writeAuthSecret(ctx, ch, rec.newest, func(cur salesforce.AuthURL, ok bool) bool { return ok && rec.isDead(cur) }); err != nil {
		return cred, retryingErr(r.retryBase(), sfv1.ReasonSecretUpdateFailed,
			"Secret %q holds a refresh token that Salesforce already rotated away, and restoring the current one failed (%s). Check the operator's RBAC for update on secrets.",
			ch.org.CredentialSecret(), apierrors.ReasonForError(err))
	}
	r.Notify.warning(ctx, ch.org, sfv1.ReasonCredentialReverted, "RestoreRotation", "%s", msg)
	return rec.newest, nil
}

func revertedMessage(org *sfv1.SalesforceOrg) string {
	return fmt.Sprintf("Secret %q was overwritten with a refresh token that Salesforce had already rotated away; the operator restored the current one. If a tool (External Secrets, Argo CD, Flux) manages this Secret, turn off refresh-token rotation on the connected app, or let the operator own the Secret.",
		org.CredentialSecret())
}

// persistRotation saves a rotation of the org's chain: the rotated auth URL into the auth Secret
// (unless a person replaced it meanwhile), ending the exchange claim in the same write, then into
// the rotation record. The first write goes straight to the Secret as this reconcile last read or
// wrote it (one API call: the window in which a killed process could lose the new token),
// re-reading only on a conflict.
// restore says that old is a value the chain rotated away earlier, which a tool wrote back.
func (r *SalesforceOrgReconciler) persistRotation(ctx context.Context, ch *orgChain, old, rotated salesforce.AuthURL, restore bool) error {
	var rec *rotationRecord
	recLoaded := false
	err := r.writeAuthSecret(ctx, ch, rotated, func(cur salesforce.AuthURL, ok bool) bool {
		if ok && cur == old {
			return true
		}
		if !recLoaded {
			rec, _ = r.loadRotationRecord(ctx, ch.org)
			recLoaded = true
		}
		return ok && rec.isDead(cur)
	})
	if err != nil {
		why := "writing it back failed (" + string(apierrors.ReasonForError(err)) + ")"
		if ch.stored != nil && refusedWrite(err) {
			why = writeRefusal(ch.stored, err, rotated)
		}
		return fmt.Errorf("%s; the operator keeps it in memory and retries before anything else. The org's credential is lost if the operator stops first: fix it now",
			why)
	}
	if !recLoaded {
		rec, _ = r.loadRotationRecord(ctx, ch.org)
	}
	if err := r.writeRotationRecord(ctx, ch.org, rotated, old, rec); rec != nil && rec.taken {
		r.Notify.warning(ctx, ch.org, sfv1.ReasonSecretNameTaken, "PersistRotation", "%s.", sentence(err))
	} else if err != nil {
		// The auth Secret holds the new token, which is what matters; only revert protection is missing.
		log.FromContext(ctx).Info("the rotation record could not be written; a revert of the Secret cannot be undone after a restart",
			"reason", apierrors.ReasonForError(err))
	}
	if restore {
		r.Notify.warning(ctx, ch.org, sfv1.ReasonCredentialReverted, "RestoreRotation", "%s", revertedMessage(ch.org))
		return nil
	}
	r.Notify.normal(ctx, ch.org, sfv1.ReasonCredentialRotated, "PersistRotation",
		"Salesforce rotated the refresh token; the new one was saved to Secret %q.", ch.org.CredentialSecret())
	return nil
}

// writeAuthSecret writes a into the auth Secret's key when overwrite(current value) allows it,
// and records the Secret's new resourceVersion as the one checked. It first tries the Secret as
// this reconcile read it (ch.stored), and reads it again only after a conflict. A value a person
// put there meanwhile wins: nothing is written, and no error is returned.
func (r *SalesforceOrgReconciler) writeAuthSecret(ctx context.Context, ch *orgChain, a salesforce.AuthURL, overwrite func(cur salesforce.AuthURL, parsed bool) bool) error {
	key := ch.org.AuthSecretKey()
	name := types.NamespacedName{Namespace: ch.org.Namespace, Name: ch.org.CredentialSecret()}
	qctx := quiet(ctx)
	known := ch.stored
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Secret{}
		if known != nil {
			known.DeepCopyInto(cur)
			known = nil
		} else if err := r.APIReader.Get(qctx, name, cur); err != nil {
			return err
		}
		u, err := salesforce.ParseAuthURL(string(cur.Data[key]))
		_, claimed := cur.Annotations[ExchangeClaimAnnotation]
		if err == nil && u == a && !claimed {
			ch.wroteVersion = cur.ResourceVersion
			return nil
		}
		if (err != nil || u != a) && !overwrite(u, err == nil) {
			return nil // replaced by a person: their credential wins
		}
		if cur.Data == nil {
			cur.Data = map[string][]byte{}
		}
		cur.Data[key] = []byte(a.Reveal())
		delete(cur.Annotations, ExchangeClaimAnnotation) // the exchange is over
		if err := r.Update(qctx, cur); err != nil {
			return err
		}
		r.ownWrites.wrote(cur)
		ch.wroteVersion = cur.ResourceVersion
		ch.stored = cur
		return nil
	})
}

// writeRotationRecord creates or updates the org's rotation record: the newest auth URL, and the
// dead one it replaced in front of those the record already knew. A Secret of the record's name
// that the org does not control is never written.
func (r *SalesforceOrgReconciler) writeRotationRecord(ctx context.Context, org *sfv1.SalesforceOrg, newest, dead salesforce.AuthURL, rec *rotationRecord) error {
	replaced := []string{hashOf(dead)}
	if rec != nil {
		for _, h := range rec.replaced {
			if len(replaced) < rotationRecordsKept && !slices.Contains(replaced, h) {
				replaced = append(replaced, h)
			}
		}
	}
	data := map[string][]byte{
		rotationRecordKey:   []byte(newest.Reveal()),
		rotationReplacedKey: []byte(strings.Join(replaced, "\n")),
	}
	qctx := quiet(ctx)
	if rec != nil && rec.taken {
		return fmt.Errorf("Secret %q exists and is not the org's; the operator never takes over a Secret it did not create (%s): delete or rename it to get revert protection back",
			rec.name, sfv1.ReasonSecretNameTaken)
	}
	if rec != nil {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s := &corev1.Secret{}
			if err := r.APIReader.Get(qctx, types.NamespacedName{Namespace: org.Namespace, Name: rec.name}, s); err != nil {
				return err
			}
			if !metav1.IsControlledBy(s, org) {
				return fmt.Errorf("Secret %q is not the org's rotation record", rec.name)
			}
			s.Data = data
			return r.Update(qctx, s)
		})
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: org.Namespace, Name: rotationRecordName(org), Labels: map[string]string{
			"app.kubernetes.io/managed-by": "salesforce-operator",
			sfv1.CredentialLabel:           "true",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if err := controllerutil.SetControllerReference(org, s, r.Scheme()); err != nil {
		return err
	}
	return r.Create(qctx, s) // never an update of a Secret that exists: that is someone else's
}

// externalManager names the controller that owns the Secret's content, or "": not the org
// itself (a sandbox's credential Secret is the operator's own).
func externalManager(s *corev1.Secret, org *sfv1.SalesforceOrg) string {
	for _, ref := range s.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.UID != org.UID {
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
