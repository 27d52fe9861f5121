package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// The plugin gets short-lived access to an org the way a pipeline does: it asks the operator, the
// one owner of the org's credential chain, with a SalesforceAccessToken (its user's RBAC decides:
// the verb use on the org), waits until the operator hands access out, reads the hand-out Secret,
// and deletes the SalesforceAccessToken when done, which deletes the Secret and revokes the
// token. It never reads an org's credential Secret and never exchanges a refresh token.

// accessRequest is what a command asks for.
type accessRequest struct {
	namespace, org, stage string
	// purpose names the command in the SalesforceAccessToken's generated name: <org>-<purpose>-xxxxx.
	purpose  string
	lifetime time.Duration
	// timeout bounds the wait for the operator's answer.
	timeout time.Duration
}

// handout is a SalesforceAccessToken this command created, and its Secret's data once issued.
type handout struct {
	kc   client.Client
	obj  *sfv1.SalesforceAccessToken
	data map[string][]byte
}

// token and instanceURL are the access and where to use it. The token is a credential: it goes to
// the command's child or to Salesforce, never to an output or an error.
func (h *handout) token() string       { return string(h.data[sfv1.AccessTokenKey]) }
func (h *handout) instanceURL() string { return string(h.data[sfv1.AccessInstanceURLKey]) }

func (h *handout) ref() string { return "salesforceaccesstoken/" + h.obj.Name }

// createdByLabel marks the SalesforceAccessTokens the plugin creates, for a person cleaning up
// after a plugin that was killed before it could.
const createdByLabel = "app.kubernetes.io/created-by"

// requestAccess creates the SalesforceAccessToken and waits for the operator's answer. The
// handout is non-nil once the object exists, even with an error: the caller releases it.
// Refusals (admission, or the operator's Ready=False and Stalled) are ExitErrors of code
// ExitNotReady naming the reason and its fix; no answer in time is ExitNoAnswer.
func requestAccess(ctx context.Context, kc client.Client, req accessRequest) (*handout, error) {
	key := fmt.Sprintf("SalesforceOrg %s/%s", req.namespace, req.org)
	at := &sfv1.SalesforceAccessToken{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    req.namespace,
			GenerateName: req.org + "-" + req.purpose + "-",
			Labels:       map[string]string{createdByLabel: "kubectl-salesforce"},
		},
		Spec: sfv1.SalesforceAccessTokenSpec{OrgRef: sfv1.LocalObjectReference{Name: req.org}},
	}
	if req.stage != "" {
		at.Spec.StageRef = &sfv1.LocalObjectReference{Name: req.stage}
	}
	if req.lifetime > 0 {
		at.Spec.Lifetime = &metav1.Duration{Duration: req.lifetime}
	}
	if err := kc.Create(ctx, at); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return nil, &ExitError{Code: ExitNotReady, Err: fmt.Errorf("access to %s refused: %w", key, apiError(err))}
		}
		return nil, fmt.Errorf("asking for access to %s: %w", key, apiError(err))
	}
	h := &handout{kc: kc, obj: at}
	issued, err := waitIssued(ctx, kc, client.ObjectKeyFromObject(at), key, req.timeout)
	if err != nil {
		return h, err
	}
	h.obj = issued
	name := issued.Status.SecretName
	if name == "" {
		name = issued.TargetSecret()
	}
	s := &corev1.Secret{}
	if err := kc.Get(ctx, types.NamespacedName{Namespace: req.namespace, Name: name}, s); err != nil {
		hint := ""
		if apierrors.IsForbidden(err) {
			hint = fmt.Sprintf(" (reading the hand-out Secret needs get on secrets in namespace %s, besides the salesforce-operator-org-user ClusterRole)", req.namespace)
		}
		return h, fmt.Errorf("reading the hand-out Secret %s/%s: %w%s", req.namespace, name, apiError(err), hint)
	}
	if len(s.Data[sfv1.AccessTokenKey]) == 0 || len(s.Data[sfv1.AccessInstanceURLKey]) == 0 {
		return h, fmt.Errorf("the hand-out Secret %s/%s lacks %s or %s", req.namespace, name, sfv1.AccessTokenKey, sfv1.AccessInstanceURLKey)
	}
	h.data = s.Data
	return h, nil
}

// waitIssued polls the SalesforceAccessToken until the operator answers for its generation:
// Ready=True (issued), or a refusal a person must fix (Stalled, or the access expired).
// Waiting for the org to connect is not a refusal; it ends with the timeout.
func waitIssued(parent context.Context, kc client.Client, key types.NamespacedName, org string, timeout time.Duration) (*sfv1.SalesforceAccessToken, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last *metav1.Condition
	for {
		at := &sfv1.SalesforceAccessToken{}
		err := kc.Get(ctx, key, at)
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("reading SalesforceAccessToken %s: %w", key, apiError(err))
		}
		if ready := meta.FindStatusCondition(at.Status.Conditions, sfv1.ConditionReady); err == nil && ready != nil && ready.ObservedGeneration == at.Generation {
			last = ready
			switch {
			case ready.Status == metav1.ConditionTrue:
				return at, nil
			case meta.IsStatusConditionTrue(at.Status.Conditions, sfv1.ConditionStalled) || ready.Reason == sfv1.ReasonAccessExpired:
				return nil, &ExitError{Code: ExitNotReady, Err: fmt.Errorf("access to %s refused: %s: %s", org, ready.Reason, ready.Message)}
			}
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil, &ExitError{Code: ExitNoAnswer, Err: fmt.Errorf("interrupted while waiting for access to %s", org)}
			}
			if last != nil {
				return nil, &ExitError{Code: ExitNoAnswer, Err: fmt.Errorf("no access to %s within %s: %s: %s", org, timeout, last.Reason, last.Message)}
			}
			return nil, &ExitError{Code: ExitNoAnswer, Err: fmt.Errorf("the operator did not answer the request for access to %s within %s: is it running, and does it watch namespace %s?", org, timeout, key.Namespace)}
		case <-tick.C:
		}
	}
}

// release deletes the SalesforceAccessToken, even when ctx has ended (an interrupted command
// cleans up too), and waits a little while for the operator to withdraw it (delete its Secret,
// revoke its token), saying so on w when that takes longer.
func (h *handout) release(ctx context.Context, w io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := h.kc.Delete(ctx, h.obj); err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(w, "warning: deleting %s: %v; delete it yourself (kubectl delete %s -n %s) to revoke its access at once, or it ends at %s\n",
			h.ref(), apiError(err), h.ref(), h.obj.Namespace, h.obj.CreationTimestamp.Add(h.obj.Lifetime()).UTC().Format(time.RFC3339))
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		err := h.kc.Get(ctx, client.ObjectKeyFromObject(h.obj), &sfv1.SalesforceAccessToken{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(w, "warning: %s is deleted but not gone yet: the operator withdraws it (deletes its Secret, revokes its token) when it gets to it\n", h.ref())
}
