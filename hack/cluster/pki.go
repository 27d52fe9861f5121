package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ca signs every certificate of the cluster. It is made anew at every start, as is the rest of
// the cluster (etcd's data too), so no certificate outlives the run that made it.
type ca struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// clientCerts are the client identities, by file name: each component's, as the default RBAC
// and the Node authorizer know them.
var clientCerts = []struct{ name, cn, org string }{
	{"admin", "kubernetes-admin", "system:masters"},
	{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
	{"kubelet", "system:node:" + nodeName, "system:nodes"},
	{"controller-manager", "system:kube-controller-manager", ""},
	{"scheduler", "system:kube-scheduler", ""},
	{"kube-proxy", "system:kube-proxy", ""},
}

// writePKI writes the CA, the API server's and the kubelet's serving certificates, the client
// certificates and the service-account key pair into dir (ECDSA P-256: instant to generate).
func writePKI(dir string, nodeIP net.IP) (*ca, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "e2e-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &ca{dir: dir, cert: cert, key: key}
	if err := c.write("ca", der, key); err != nil {
		return nil, err
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if err := c.issue("apiserver", "kube-apiserver", "", server,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", nodeName},
		[]net.IP{net.ParseIP(kubernetesIP), net.IPv4(127, 0, 0, 1), nodeIP}); err != nil {
		return nil, err
	}
	if err := c.issue("kubelet-serving", nodeName, "", server, []string{nodeName, "localhost"}, []net.IP{nodeIP, net.IPv4(127, 0, 0, 1)}); err != nil {
		return nil, err
	}
	for _, cc := range clientCerts {
		if err := c.issue(cc.name, cc.cn, cc.org, client, nil, nil); err != nil {
			return nil, err
		}
	}
	// The service-account token signing pair.
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, "sa.key"), saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	return c, os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

func (c *ca) issue(name, cn, org string, usage []x509.ExtKeyUsage, dns []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	subject := pkix.Name{CommonName: cn}
	if org != "" {
		subject.Organization = []string{org}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    c.cert.NotBefore,
		NotAfter:     c.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", name, err)
	}
	return c.write(name, der, key)
}

func (c *ca) write(name string, der []byte, key *ecdsa.PrivateKey) error {
	if err := writeKey(filepath.Join(c.dir, name+".key"), key); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// writeKubeconfig writes a kubeconfig for one client certificate of pki, with everything
// embedded, so that it can be copied anywhere.
func writeKubeconfig(path, pki, certName, server string) error {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(pki, name))
		return base64.StdEncoding.EncodeToString(b), err
	}
	caData, err := read("ca.crt")
	if err != nil {
		return err
	}
	certData, err := read(certName + ".crt")
	if err != nil {
		return err
	}
	keyData, err := read(certName + ".key")
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, server, caData, certName, certData, keyData, certName)
	return os.WriteFile(path, []byte(config), 0o600)
}
