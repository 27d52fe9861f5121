package controllers_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// putKeySecret creates a labelled Secret holding data.
func putKeySecret(t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{sfv1.CredentialLabel: "true"}}, Data: data})
}

func jwtOrg(ns, name string, typ sfv1.OrgType, clientID, username, secret string) *sfv1.SalesforceOrg {
	return &sfv1.SalesforceOrg{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sfv1.SalesforceOrgSpec{Type: typ, CheckInterval: &metav1.Duration{Duration: time.Hour}, JWT: &sfv1.JWTAuth{
			ClientID: clientID, Username: username, LoginURL: fakeSF.URL(),
			PrivateKeySecretRef: sfv1.PrivateKeyReference{Name: secret},
		}},
	}
}

// A JWT org connects, reuses its access token (one call per steady check), grants again when the
// token expires, and shows its credential source; no part of the key appears anywhere.
func TestJWTOrgConnectsAndReusesItsToken(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-ci", Kind: sftest.Production})
	key, user, keyPEM := fo.JWT()
	putKeySecret(t, ns, "ci-jwt", map[string][]byte{"tls.key": keyPEM})
	mustCreate(t, jwtOrg(ns, "ci", sfv1.OrgTypeProduction, key, user, "ci-jwt"))
	got := waitOrgReady(t, ns, "ci", metav1.ConditionTrue, sfv1.ReasonConnected)
	if got.Status.CredentialSource != sfv1.CredentialSourceJWT || got.Status.OrgID != fo.OrgID() || got.Status.Username != user {
		t.Fatalf("status: source %q, org %q, user %q", got.Status.CredentialSource, got.Status.OrgID, got.Status.Username)
	}
	if wide := kubectl(t, "get", "sforg", "ci", "-n", ns, "-o", "wide"); !containsLine(wide, "ci", "Production", "JWT") {
		t.Errorf("kubectl get -o wide does not show the credential source:\n%s", wide)
	}
	before := fakeSF.CallsFor(fo)
	waitHandled(t, ns, "ci", requestCheck(t, ns, "ci"))
	if n := fakeSF.CallsFor(fo) - before; n != 1 {
		t.Errorf("a steady-state JWT check cost %d requests, want 1", n)
	}
	fo.ExpireAccessTokens()
	before = fakeSF.CallsFor(fo)
	waitHandled(t, ns, "ci", requestCheck(t, ns, "ci"))
	waitOrgReady(t, ns, "ci", metav1.ConditionTrue, sfv1.ReasonConnected)
	if n := fakeSF.CallsFor(fo) - before; n != 3 {
		t.Errorf("an expired token cost %d requests, want 3 (401, grant, retry)", n)
	}

	// The consumer key may come from the Secret instead.
	putKeySecret(t, ns, "ci2-jwt", map[string][]byte{"tls.key": keyPEM, "consumerKey": []byte(key + "\n")})
	o := jwtOrg(ns, "ci2", sfv1.OrgTypeProduction, "", user, "ci2-jwt")
	o.Spec.JWT.ClientIDKey = "consumerKey"
	mustCreate(t, o)
	waitOrgReady(t, ns, "ci2", metav1.ConditionTrue, sfv1.ReasonConnected)

	body := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[3]
	if strings.Contains(logs.String(), body) {
		t.Error("a line of the private key appears in the manager's logs")
	}
	for _, e := range orgEvents(t, ns, "ci") {
		if strings.Contains(e.Note, body) || strings.Contains(e.Note, key) && strings.Contains(e.Note, "BEGIN") {
			t.Error("the private key appears in an event")
		}
	}
}

// A JWT configuration that cannot work says which part is wrong, and costs no call when the key
// itself is unusable.
func TestJWTMisconfigurationsHaveTheirReasons(t *testing.T) {
	ns := newNamespace(t)
	fo := fakeSF.AddOrg(sftest.OrgSpec{Name: ns + "-sbx", Kind: sftest.Sandbox})
	key, user, keyPEM := fo.JWT()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	//nolint:staticcheck // an encrypted PEM, as users do paste them
	encrypted, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("pw"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, typ          string
		keyData            []byte
		username           string
		reason, inMessage  string
		callsMustBeNothing bool
	}{
		{"garbage", "Sandbox", []byte("not a key"), user, sfv1.ReasonAuthConfigInvalid, "not PEM", true},
		{"encrypted", "Sandbox", pem.EncodeToMemory(encrypted), user, sfv1.ReasonAuthConfigInvalid, "encrypted", true},
		{"wrong-audience", "Production", keyPEM, user, sfv1.ReasonCredentialRejected, "audience", false},
		{"unknown-user", "Sandbox", keyPEM, "nobody@example.com", sfv1.ReasonCredentialRejected, "approved", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fakeSF.TotalCalls()
			putKeySecret(t, ns, tc.name+"-jwt", map[string][]byte{"tls.key": tc.keyData})
			mustCreate(t, jwtOrg(ns, tc.name, sfv1.OrgType(tc.typ), key, tc.username, tc.name+"-jwt"))
			got := waitOrgReady(t, ns, tc.name, metav1.ConditionFalse, tc.reason)
			msg := condition(got.Status.Conditions, sfv1.ConditionReady).Message
			if !strings.Contains(msg, tc.inMessage) {
				t.Errorf("message does not say %q: %s", tc.inMessage, msg)
			}
			if c := condition(got.Status.Conditions, sfv1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("not Stalled: %+v", c)
			}
			if tc.callsMustBeNothing && fakeSF.TotalCalls() != before {
				t.Errorf("an unusable key cost %d calls", fakeSF.TotalCalls()-before)
			}
		})
	}
}

// Exactly one credential source: the schema says so in words.
func TestExactlyOneCredentialSource(t *testing.T) {
	ns := newNamespace(t)
	both := jwtOrg(ns, "both", sfv1.OrgTypeProduction, "k", "u@example.com", "s")
	both.Spec.AuthSecretRef = sfv1.SecretKeyReference{Name: "s"}
	neither := newOrg(ns, "neither", sfv1.OrgTypeProduction, "")
	neither.Spec.AuthSecretRef = sfv1.SecretKeyReference{}
	sandboxOfProd := newOrg(ns, "sbx", sfv1.OrgTypeProduction, "")
	sandboxOfProd.Spec.AuthSecretRef = sfv1.SecretKeyReference{}
	sandboxOfProd.Spec.SandboxOf = &sfv1.SandboxOf{ProductionOrgRef: sfv1.LocalObjectReference{Name: "prod"}, SandboxName: "uat"}
	noClient := jwtOrg(ns, "noclient", sfv1.OrgTypeProduction, "", "u@example.com", "s")
	for _, tc := range []struct {
		org  *sfv1.SalesforceOrg
		want string
	}{
		{both, "set exactly one credential source: authSecretRef (an SFDX auth URL in a Secret), jwt (a connected app's certificate and a username) or sandboxOf"},
		{neither, "set exactly one credential source"},
		{sandboxOfProd, "sandboxOf is only for orgs of type Sandbox"},
		{noClient, "set exactly one of jwt.clientId"},
	} {
		err := k8s.Create(context.Background(), tc.org)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.org.Name, err)
		}
	}
}
