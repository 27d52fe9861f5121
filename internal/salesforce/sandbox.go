package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// SandboxCallbackURL is the redirect URI the Salesforce CLI's core library sends to sandboxAuth
// and to the code exchange; the operator does the same.
const SandboxCallbackURL = "http://localhost:1717/OauthRedirect"

// ReasonSandboxActivating: the production org's sandboxAuth answered INVALID_STATUS: the sandbox
// is still being activated. Retry later.
const ReasonSandboxActivating Reason = "SandboxActivating"

// SandboxAuthorization is what AuthorizeSandbox obtained: a credential for the sandbox's user.
type SandboxAuthorization struct {
	// Credential is an AuthURL (the production org uses an auth URL: the code was exchanged for a
	// refresh token of the sandbox user) or a JWTBearer (the production org uses JWT: the same
	// app and key, for the sandbox user, at the sandbox's login URL).
	Credential Credential
	// OrgID is the sandbox's org id as the production org reports it.
	OrgID string
	// Username is the sandbox user the credential authenticates as.
	Username string
}

// ProductionError is a failure of the production org's own credential while it authorised a
// sandbox: the production org's problem, which the sandbox only waits out.
type ProductionError struct{ Err error }

func (e *ProductionError) Error() string { return e.Err.Error() }
func (e *ProductionError) Unwrap() error { return e.Err }

// AuthorizeSandbox authorises the production org's sandbox named sandboxName as the Salesforce
// CLI does: POST tooling/sandboxAuth with the production org's session, then the authorization
// code exchange at the answer's loginUrl (or, for a JWT production credential, a JWT grant for the
// returned user). prod is the production org's chain, shared with its own checks (storedVersion
// as in CheckChain): its refresh token is exchanged only under its lock. A failure to get the
// production org a session (its credential, its Secret) is a *ProductionError.
func (c *Client) AuthorizeSandbox(ctx context.Context, prod Chain, storedVersion, sandboxName string) (*SandboxAuthorization, error) {
	s, unlock, err := c.lockChain(ctx, prod.ChainID())
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx = withOrgLimiter(ctx, s.limiter)
	var ans *sandboxAuthAnswer
	sessionOK := false
	err = c.use(ctx, s, prod, storedVersion, func() error {
		sessionOK = true
		var aerr error
		ans, aerr = c.postSandboxAuth(ctx, s, sandboxName)
		return aerr
	})
	var ua *unauthorizedError
	if errors.As(err, &ua) {
		err = &Error{Reason: ReasonCredentialRejected, Code: ua.code, Message: "the production org refused a fresh access token: " + withCode(ua.msg, ua.code)}
	}
	if err != nil {
		err = s.scrub(err)
		if !sessionOK || ReasonOf(err) == ReasonCredentialRejected || ReasonOf(err) == ReasonSecretUpdateFailed {
			return nil, &ProductionError{Err: err}
		}
		return nil, err
	}
	auth := &SandboxAuthorization{OrgID: ans.SandboxOrgID, Username: ans.AuthUserName}
	switch v := s.cred.(type) {
	case JWTBearer:
		auth.Credential = JWTBearer{ConsumerKey: v.ConsumerKey, Username: ans.AuthUserName, PrivateKeyPEM: v.PrivateKeyPEM,
			Sandbox: true, LoginURL: strings.TrimRight(ans.LoginURL, "/")}
	case AuthURL:
		sb, err := c.exchangeSandboxCode(ctx, v, ans)
		if err != nil {
			return nil, scrub(err, append(v.secrets(), ans.AuthCode)...)
		}
		auth.Credential = sb
	}
	return auth, nil
}

type sandboxAuthAnswer struct {
	AuthUserName string `json:"authUserName"`
	AuthCode     string `json:"authCode"`
	InstanceURL  string `json:"instanceUrl"`
	LoginURL     string `json:"loginUrl"`
	SandboxOrgID string `json:"sandboxOrgId"`
}

func (c *Client) postSandboxAuth(ctx context.Context, s *session, sandboxName string) (*sandboxAuthAnswer, error) {
	clientID := ""
	switch v := s.cred.(type) {
	case AuthURL:
		clientID = v.ClientID
	case JWTBearer:
		clientID = v.ConsumerKey
	}
	body, _ := json.Marshal(map[string]string{"clientId": clientID, "sandboxName": sandboxName, "callbackUrl": SandboxCallbackURL})
	cctx, p, cancel := c.call(ctx, "sandboxAuth")
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, s.instanceURL+"/services/data/v"+c.apiVersion+"/tooling/sandboxAuth", bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Reason: ReasonServerError, Message: "the sandboxAuth request could not be built"}
	}
	req.Header.Set("Authorization", "Bearer "+s.access)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, req.URL.Host, err)
		c.observeCall(p, err)
		return nil, err
	}
	_ = resp.Body.Close()
	if code, msg := restErrorText(p.body); p.status >= 400 && code == "INVALID_STATUS" {
		err := &Error{Reason: ReasonSandboxActivating, Retryable: true, Code: code,
			Message: "the sandbox is not ready to be authorised yet: " + withCode(msg, code) + "; the operator tries again"}
		c.observeCall(p, err)
		return nil, err
	}
	if err := restError(p.status, p.header, p.body); err != nil {
		c.observeCall(p, err)
		return nil, err
	}
	c.observeCall(p, nil)
	var ans sandboxAuthAnswer
	if err := json.Unmarshal(p.body, &ans); err != nil || ans.AuthUserName == "" || ans.LoginURL == "" {
		return nil, &Error{Reason: ReasonServerError, Retryable: true, Message: "the production org's sandboxAuth answer could not be read"}
	}
	return &ans, nil
}

// exchangeSandboxCode exchanges sandboxAuth's code at its loginUrl, with the production org's
// connected app, for a refresh token of the sandbox user.
func (c *Client) exchangeSandboxCode(ctx context.Context, prod AuthURL, ans *sandboxAuthAnswer) (AuthURL, error) {
	u, err := url.Parse(strings.TrimRight(ans.LoginURL, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return AuthURL{}, &Error{Reason: ReasonHostNotAllowed, Message: "the sandboxAuth answer names a login URL that is not https://<host>; refusing to send the code there"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return AuthURL{}, &Error{Reason: ReasonHostNotAllowed, Message: "the sandboxAuth answer names the login host " + serverText(u.Host) + ", which is not allowed (" + hostWhy(err) + ")"}
	}
	conf := &oauth2.Config{
		ClientID:     prod.ClientID,
		ClientSecret: prod.ClientSecret,
		RedirectURL:  SandboxCallbackURL,
		Endpoint:     oauth2.Endpoint{TokenURL: "https://" + u.Host + "/services/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	cctx, p, cancel := c.call(ctx, "token")
	defer cancel()
	tok, err := conf.Exchange(cctx, ans.AuthCode)
	var info *tokenInfo
	if err == nil {
		info, err = c.tokenAnswer(tok)
	} else {
		err = c.tokenError(ctx, u.Host, p, err, "authorise the sandbox again")
	}
	c.observeCall(p, err)
	if err != nil {
		return AuthURL{}, err
	}
	if info.refresh == "" {
		return AuthURL{}, &Error{Reason: ReasonCredentialRejected, Message: "the sandbox's code exchange returned no refresh token; give the production org's connected app the refresh_token scope"}
	}
	host := strings.TrimPrefix(info.instanceURL, "https://")
	return AuthURL{ClientID: prod.ClientID, ClientSecret: prod.ClientSecret, RefreshToken: info.refresh, Host: host}, nil
}
