package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// RBAC of the self-managed certificate (--webhook-cert-source=self, config/default's mode). The
// Secret lives in the operator's own namespace: it is read (get), created by the first replica
// and renewed (update); the ClusterRole grants Secrets for credentials too, and this names what
// the certificate needs on its own. Webhook configurations are cluster-scoped and named: the
// operator may read (get) and patch the caBundle of only its own two. The names are
// config/default's; the Helm chart derives them, and these, from the release.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;patch,resourceNames=salesforce-operator-mutating-webhook-configuration;salesforce-operator-validating-webhook-configuration

// Defaults matching config/default's names.
const (
	DefaultSecretName                     = "salesforce-operator-webhook-cert"
	DefaultServiceName                    = "salesforce-operator-webhook-service"
	DefaultMutatingWebhookConfiguration   = "salesforce-operator-mutating-webhook-configuration"
	DefaultValidatingWebhookConfiguration = "salesforce-operator-validating-webhook-configuration"
	// DefaultInterval is how often each replica re-reads the Secret and re-checks the caBundles:
	// it picks up another replica's rotation and repairs a webhook configuration re-applied
	// without its caBundle.
	DefaultInterval = time.Minute
)

// NamespaceFile holds the pod's namespace in a pod with a service account token mounted.
const NamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Options configure the certificate manager.
type Options struct {
	// Namespace and SecretName locate the Secret holding the CA and the serving certificate.
	Namespace  string
	SecretName string
	// ServiceName is the webhook Service: the certificate is for <service>.<namespace>.svc and
	// <service>.<namespace>.svc.cluster.local.
	ServiceName string
	// ExtraHosts are further DNS names or IP addresses for the certificate (tests serve on 127.0.0.1).
	ExtraHosts []string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration name the configurations
	// whose webhooks get the caBundle ("" skips one).
	MutatingWebhookConfiguration   string
	ValidatingWebhookConfiguration string
	// CAValidity and CertValidity are the lifetimes of new certificates (0: 5 years, 1 year).
	CAValidity, CertValidity time.Duration
	// Interval between checks (0: DefaultInterval).
	Interval time.Duration
	// Now replaces the clock (tests).
	Now func() time.Time
}

// Manager keeps the webhook serving certificate: a manager.Runnable that runs in every replica
// (each serves webhooks), a tls.Config GetCertificate, and a readiness check.
type Manager struct {
	client client.Client
	opts   Options
	cert   atomic.Pointer[tls.Certificate]
	// injected is set once the caBundles match the Secret's CA: from then on the API server
	// trusts what this replica serves.
	injected atomic.Bool
}

// New returns a Manager that reads and writes through c, which must not be a cached client
// (Secrets and webhook configurations are read directly).
func New(c client.Client, o Options) (*Manager, error) {
	if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" {
		return nil, errors.New("the webhook certificate needs a namespace, a Secret name and a Service name")
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity <= 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{client: c, opts: o}, nil
}

// Hosts are the names the serving certificate is for.
func (m *Manager) Hosts() []string {
	svc := m.opts.ServiceName + "." + m.opts.Namespace + ".svc"
	return append([]string{svc, svc + ".cluster.local"}, m.opts.ExtraHosts...)
}

// GetCertificate serves the current certificate; it fails the handshake until one is loaded.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the webhook serving certificate is not loaded yet")
}

// Ready fails until the certificate is loaded and the webhook configurations trust its CA.
func (m *Manager) Ready(*http.Request) error {
	if m.cert.Load() == nil {
		return errors.New("the webhook serving certificate is not loaded yet")
	}
	if !m.injected.Load() {
		return errors.New("the webhook configurations do not trust the serving certificate's CA yet")
	}
	return nil
}

// NeedLeaderElection is false: every replica serves webhooks, so every replica needs the certificate.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start keeps the certificate until ctx ends: at once, then every Interval, sooner after a failure.
func (m *Manager) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("webhook-certificate")
	ctx = logf.IntoContext(ctx, log)
	const firstRetry = time.Second
	retry := firstRetry
	for {
		wait := m.opts.Interval
		if err := m.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error(err, "keeping the webhook serving certificate", "retryIn", retry.String())
			wait, retry = retry, min(retry*2, m.opts.Interval)
		} else {
			retry = firstRetry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Ensure runs one check: the Secret exists and holds a certificate that is not due for renewal
// (creating or renewing it otherwise), this replica serves it, and the webhook configurations
// trust its CA.
func (m *Manager) Ensure(ctx context.Context) error {
	secret, err := m.reconcileSecret(ctx)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(secret.Data[KeyTLSCert], secret.Data[KeyTLSKey])
	if err != nil {
		return fmt.Errorf("loading the serving certificate of Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	if cur := m.cert.Load(); cur == nil || !bytes.Equal(cur.Certificate[0], pair.Certificate[0]) {
		m.cert.Store(&pair)
		logf.FromContext(ctx).Info("serving the webhook certificate", "secret", secret.Name,
			"serial", pair.Leaf.SerialNumber.Text(16), "notAfter", pair.Leaf.NotAfter.UTC())
	}
	if err := m.inject(ctx, secret.Data[KeyCACert]); err != nil {
		return err
	}
	m.injected.Store(true)
	return nil
}

// reconcileSecret returns the Secret, created or renewed if need be. Replicas race: the first
// Create wins and the others read what it wrote; an Update carries the resourceVersion it read,
// so of two renewals one fails with a conflict and reads the other's.
func (m *Manager) reconcileSecret(ctx context.Context) (*corev1.Secret, error) {
	log := logf.FromContext(ctx)
	key := client.ObjectKey{Namespace: m.opts.Namespace, Name: m.opts.SecretName}
	for range 5 {
		secret := &corev1.Secret{}
		err := m.client.Get(ctx, key, secret)
		if apierrors.IsNotFound(err) {
			data, _, err := m.renew(nil)
			if err != nil {
				return nil, err
			}
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{
					"app.kubernetes.io/name":      "salesforce-operator",
					"app.kubernetes.io/component": "webhook-certificate",
				}},
				Type: corev1.SecretTypeTLS,
				Data: data,
			}
			err = m.client.Create(ctx, secret)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("creating Secret %s: %w", key, err)
			}
			log.Info("created the webhook serving certificate and its CA", "secret", key.String())
			return secret, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		data, reason, err := m.renew(secret.Data)
		if err != nil {
			return nil, err
		}
		if data == nil {
			return secret, nil
		}
		secret.Data = data
		err = m.client.Update(ctx, secret)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("renewing Secret %s: %w", key, err)
		}
		log.Info("renewed the webhook serving certificate", "secret", key.String(), "reason", reason)
		return secret, nil
	}
	return nil, fmt.Errorf("Secret %s kept changing while it was renewed", key)
}

