package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// An org's credential chain, as the Salesforce client's one owner of it sees it (see
// salesforce.Chain): the Secret and key that store it. The client calls Load under the chain's
// lock whenever it needs the stored value (before every exchange), Claim right before a refresh
// token is exchanged, and Persist when Salesforce rotated the token.
//
// Claim writes a claim into the Secret's annotations (who exchanges, until when) with the
// resourceVersion Load read. The write proves, at that moment, that a rotated token could be
// saved (RBAC, an immutable Secret, an admission policy all answer it), and it fences the
// exchange across processes: a leader hand-over, a shard hand-over or an upgrade never has two
// processes exchange one token, because the second sees the claim and waits until it ends, and
// a write that raced it conflicts. Persist writes the rotated token and ends the claim in the
// same update.

// ExchangeClaimAnnotation holds the claim on an auth Secret's refresh-token exchange:
// "<holder> <RFC 3339 time the claim ends>". Never a credential.
const ExchangeClaimAnnotation = "salesforce.sfops.io/token-exchange"

// claimSkew is the clock difference between two operator processes that a claim tolerates.
const claimSkew = 5 * time.Second

// processHolder names this process in claims: the pod's name and a random suffix (a restarted
// pod is another holder: the process that wrote a claim may be gone).
var processHolder = func() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if host == "" {
		host = "operator"
	}
	return host + "-" + hex.EncodeToString(b)
}()

// orgChain is the chain of one org's own credential Secret (an auth URL or a JWT key), or of a
// sandbox's Secret the operator owns. It lives for one check; what it learned of the Secret
// (writable, sandboxAuthSecret) the check step hands to summarise.
type orgChain struct {
	r       *SalesforceOrgReconciler
	org     *sfv1.SalesforceOrg
	secret  types.NamespacedName
	key     string
	version string // as last read or written
	// production is a sandboxOf org's production org, whose chain authorises the sandbox.
	production *sfv1.SalesforceOrg
	// stored is the Secret as this chain last read or wrote it.
	stored *corev1.Secret
	// wroteVersion is the Secret's resourceVersion after this chain last wrote it ("": no write).
	wroteVersion string
	// claimed is the value whose exchange this chain last claimed: a Persist from another value
	// restores a rotated-away value a tool wrote back.
	claimed *salesforce.AuthURL
	// writable says whether a rotated refresh token can be saved to the Secret (nil: not probed).
	writable *secretWritability
	// sandboxAuthSecret names the Secret that holds a sandbox's credential, once read or written.
	sandboxAuthSecret string
}

// chainFor is the chain of org's stored credential.
func (r *SalesforceOrgReconciler) chainFor(org *sfv1.SalesforceOrg) *orgChain {
	ch := &orgChain{r: r, org: org, secret: types.NamespacedName{Namespace: org.Namespace, Name: org.CredentialSecret()}}
	switch org.Source() {
	case sfv1.CredentialSourceJWT:
		ch.key = org.Spec.JWT.PrivateKeySecretRef.Key
		if ch.key == "" {
			ch.key = "tls.key"
		}
	default:
		ch.key = org.AuthSecretKey()
	}
	return ch
}

// ChainID is the Secret and key; a JWT key Secret may serve several users, each a session of its own.
func (ch *orgChain) ChainID() string {
	id := ch.secret.Namespace + "/" + ch.secret.Name + "/" + ch.key
	if j := ch.org.Spec.JWT; ch.org.Source() == sfv1.CredentialSourceJWT && j != nil {
		id += "#jwt:" + j.Username + "@" + j.LoginURL
	}
	return id
}

func (ch *orgChain) Version() string { return ch.version }

// Load reads the credential Secret directly (never from a cache) and builds the credential.
func (ch *orgChain) Load(ctx context.Context) (salesforce.Credential, error) {
	if ch.org.Source() == sfv1.CredentialSourceSandboxOf {
		return ch.r.loadSandboxCredential(ctx, ch)
	}
	cred, err := ch.r.credential(ctx, ch)
	if ch.wroteVersion != "" {
		ch.version = ch.wroteVersion // a reverted rotation was restored
	}
	return cred, err
}

