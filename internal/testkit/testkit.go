// Package testkit holds the helpers the envtest suites share (controllers, the kubectl plugin,
// the operator assembly): a namespace per test, the credential Secret, waiting for a condition, a
// free loopback port. Only tests import it; it never reaches a manager binary, and it never logs
// a credential (failures name objects, not values).
package testkit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

var nsCounter struct {
	sync.Mutex
	n int
}

// Namespace creates a namespace of the test's own, named prefix<N>-<test name> (at most 60
// characters), and returns its name.
func Namespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	nsCounter.Lock()
	nsCounter.n++
	name := fmt.Sprintf("%s%d-%s", prefix, nsCounter.n, strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	nsCounter.Unlock()
	if len(name) > 60 {
		name = strings.TrimRight(name[:60], "-")
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, APIError(err))
	}
	return name
}

// PutSecret creates or replaces the org credential Secret ns/name, labelled as a credential, with
// value under the default key. The value is never logged.
func PutSecret(t testing.TB, c client.Client, ns, name, value string) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err := c.Get(ctx, client.ObjectKeyFromObject(s), s)
	s.Data = map[string][]byte{sfv1.DefaultAuthSecretKey: []byte(value)}
	s.Labels = map[string]string{sfv1.CredentialLabel: "true"}
	if err == nil {
		err = c.Update(ctx, s)
	} else {
		err = c.Create(ctx, s)
	}
	if err != nil {
		t.Fatalf("writing Secret %s/%s: %v", ns, name, APIError(err))
	}
}

// APIError is err's first line: enough to say what failed, never a request body.
func APIError(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

// Eventually polls cond every 100 ms for up to limit; cond returns "" when satisfied, else what
// it saw, which the failure reports.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: last seen: %s", what, last)
}

// FreeAddr is a loopback address nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
