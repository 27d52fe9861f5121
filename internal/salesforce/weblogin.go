package salesforce

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Login hosts of the web-server flow, as the Salesforce CLI uses them.
const (
	// ProductionLoginURL is where production and Developer Edition orgs log in.
	ProductionLoginURL = productionLoginURL
	// SandboxLoginURL is where sandboxes and scratch orgs log in.
	SandboxLoginURL = sandboxLoginURL
)

// WebLogin is one run of the OAuth 2.0 web-server flow with PKCE, as `sf org login web` runs it:
// the browser is sent to AuthCodeURL, Salesforce redirects it to RedirectURL with ?code=&state=,
// and ExchangeWebLoginCode trades the code (with the verifier) for a refresh token. State and the
// verifier are fresh random values for each run; neither is ever printed.
type WebLogin struct {
	// LoginURL is https://<host>: login.salesforce.com, test.salesforce.com or a My Domain.
	LoginURL string
	// ClientID is the connected app's consumer key: PlatformCLI, the CLI's own app, by default.
	ClientID string
	// RedirectURL is the local callback, http://localhost:1717/OauthRedirect for PlatformCLI.
	RedirectURL string
	// State is checked on the callback; Verifier is the PKCE code_verifier.
	State, Verifier string
}

// NewWebLogin prepares a web login at loginURL (https://host) after checking that loginURL is
// an allowed host: nothing, not even the browser, is sent to a host the client would refuse.
func (c *Client) NewWebLogin(loginURL, clientID, redirectURL string) (*WebLogin, error) {
	u, err := url.Parse(strings.TrimRight(loginURL, "/"))
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, &Error{Reason: ReasonAuthURLInvalid, Message: "the login URL must be of the form https://<host>, such as https://login.salesforce.com"}
	}
	if u.Scheme != "https" {
		return nil, &Error{Reason: ReasonHostNotAllowed, Message: "the login URL must use https"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return nil, &Error{Reason: ReasonHostNotAllowed, Message: "refusing to log in at " + u.Host + ": " + hostWhy(err) +
			"; use a Salesforce login host, or allow it with --salesforce-allowed-hosts first"}
	}
	if clientID == "" {
		clientID = ShortFormClientID
	}
	if !credentialField.MatchString(clientID) {
		return nil, &Error{Reason: ReasonAuthConfigInvalid, Message: "the client id may contain only letters, digits, '.', '_', '-' and at most two trailing '='"}
	}
	state := make([]byte, 24)
	_, _ = rand.Read(state)
	return &WebLogin{
		LoginURL:    "https://" + u.Host,
		ClientID:    clientID,
		RedirectURL: redirectURL,
		State:       base64.RawURLEncoding.EncodeToString(state),
		Verifier:    oauth2.GenerateVerifier(),
	}, nil
}

func (w *WebLogin) config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:    w.ClientID,
		RedirectURL: w.RedirectURL,
		Endpoint: oauth2.Endpoint{
			AuthURL:   w.LoginURL + "/services/oauth2/authorize",
			TokenURL:  w.LoginURL + "/services/oauth2/token",
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// AuthCodeURL is where the browser goes: .../services/oauth2/authorize?response_type=code&
// client_id=..&redirect_uri=..&code_challenge=..&code_challenge_method=S256&state=..
// It carries no secret (the challenge is a hash of the verifier).
func (w *WebLogin) AuthCodeURL() string {
	return w.config().AuthCodeURL(w.State, oauth2.S256ChallengeOption(w.Verifier))
}

// ExchangeWebLoginCode trades the code of w's callback for the org's auth URL (the connected
// app's client id, no secret, the new refresh token, and the org's instance host from the token
// answer, which must itself be an allowed host). Errors never carry the code or a token.
func (c *Client) ExchangeWebLoginCode(ctx context.Context, w *WebLogin, code string) (AuthURL, error) {
	host := strings.TrimPrefix(w.LoginURL, "https://")
	if _, err := c.allow.check(host); err != nil {
		return AuthURL{}, &Error{Reason: ReasonHostNotAllowed, Message: "refusing to send the code to " + host + ": " + hostWhy(err)}
	}
	cctx, p, cancel := c.call(ctx, "token")
	defer cancel()
	tok, err := w.config().Exchange(cctx, code, oauth2.VerifierOption(w.Verifier))
	var info *tokenInfo
	if err == nil {
		info, err = c.tokenAnswer(tok)
	} else {
		err = c.tokenError(ctx, host, p, err, "log in again")
	}
	c.observeCall(p, err)
	if err != nil {
		return AuthURL{}, scrub(err, code, w.Verifier)
	}
	if info.refresh == "" {
		return AuthURL{}, &Error{Reason: ReasonCredentialRejected,
			Message: "the login returned no refresh token; give the connected app the refresh_token (offline access) scope"}
	}
	a := AuthURL{ClientID: w.ClientID, RefreshToken: info.refresh, Host: strings.TrimPrefix(info.instanceURL, "https://")}
	if err := checkCredentialField("refresh token", a.RefreshToken, false); err != nil {
		return AuthURL{}, &Error{Reason: ReasonServerError, Message: "the login returned a refresh token that an auth URL cannot hold"}
	}
	return a, nil
}
