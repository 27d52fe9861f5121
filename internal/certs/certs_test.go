package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNewCA(t *testing.T) {
	ca, err := newCA(t0, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.cert
	if !c.IsCA || !c.BasicConstraintsValid || !c.MaxPathLenZero {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v MaxPathLenZero=%v, want a CA that signs leaves only", c.IsCA, c.BasicConstraintsValid, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
	}
	if !c.NotAfter.Equal(t0.Add(48*time.Hour)) || !c.NotBefore.Equal(t0.Add(-backdate)) {
		t.Errorf("valid %s to %s", c.NotBefore, c.NotAfter)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestNewServing(t *testing.T) {
	ca, err := newCA(t0, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"svc.ns.svc", "svc.ns.svc.cluster.local", "127.0.0.1"}
	s, err := newServing(ca, hosts, t0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cert
	if strings.Join(c.DNSNames, ",") != "svc.ns.svc,svc.ns.svc.cluster.local" {
		t.Errorf("DNSNames %v", c.DNSNames)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IPAddresses %v", c.IPAddresses)
	}
	if c.IsCA {
		t.Error("the serving certificate is a CA")
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage %b, want DigitalSignature only", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage %v, want ServerAuth only", c.ExtKeyUsage)
	}
	if !c.NotAfter.Equal(t0.Add(24*time.Hour)) || !c.NotBefore.Equal(t0.Add(-backdate)) {
		t.Errorf("valid %s to %s", c.NotBefore, c.NotAfter)
	}
	if !coversExactly(c, hosts) || coversExactly(c, hosts[:2]) {
		t.Error("coversExactly disagrees with the SANs")
	}
	// What the API server does: verify the chain for the Service's name against the caBundle.
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	for _, host := range hosts {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: t0}); err != nil {
			t.Errorf("verifying for %s: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{DNSName: "other.ns.svc", Roots: roots, CurrentTime: t0}); err == nil {
		t.Error("verified for a name it is not for")
	}
	// Never valid beyond its CA.
	long, err := newServing(ca, hosts, t0, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !long.cert.NotAfter.Equal(ca.cert.NotAfter) {
		t.Errorf("outlives its CA: %s > %s", long.cert.NotAfter, ca.cert.NotAfter)
	}
}

func TestRenewDue(t *testing.T) {
	c := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(30 * time.Hour)}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{{0, false}, {19 * time.Hour, false}, {20*time.Hour + time.Second, true}, {31 * time.Hour, true}} {
		if got := renewDue(c, t0.Add(tc.at)); got != tc.want {
			t.Errorf("at +%s: renewDue=%v, want %v", tc.at, got, tc.want)
		}
	}
}

// renew is the whole decision: what a replica does with the Secret it read.
func TestRenew(t *testing.T) {
	now := t0
	m, err := New(nil, Options{Namespace: "ns", SecretName: "s", ServiceName: "svc",
		CAValidity: 90 * time.Hour, CertValidity: 60 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	first, reason, err := m.renew(nil)
	if err != nil || first == nil || reason != "no certificate yet" {
		t.Fatalf("first renew: %v %q %v", first != nil, reason, err)
	}
	for _, k := range []string{KeyCACert, KeyCAKey, KeyTLSCert, KeyTLSKey} {
		if len(first[k]) == 0 {
			t.Errorf("no %s", k)
		}
	}
	if again, reason, err := m.renew(first); again != nil || err != nil {
		t.Errorf("a fresh certificate was renewed: %q %v", reason, err)
	}

	now = t0.Add(39 * time.Hour)
	if again, reason, _ := m.renew(first); again != nil {
		t.Errorf("renewed with more than a third left: %q", reason)
	}

	now = t0.Add(41 * time.Hour)
	second, reason, err := m.renew(first)
	if err != nil || second == nil || !strings.Contains(reason, "serving certificate expires") {
		t.Fatalf("near expiry: %v %q %v", second != nil, reason, err)
	}
	if string(second[KeyCACert]) != string(first[KeyCACert]) || string(second[KeyCAKey]) != string(first[KeyCAKey]) {
		t.Error("renewing the serving certificate replaced the CA")
	}
	if string(second[KeyTLSCert]) == string(first[KeyTLSCert]) {
		t.Error("the serving certificate was not replaced")
	}

	now = t0.Add(61 * time.Hour)
	third, reason, err := m.renew(second)
	if err != nil || third == nil || !strings.Contains(reason, "the CA expires") {
		t.Fatalf("CA near expiry: %v %q %v", third != nil, reason, err)
	}
	bundle, err := parseCerts(third[KeyCACert])
	if err != nil || len(bundle) != 2 {
		t.Fatalf("bundle after a CA rotation: %d certificates, %v; want the new CA and the old", len(bundle), err)
	}
	old, _ := parseCerts(first[KeyCACert])
	if !bundle[1].Equal(old[0]) || bundle[0].Equal(old[0]) {
		t.Error("the bundle is not [new CA, old CA]")
	}
	serving, err := parseKeyPair(third[KeyTLSCert], third[KeyTLSKey])
	if err != nil || serving.cert.CheckSignatureFrom(bundle[0]) != nil {
		t.Errorf("the new serving certificate is not issued by the new CA: %v", err)
	}

	// Once the old CA has expired, it leaves the bundle.
	now = t0.Add(91 * time.Hour)
	fourth, reason, err := m.renew(third)
	if err != nil || fourth == nil || reason != "a previous CA expired" {
		t.Fatalf("after the old CA expired: %v %q %v", fourth != nil, reason, err)
	}
	if b, _ := parseCerts(fourth[KeyCACert]); len(b) != 1 || !b[0].Equal(bundle[0]) {
		t.Errorf("bundle %d certificates, want the current CA only", len(b))
	}

	// Another Service name, or a broken Secret, gets a new certificate.
	m.opts.ServiceName = "other"
	if d, reason, _ := m.renew(fourth); d == nil || reason != "the serving certificate is for other names" {
		t.Errorf("renamed Service: %q", reason)
	}
	broken := clone(fourth)
	broken[KeyTLSKey] = []byte("garbage")
	if d, reason, _ := m.renew(broken); d == nil || !strings.Contains(reason, "unreadable") {
		t.Errorf("broken key: %q", reason)
	}
	broken = clone(fourth)
	broken[KeyCAKey] = first[KeyCAKey]
	if d, reason, _ := m.renew(broken); d == nil || !strings.Contains(reason, "the CA is unreadable") {
		t.Errorf("CA key of another CA: %q", reason)
	}
}