// renew returns the Secret's new data and why, or nil when data needs no change. The CA is
// replaced when missing, broken or due; the serving certificate when the CA was replaced, or it
// is missing, broken, due, not issued by the CA or not for exactly Hosts.
func (m *Manager) renew(data map[string][]byte) (map[string][]byte, string, error) {
	now := m.opts.Now()
	var reason string
	previous, _ := parseCerts(data[KeyCACert])
	ca, err := parseKeyPair(data[KeyCACert], data[KeyCAKey])
	switch {
	case data == nil:
		reason = "no certificate yet"
	case err != nil:
		reason = "the CA is unreadable: " + err.Error()
	case !ca.cert.IsCA:
		reason = "the CA is not a CA"
	case renewDue(ca.cert, now):
		reason = fmt.Sprintf("the CA expires at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if reason != "" {
		if ca, err = newCA(now, m.opts.CAValidity); err != nil {
			return nil, "", fmt.Errorf("creating the webhook CA: %w", err)
		}
	}
	if reason == "" {
		serving, err := parseKeyPair(data[KeyTLSCert], data[KeyTLSKey])
		switch {
		case err != nil:
			reason = "the serving certificate is unreadable: " + err.Error()
		case serving.cert.CheckSignatureFrom(ca.cert) != nil:
			reason = "the serving certificate is not issued by the current CA"
		case !coversExactly(serving.cert, m.Hosts()):
			reason = "the serving certificate is for other names"
		case renewDue(serving.cert, now):
			reason = fmt.Sprintf("the serving certificate expires at %s", serving.cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	bundle := bundleOf(ca, previous, now)
	if reason == "" {
		if bytes.Equal(bundle, data[KeyCACert]) {
			return nil, "", nil
		}
		reason = "a previous CA expired"
		out := clone(data)
		out[KeyCACert] = bundle
		return out, reason, nil
	}
	serving, err := newServing(ca, m.Hosts(), now, m.opts.CertValidity)
	if err != nil {
		return nil, "", fmt.Errorf("issuing the webhook serving certificate: %w", err)
	}
	out := clone(data)
	out[KeyCACert] = bundle
	out[KeyCAKey] = ca.keyPEM
	out[KeyTLSCert] = serving.certPEM
	out[KeyTLSKey] = serving.keyPEM
	return out, reason, nil
}

func clone(data map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(data)+4)
	for k, v := range data {
		out[k] = v
	}
	return out
}

// inject sets every webhook's caBundle in the named configurations to bundle.
func (m *Manager) inject(ctx context.Context, bundle []byte) error {
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	for _, target := range []struct {
		name    string
		obj     client.Object
		bundles func() []*[]byte
	}{
		{m.opts.MutatingWebhookConfiguration, mutating, func() []*[]byte {
			return caBundles(mutating.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) *[]byte { return &w.ClientConfig.CABundle })
		}},
		{m.opts.ValidatingWebhookConfiguration, validating, func() []*[]byte {
			return caBundles(validating.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) *[]byte { return &w.ClientConfig.CABundle })
		}},
	} {
		if target.name == "" {
			continue
		}
		if err := m.patchCABundle(ctx, target.name, target.obj, bundle, target.bundles); err != nil {
			return err
		}
	}
	return nil
}

// caBundles points into each webhook's caBundle.
func caBundles[W any](webhooks []W, of func(*W) *[]byte) []*[]byte {
	out := make([]*[]byte, len(webhooks))
	for i := range webhooks {
		out[i] = of(&webhooks[i])
	}
	return out
}

// patchCABundle reads obj by name, sets the caBundles that bundles points into, and patches it
// if one changed. The webhooks list is replaced whole, so the patch is guarded by the
// resourceVersion read; on a conflict (another replica injecting too) it reads and tries again.
func (m *Manager) patchCABundle(ctx context.Context, name string, obj client.Object, bundle []byte, bundles func() []*[]byte) error {
	kind := reflect.TypeOf(obj).Elem().Name()
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := m.client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
			return fmt.Errorf("reading %s %s: %w", kind, name, err)
		}
		base := obj.DeepCopyObject().(client.Object)
		changed = false
		for _, b := range bundles() {
			if !bytes.Equal(*b, bundle) {
				*b = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		return m.client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		return fmt.Errorf("injecting the caBundle into %s %s: %w", kind, name, err)
	}
	if changed {
		logf.FromContext(ctx).Info("injected the webhook CA", "configuration", name)
	}
	return nil
}
