// Package controllers holds one reconciler per kind. Reconcilers talk to Salesforce only through
// internal/salesforce, read Secrets only directly from the API server in the object's own
// namespace, and never write a credential anywhere but back into the Secret it came from (and the
// org's own rotation record). They never write spec: finalizers go by metadata patch, status by
// the status subresource.
package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

// summary is what one reconcile concluded; setKstatus turns it into the kstatus trio
// (Ready, Reconciling, Stalled) exactly once, at the end of a reconcile.
type summary struct {
	ready   metav1.ConditionStatus
	reason  string
	message string
	// stalled: nothing changes until a person fixes the input.
	stalled bool
	// reconciling: the controller is still working (retrying a transient failure).
	reconciling bool
}

func readyTrue(reason, format string, args ...any) summary {
	return summary{ready: metav1.ConditionTrue, reason: reason, message: fmt.Sprintf(format, args...)}
}

func notReady(reason, format string, args ...any) summary {
	return summary{ready: metav1.ConditionFalse, reason: reason, message: fmt.Sprintf(format, args...)}
}

func stalled(reason, format string, args ...any) summary {
	s := notReady(reason, format, args...)
	s.stalled = true
	return s
}

func retrying(reason, format string, args ...any) summary {
	s := notReady(reason, format, args...)
	s.reconciling = true
	return s
}

// setKstatus writes Ready, Reconciling and Stalled for generation gen. Ready is always present;
// Reconciling and Stalled are present only while true, as kstatus expects. Reconciling's reason
// is ProgressingWithRetry while a failure is retried, as in Flux.
func setKstatus(conds *[]metav1.Condition, gen int64, s summary) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: sfv1.ConditionReady, Status: s.ready, Reason: s.reason, Message: s.message, ObservedGeneration: gen,
	})
	setOptional(conds, gen, sfv1.ConditionStalled, s.stalled, s.reason, s.message)
	reconcilingReason := sfv1.ReasonProgressingWithRetry
	if s.ready != metav1.ConditionFalse || s.reason == sfv1.ReasonProgressing {
		reconcilingReason = sfv1.ReasonProgressing
	}
	setOptional(conds, gen, sfv1.ConditionReconciling, s.reconciling, reconcilingReason, s.message)
}

func setOptional(conds *[]metav1.Condition, gen int64, typ string, on bool, reason, message string) {
	if !on {
		meta.RemoveStatusCondition(conds, typ)
		return
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: gen,
	})
}

// notifier logs and records an event through one call, so the two never disagree. Messages must
// never hold a credential; everything passed here comes from classified client errors or our own text.
type notifier struct {
	recorder recorder.EventRecorder
}

func (n notifier) normal(ctx context.Context, obj runtime.Object, reason, action, format string, args ...any) {
	log.FromContext(ctx).Info(fmt.Sprintf(format, args...), "reason", reason)
	if n.recorder != nil {
		n.recorder.Eventf(obj, nil, "Normal", reason, action, format, args...)
	}
}

func (n notifier) warning(ctx context.Context, obj runtime.Object, reason, action, format string, args ...any) {
	log.FromContext(ctx).Info(fmt.Sprintf(format, args...), "reason", reason, "warning", true)
	if n.recorder != nil {
		n.recorder.Eventf(obj, nil, "Warning", reason, action, format, args...)
	}
}

// NewNotifier returns the one helper through which reconcilers log and record events.
func NewNotifier(r recorder.EventRecorder) notifier { return notifier{recorder: r} }

// statusPatcher patches an object's status against the copy taken at the start of a reconcile,
// and skips the write when nothing changed.
type statusPatcher struct {
	client   client.Client
	original client.Object
	// wrote: the last patch sent a write (status differed from the original).
	wrote bool
}

func newStatusPatcher(c client.Client, obj client.Object) *statusPatcher {
	return &statusPatcher{client: c, original: obj.DeepCopyObject().(client.Object)}
}

// patch writes obj's status; status reports whether it differs from the original.
func (p *statusPatcher) patch(ctx context.Context, obj client.Object, status func(client.Object) any) error {
	if equality.Semantic.DeepEqual(status(p.original), status(obj)) {
		return nil
	}
	p.wrote = true
	return client.IgnoreNotFound(p.client.Status().Patch(ctx, obj, client.MergeFrom(p.original)))
}

// addFinalizer and removeFinalizer change metadata.finalizers only, by a merge patch with an
// optimistic lock: the operator never sends spec, so it never owns a spec field (a server-side
// apply by Flux or Argo CD cannot conflict with it) and never bumps the generation.
func addFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	return patchFinalizers(ctx, c, obj, func() bool { return controllerutil.AddFinalizer(obj, finalizer) })
}

func removeFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	return patchFinalizers(ctx, c, obj, func() bool { return controllerutil.RemoveFinalizer(obj, finalizer) })
}

func patchFinalizers(ctx context.Context, c client.Client, obj client.Object, change func() bool) error {
	before := obj.DeepCopyObject().(client.Object)
	if !change() {
		return nil
	}
	return client.IgnoreNotFound(c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})))
}
