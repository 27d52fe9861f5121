package salesforce

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// Credential is what Check accepts: an AuthURL or a JWTBearer (or a pointer to one).
type Credential interface {
	// cacheKey identifies the credential in the access-token cache; a hash, never the secret.
	cacheKey() string
	// secrets are the strings that must never appear in an error message.
	secrets() []string
	// validate checks the credential before any request is made.
	validate(c *Client) error
	// login gets a new access token.
	login(ctx context.Context, c *Client) (*tokenInfo, error)
}

// tokenInfo is what a successful token answer yields.
type tokenInfo struct {
	access, refresh            string
	instanceURL, orgID, userID string
}

func credentialValue(cred Credential) (Credential, error) {
	switch v := cred.(type) {
	case nil:
		return nil, &Error{Reason: ReasonAuthURLInvalid, Message: "no credential was given"}
	case *AuthURL:
		if v == nil {
			return nil, &Error{Reason: ReasonAuthURLInvalid, Message: "no credential was given"}
		}
		return *v, nil
	case *JWTBearer:
		if v == nil {
			return nil, &Error{Reason: ReasonAuthURLInvalid, Message: "no credential was given"}
		}
		return *v, nil
	}
	return cred, nil
}

// hashKey is the SHA-256 digest of the parts, as a string of its 32 raw bytes: a map key, never
// printed (hex would double it, for every org's session).
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return string(h.Sum(nil))
}

func (a AuthURL) cacheKey() string {
	return hashKey("authurl", a.ClientID, a.ClientSecret, a.RefreshToken, strings.ToLower(a.Host))
}

func (a AuthURL) secrets() []string { return []string{a.RefreshToken, a.ClientSecret} }

func (a AuthURL) validate(c *Client) error {
	switch {
	case a.ClientID == "":
		return invalidAuthURL("the auth URL has no client id; " + howToGetAuthURL)
	case a.RefreshToken == "":
		return invalidAuthURL("the auth URL has no refresh token; " + howToGetAuthURL)
	}
	if why := checkHostPort(a.Host); why != "" {
		return invalidAuthURL("the auth URL's host is not a valid host name (" + why + "); expected something like mydomain.my.salesforce.com")
	}
	if _, err := c.allow.check(a.Host); err != nil {
		return &Error{Reason: ReasonHostNotAllowed, Message: fmt.Sprintf("refusing to send the refresh token to %s: %s; "+
			"an auth URL must name the org's own Salesforce domain (such as mydomain.my.salesforce.com), "+
			"and any other host must first be added to the operator's --salesforce-allowed-hosts flag", a.Host, hostWhy(err))}
	}
	return nil
}

func (a AuthURL) login(ctx context.Context, c *Client) (*tokenInfo, error) {
	conf := &oauth2.Config{
		ClientID:     a.ClientID,
		ClientSecret: a.ClientSecret,
		Endpoint: oauth2.Endpoint{
			TokenURL:  a.InstanceURL() + "/services/oauth2/token",
			AuthStyle: oauth2.AuthStyleInParams, // omits an empty secret, as the CLI does
		},
	}
	cctx, p, cancel := c.call(ctx, "token")
	defer cancel()
	tok, err := conf.TokenSource(cctx, &oauth2.Token{RefreshToken: a.RefreshToken}).Token()
	var info *tokenInfo
	if err == nil {
		info, err = c.tokenAnswer(tok)
	} else {
		err = c.tokenError(ctx, a.Host, p, err, refreshTokenFix)
	}
	c.observeCall(p, err)
	return info, err
}

const refreshTokenFix = "log in again (sf org login web) and store the new URL from `sf org auth show-sfdx-auth-url --target-org <alias> --json`"

// JWTBearer is the credential of the OAuth 2.0 JWT bearer flow: a connected app's consumer key,
// a pre-authorised username and the private key whose certificate the app holds.
type JWTBearer struct {
	ConsumerKey   string
	Username      string
	PrivateKeyPEM []byte // RSA, PKCS#1 or PKCS#8, unencrypted
	// Sandbox selects the audience and default login host https://test.salesforce.com; set it
	// for sandboxes and scratch orgs.
	Sandbox bool
	// LoginURL optionally overrides where the assertion is posted (a My Domain, or a fake
	// Salesforce in tests); it must be https on an allowed host. The audience stays the one
	// Sandbox selects.
	LoginURL string
}

