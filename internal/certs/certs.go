// Package certs gives the manager its own webhook serving certificate, so that no cert-manager is
// needed: a self-signed CA and a serving certificate for the webhook Service, kept in one Secret in
// the operator's namespace (the source of truth every replica reads), rotated before expiry, and
// the CA injected as caBundle into the operator's webhook configurations, as Gatekeeper's and
// External Secrets' cert controllers do. It never touches a Secret other than its own, never logs
// a key, and never writes a key to disk: the webhook server gets the certificate from memory.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"slices"
	"time"
)

// Keys of the Secret. tls.crt and tls.key make it a kubernetes.io/tls Secret; ca.crt holds the
// current CA first, then the previous one while it is still valid, so that a serving certificate
// issued by either is trusted through a CA rotation.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
)

// Default lifetimes. Each is renewed when less than a third of it remains: the serving
// certificate after about eight months, the CA after about three years.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// backdate covers clocks a little behind ours (the API server's, another replica's).
const backdate = time.Hour

// keyPair is a parsed certificate with its key and their PEM forms.
type keyPair struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// newCA creates a self-signed CA valid from now for validity.
func newCA(now time.Time, validity time.Duration) (*keyPair, error) {
	key, serial, err := newKeyAndSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "salesforce-operator-webhook-ca@" + now.UTC().Format("20060102T150405Z")},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return newKeyPair(der, key)
}

// newServing issues a serving certificate for dnsNames (IP addresses among them become IP SANs),
// signed by ca, valid from now for validity but never beyond the CA.
func newServing(ca *keyPair, dnsNames []string, now time.Time, validity time.Duration) (*keyPair, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name")
	}
	key, serial, err := newKeyAndSerial()
	if err != nil {
		return nil, err
	}
	dns, ips := splitHosts(dnsNames)
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	return newKeyPair(der, key)
}

// newKeyAndSerial makes a P-256 key (the API server and every TLS client take it) and a random
// 128-bit serial number.
func newKeyAndSerial() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	return key, serial, nil
}

func newKeyPair(der []byte, key *ecdsa.PrivateKey) (*keyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// parseKeyPair reads the first certificate of certPEM and the key of keyPEM, and checks they belong together.
func parseKeyPair(certPEM, keyPEM []byte) (*keyPair, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the key cannot sign")
	}
	block, _ := pem.Decode(certPEM)
	return &keyPair{cert: pair.Leaf, key: signer, certPEM: pem.EncodeToMemory(block), keyPEM: keyPEM}, nil
}

// parseCerts reads every certificate of a PEM bundle.
func parseCerts(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// renewDue says whether less than a third of c's lifetime remains at now.
func renewDue(c *x509.Certificate, now time.Time) bool {
	return c.NotAfter.Sub(now)*3 < c.NotAfter.Sub(c.NotBefore)
}

// splitHosts separates IP addresses from DNS names.
func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// coversExactly says whether c is issued for exactly hosts.
func coversExactly(c *x509.Certificate, hosts []string) bool {
	dns, ips := splitHosts(hosts)
	if !sameStrings(c.DNSNames, dns) || len(c.IPAddresses) != len(ips) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// bundleOf is the PEM CA bundle: the current CA, then previous ones still valid at now.
func bundleOf(current *keyPair, previous []*x509.Certificate, now time.Time) []byte {
	var b bytes.Buffer
	b.Write(current.certPEM)
	for _, c := range previous {
		if c.Equal(current.cert) || !now.Before(c.NotAfter) {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}