// Claim writes the exchange claim into the Secret as Load read it.
func (ch *orgChain) Claim(ctx context.Context, cred salesforce.AuthURL, seen salesforce.Rotation) (time.Time, error) {
	r := ch.r
	secret := ch.stored
	if secret == nil {
		return time.Time{}, salesforce.ErrClaimStale
	}
	now := time.Now()
	if holder, until, ok := parseClaim(secret.Annotations[ExchangeClaimAnnotation]); ok && holder != processHolder && now.Before(until.Add(claimSkew)) {
		return time.Time{}, &claimHeldError{holder: holder, secret: secret.Name, until: until, after: until.Add(claimSkew).Sub(now)}
	}
	until := now.Add(salesforce.ClaimTTL)
	upd := secret.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[ExchangeClaimAnnotation] = processHolder + " " + until.UTC().Format(time.RFC3339)
	err := r.Update(quiet(ctx), upd)
	switch {
	case err == nil:
		ch.stored, ch.wroteVersion, ch.version = upd, upd.ResourceVersion, upd.ResourceVersion
		r.ownWrites.wrote(upd)
		ch.claimed = &cred
		r.claims.add(ch.secret, until)
		ch.noteWritable(upd, nil)
		return until, nil
	case apierrors.IsConflict(err):
		return time.Time{}, salesforce.ErrClaimStale
	case apierrors.IsNotFound(err):
		return time.Time{}, salesforce.ErrClaimStale
	case !refusedWrite(err):
		return time.Time{}, retryingErr(r.retryBase(), sfv1.ReasonProgressing,
			"Claiming Secret %q for a refresh-token exchange failed (%s); the refresh token is not exchanged until it can be saved.",
			secret.Name, apierrors.ReasonForError(err))
	}
	why := writeRefusal(secret, err, cred)
	ch.noteWritable(secret, err)
	if seen == salesforce.RotationNotSeen {
		return time.Time{}, nil // the connected app did not rotate it last time: SecretWritable says the risk
	}
	return time.Time{}, credentialUnusable(ch.org, secret.ResourceVersion, sfv1.ReasonSecretUpdateForbidden,
		"%s, so a refresh token that Salesforce rotates could not be saved, and the operator does not exchange it (that would lose the credential): %s",
		why, unwritableFix(secret))
}

// Persist writes the rotated auth URL into the Secret (ending the claim), then the rotation record.
func (ch *orgChain) Persist(ctx context.Context, from, rotated salesforce.AuthURL) error {
	restore := ch.claimed == nil || *ch.claimed != from
	if err := ch.r.persistRotation(ctx, ch, from, rotated, restore); err != nil {
		return err
	}
	if ch.wroteVersion != "" {
		ch.version = ch.wroteVersion
	}
	return nil
}

// claimHeldError: another process claimed the chain's exchange. The org waits for the claim to
// end (or for the Secret to change, which wakes it), and its status says nothing new meanwhile:
// a hand-over is no failure.
type claimHeldError struct {
	holder, secret string
	until          time.Time
	after          time.Duration
}

func (e *claimHeldError) Error() string {
	return fmt.Sprintf("another operator process (%s) is exchanging the refresh token in Secret %q until %s",
		e.holder, e.secret, e.until.UTC().Format(time.RFC3339))
}

// parseClaim reads "<holder> <until>".
func parseClaim(v string) (holder string, until time.Time, ok bool) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return "", time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, f[1])
	if err != nil {
		return "", time.Time{}, false
	}
	return f[0], t, true
}

// refusedWrite: the API server refused the write for a reason a retry does not change (RBAC,
// an immutable Secret, an admission policy or webhook).
func refusedWrite(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsMethodNotSupported(err)
}

// writeRefusal names why the Secret cannot be written, from the API server's answer. The answer
// is the server's (it never quotes Secret data); the credential's parts are scrubbed all the same.
func writeRefusal(secret *corev1.Secret, err error, cred salesforce.AuthURL) string {
	msg := string(apierrors.ReasonForError(err))
	if s, ok := err.(apierrors.APIStatus); ok && s.Status().Message != "" {
		msg = s.Status().Message
	}
	for _, s := range []string{cred.RefreshToken, cred.ClientSecret} {
		if len(s) >= 6 {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
		}
	}
	switch {
	case secret.Immutable != nil && *secret.Immutable:
		return fmt.Sprintf("Secret %q is immutable", secret.Name)
	case strings.Contains(msg, "ValidatingAdmissionPolicy") || strings.Contains(msg, "admission webhook") || strings.Contains(msg, "denied the request"):
		return fmt.Sprintf("an admission policy refuses updates of Secret %q (%s)", secret.Name, msg)
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("the operator may not update Secret %q (RBAC: %s)", secret.Name, msg)
	}
	return fmt.Sprintf("the API server refuses updates of Secret %q (%s)", secret.Name, msg)
}

// unwritableFix says how to let the operator save a rotation to the Secret.
func unwritableFix(secret *corev1.Secret) string {
	if secret.Immutable != nil && *secret.Immutable {
		return "recreate it without immutable: true (or turn off refresh-token rotation on the connected app)."
	}
	return "let the operator update it (its ClusterRole has update on secrets; an admission policy must allow the operator's ServiceAccount), or turn off refresh-token rotation on the connected app."
}