const (
	productionLoginURL = "https://login.salesforce.com"
	sandboxLoginURL    = "https://test.salesforce.com"
)

// Audience is the JWT aud claim: https://test.salesforce.com for sandboxes and scratch orgs,
// https://login.salesforce.com otherwise.
func (j JWTBearer) Audience() string {
	if j.Sandbox {
		return sandboxLoginURL
	}
	return productionLoginURL
}

func (j JWTBearer) loginURL() string {
	if j.LoginURL != "" {
		return strings.TrimRight(j.LoginURL, "/")
	}
	return j.Audience()
}

func (j JWTBearer) cacheKey() string {
	sum := sha256.Sum256(j.PrivateKeyPEM)
	return hashKey("jwt", j.ConsumerKey, j.Username, j.loginURL(), j.Audience(), string(sum[:]))
}

func (j JWTBearer) secrets() []string { return nil }

func jwtInvalid(msg string) *Error {
	return &Error{Reason: ReasonAuthConfigInvalid, Message: "the JWT bearer credential is unusable: " + msg}
}

// CheckPrivateKey says, as an *Error with ReasonAuthConfigInvalid, why a PEM private key cannot
// sign a JWT bearer assertion (not PEM, encrypted, unreadable, not RSA), or nil.
func CheckPrivateKey(pemBytes []byte) error {
	_, err := parseRSAKey(pemBytes)
	if err != nil {
		return err
	}
	return nil
}

func (j JWTBearer) validate(c *Client) error {
	switch {
	case j.ConsumerKey == "":
		return jwtInvalid("the consumer key is empty; use the connected app's consumer key")
	case j.Username == "":
		return jwtInvalid("the username is empty; use the Salesforce username the connected app is pre-authorised for")
	}
	if _, err := parseRSAKey(j.PrivateKeyPEM); err != nil {
		return err
	}
	u, err := url.Parse(j.loginURL())
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return &Error{Reason: ReasonAuthURLInvalid, Message: "the JWT login URL must be of the form https://<host>, such as https://login.salesforce.com"}
	}
	if u.Scheme != "https" {
		return &Error{Reason: ReasonHostNotAllowed, Message: "the JWT login URL must use https"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return &Error{Reason: ReasonHostNotAllowed, Message: fmt.Sprintf("refusing to send a JWT assertion to %s: %s; "+
			"use a Salesforce login host, or add it to the operator's --salesforce-allowed-hosts flag first", u.Host, hostWhy(err))}
	}
	return nil
}

func parseRSAKey(p []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, jwtInvalid("the private key is not PEM; give the PEM text (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")
	}
	if strings.Contains(block.Type, "ENCRYPTED") || block.Headers["Proc-Type"] != "" {
		return nil, jwtInvalid("the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, jwtInvalid("the private key cannot be read as PKCS#1 or PKCS#8")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, jwtInvalid("the private key is not an RSA key; Salesforce's JWT bearer flow needs RS256")
	}
	return rk, nil
}

func (j JWTBearer) login(ctx context.Context, c *Client) (*tokenInfo, error) {
	conf := &jwt.Config{
		Email:      j.ConsumerKey, // iss
		Subject:    j.Username,
		PrivateKey: j.PrivateKeyPEM,
		TokenURL:   j.loginURL() + "/services/oauth2/token",
		Audience:   j.Audience(),
		Expires:    3 * time.Minute, // Salesforce refuses an exp more than a few minutes ahead
	}
	cctx, p, cancel := c.call(ctx, "token")
	defer cancel()
	// x/oauth2/jwt sends its request without a context: bind ours (deadline, probe) to it.
	cctx = context.WithValue(cctx, oauth2.HTTPClient, &http.Client{
		Transport:     &boundContext{ctx: cctx, base: c.http.Transport},
		CheckRedirect: c.http.CheckRedirect,
	})
	tok, err := conf.TokenSource(cctx).Token()
	var info *tokenInfo
	if err == nil {
		info, err = c.tokenAnswer(tok)
	} else {
		u, _ := url.Parse(conf.TokenURL)
		err = c.tokenError(ctx, u.Host, p, err, jwtFix)
	}
	if info != nil {
		info.refresh = "" // the JWT flow has no refresh token
	}
	c.observeCall(p, err)
	return info, err
}

// boundContext sends every request with ctx, for callers that build requests without one.
type boundContext struct {
	ctx  context.Context
	base http.RoundTripper
}

func (b *boundContext) RoundTrip(req *http.Request) (*http.Response, error) {
	return b.base.RoundTrip(req.WithContext(b.ctx))
}

const jwtFix = "check the consumer key, the username, the certificate uploaded to the connected app, " +
	"and that the user is pre-authorised for the app (Admin approved users are pre-authorized)"

// String is a redacted description of the credential.
func (j JWTBearer) String() string {
	key := ""
	if len(j.PrivateKeyPEM) > 0 {
		key = "***"
	}
	return fmt.Sprintf("jwt-bearer{consumerKey: %s, username: %s, audience: %s, loginURL: %s, privateKey: %s}",
		j.ConsumerKey, j.Username, j.Audience(), j.loginURL(), key)
}

// GoString is the redacted %#v form.
func (j JWTBearer) GoString() string {
	key := ""
	if len(j.PrivateKeyPEM) > 0 {
		key = "***"
	}
	return fmt.Sprintf("salesforce.JWTBearer{ConsumerKey:%q, Username:%q, PrivateKeyPEM:%q, Sandbox:%t, LoginURL:%q}",
		j.ConsumerKey, j.Username, key, j.Sandbox, j.LoginURL)
}

// Format makes every fmt verb print the redacted form.
func (j JWTBearer) Format(f fmt.State, verb rune) { formatRedacted(f, verb, j.String(), j.GoString()) }

// MarshalJSON encodes the redacted description.
func (j JWTBearer) MarshalJSON() ([]byte, error) { return json.Marshal(j.String()) }

// MarshalText is the redacted description.
func (j JWTBearer) MarshalText() ([]byte, error) { return []byte(j.String()), nil }

// LogValue is the redacted description for log/slog.
func (j JWTBearer) LogValue() slog.Value { return slog.StringValue(j.String()) }

// MarshalLog is the redacted description for logr.
func (j JWTBearer) MarshalLog() any { return j.String() }

var salesforceID = regexp.MustCompile(`^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$`)

// tokenAnswer checks a successful token answer: instance_url must be an allowed HTTPS origin
// (it receives the access token next), and id must end in /<orgId>/<userId>.
func (c *Client) tokenAnswer(tok *oauth2.Token) (*tokenInfo, error) {
	inst, _ := tok.Extra("instance_url").(string)
	id, _ := tok.Extra("id").(string)
	u, err := url.Parse(inst)
	if inst == "" || err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's token answer has no usable instance_url"}
	}
	if u.Scheme != "https" {
		return nil, &Error{Reason: ReasonHostNotAllowed, Message: fmt.Sprintf("Salesforce's token answer names the instance %s without https; refusing to send the access token there",
			serverText(u.Host))}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return nil, &Error{Reason: ReasonHostNotAllowed, Message: fmt.Sprintf("Salesforce's token answer names the instance %s, which is not allowed (%s); refusing to send the access token there",
			serverText(u.Host), hostWhy(err))}
	}
	iu, err := url.Parse(id)
	if err != nil {
		return nil, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's token answer has no usable id URL"}
	}
	userID := path.Base(iu.Path)
	orgID := path.Base(path.Dir(iu.Path))
	if !salesforceID.MatchString(orgID) || !salesforceID.MatchString(userID) {
		return nil, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's token answer has no usable id URL (expected .../id/<orgId>/<userId>)"}
	}
	return &tokenInfo{
		access:      tok.AccessToken,
		refresh:     tok.RefreshToken,
		instanceURL: "https://" + u.Host,
		orgID:       orgID,
		userID:      userID,
	}, nil
}