// secretWritability is what a read or a write of the auth Secret showed: can a rotated refresh
// token be saved there? summarise writes it as the SecretWritable condition.
type secretWritability struct {
	status      metav1.ConditionStatus
	reason, msg string
}

// noteWritable notes from a write's answer (nil: it was written) and the Secret's owners whether a
// rotated refresh token can be saved to it.
func (ch *orgChain) noteWritable(secret *corev1.Secret, werr error) {
	w := &secretWritability{status: metav1.ConditionTrue, reason: sfv1.ReasonSecretWritable,
		msg: fmt.Sprintf("A rotated refresh token can be saved to Secret %q.", secret.Name)}
	switch {
	case werr != nil:
		w.status, w.reason = metav1.ConditionFalse, sfv1.ReasonSecretUpdateForbidden
		w.msg = fmt.Sprintf("The operator cannot save a rotated refresh token: %s. Until then it exchanges the refresh token only while Salesforce is seen not to rotate it; %s",
			strings.TrimSuffix(writeRefusal(secret, werr, salesforce.AuthURL{}), "."), unwritableFix(secret))
	default:
		if by := externalManager(secret, ch.org); by != "" {
			w.status, w.reason = metav1.ConditionFalse, sfv1.ReasonSecretManagedExternally
			w.msg = fmt.Sprintf("Secret %q is managed by %s, which would overwrite a refresh token that Salesforce rotates with one it has already revoked (the operator restores it each time). Turn off refresh-token rotation on the connected app, or let the operator own the Secret.",
				secret.Name, by)
		}
	}
	ch.writable = w
}

// claimRegistry remembers the claims this process wrote and may still hold, so that a graceful
// stop ends them: the next leader (or the upgraded pod) then exchanges at once instead of waiting
// for them to run out. A killed process leaves its claims to expire, as it must: a token request
// of it may still be in flight.
type claimRegistry struct {
	active atomic.Int64 // reconciles in progress

	mu     sync.Mutex
	claims map[types.NamespacedName]time.Time // Secret → when its claim ends
}

func (c *claimRegistry) add(secret types.NamespacedName, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claims == nil {
		c.claims = map[types.NamespacedName]time.Time{}
	}
	c.claims[secret] = until
}

// live takes the claims that have not ended yet.
func (c *claimRegistry) live(now time.Time) []types.NamespacedName {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []types.NamespacedName
	for s, until := range c.claims {
		if until.After(now) {
			out = append(out, s)
		}
	}
	c.claims = nil
	return out
}

// releaseClaimsOnStop is a runnable of the leader-elected group: when the manager stops, it waits
// for the reconciles in progress to end (they start no exchange once stopping, and finish the ones
// in flight), then removes this process's live claims, before the lease is released.
type releaseClaimsOnStop struct{ r *SalesforceOrgReconciler }

func (releaseClaimsOnStop) NeedLeaderElection() bool { return true }

func (rc releaseClaimsOnStop) Start(ctx context.Context) error {
	<-ctx.Done()
	deadline := time.Now().Add(salesforce.ClaimTTL)
	for rc.r.claims.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range rc.r.claims.live(time.Now()) {
		rc.r.releaseClaim(quiet(rctx), name)
	}
	return nil
}

// releaseClaim removes this process's claim from the Secret, if it is still there.
func (r *SalesforceOrgReconciler) releaseClaim(ctx context.Context, name types.NamespacedName) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, name, s); err != nil {
		return
	}
	if holder, _, ok := parseClaim(s.Annotations[ExchangeClaimAnnotation]); !ok || holder != processHolder {
		return
	}
	delete(s.Annotations, ExchangeClaimAnnotation)
	_ = r.Update(ctx, s) // a conflict means someone wrote it since: then the claim is theirs to judge
}

// ownSecretWrites remembers the version of each Secret this process wrote last (a claim, a
// rotation, a sandbox's credential), until its watch event arrives: the org's status has that
// version already, so the event wakes nobody.
type ownSecretWrites struct{ m sync.Map } // types.NamespacedName → resourceVersion

func (o *ownSecretWrites) wrote(s *corev1.Secret) {
	o.m.Store(types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, s.ResourceVersion)
}

// echo reports whether an event of Secret key at version is this process's own write, and
// forgets it.
func (o *ownSecretWrites) echo(key types.NamespacedName, version string) bool {
	v, ok := o.m.Load(key)
	if !ok || v.(string) != version {
		return false
	}
	o.m.CompareAndDelete(key, v)
	return true
}
