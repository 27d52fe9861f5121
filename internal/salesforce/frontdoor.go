package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// FrontdoorURL returns a one-time link that logs a browser into the org: the frontdoor_uri of
// GET /services/oauth2/singleaccess, as `sf org open --url-only` gets it. The link is a
// credential: the caller may show it to the person who asked for it and nowhere else. persist
// saves a rotation of cred's refresh token, as in CheckWith (nil when cred cannot rotate).
func (c *Client) FrontdoorURL(ctx context.Context, cred Credential, persist Persist) (string, error) {
	cr, err := credentialValue(cred)
	if err != nil {
		return "", err
	}
	if err := cr.validate(c); err != nil {
		return "", err
	}
	ch := valueChain{cred: cr, persist: persist}
	s, unlock, err := c.lockChain(ctx, ch.ChainID())
	if err != nil {
		return "", err
	}
	defer unlock()
	var link string
	err = c.use(ctx, s, ch, "", func() error {
		var lerr error
		link, lerr = c.singleAccess(ctx, s)
		if errors.Is(lerr, errSessionRefused) {
			return &unauthorizedError{msg: "session refused"}
		}
		return lerr
	})
	var ua *unauthorizedError
	if errors.As(err, &ua) {
		err = &Error{Reason: ReasonCredentialRejected,
			Message: "Salesforce refused a freshly issued access token for a login link; check that the user may log in to the org through the connected app"}
	}
	if err != nil {
		return "", s.scrub(err)
	}
	return link, nil
}

// errSessionRefused is singleaccess refusing the access token: 401, or 403 for an expired one.
var errSessionRefused = errors.New("session refused")

func (c *Client) singleAccess(ctx context.Context, s *session) (string, error) {
	cctx, p, cancel := c.call(ctx, "singleaccess")
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, s.instanceURL+"/services/oauth2/singleaccess", nil)
	if err != nil {
		return "", &Error{Reason: ReasonServerError, Message: "the singleaccess request could not be built"}
	}
	req.Header.Set("Authorization", "Bearer "+s.access)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, req.URL.Host, err)
		c.observeCall(p, err)
		return "", err
	}
	_ = resp.Body.Close()
	if p.status == http.StatusForbidden && !isHTML(p.header, p.body) {
		if code, _ := restErrorText(p.body); code == "" || code == "INVALID_SESSION_ID" || code == "INVALID_AUTH_HEADER" {
			c.observeCall(p, &unauthorizedError{})
			return "", errSessionRefused
		}
	}
	if err := restError(p.status, p.header, p.body); err != nil {
		var ua *unauthorizedError
		if errors.As(err, &ua) {
			c.observeCall(p, err)
			return "", errSessionRefused
		}
		c.observeCall(p, err)
		return "", err
	}
	c.observeCall(p, nil)
	var ans struct {
		FrontdoorURI string `json:"frontdoor_uri"`
	}
	if err := json.Unmarshal(p.body, &ans); err != nil || ans.FrontdoorURI == "" {
		return "", &Error{Reason: ReasonServerError, Message: "Salesforce's singleaccess answer has no frontdoor_uri"}
	}
	u, err := url.Parse(ans.FrontdoorURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", &Error{Reason: ReasonServerError, Message: "Salesforce's singleaccess answer is not an https link"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return "", &Error{Reason: ReasonHostNotAllowed, Message: "Salesforce's login link points at " + serverText(u.Host) + ", which is not allowed (" + hostWhy(err) + ")"}
	}
	return ans.FrontdoorURI, nil
}

// FrontdoorWithAccess returns a one-time link that logs a browser into the org, as FrontdoorURL
// does, from an access token someone handed out (a SalesforceAccessToken's Secret) and the
// instance URL it belongs to: no refresh token is involved and nothing rotates. The instance
// URL must be https on an allowed host, and the link Salesforce answers must be too. The link
// is a credential (see FrontdoorURL); errors never hold the token.
func (c *Client) FrontdoorWithAccess(ctx context.Context, instanceURL, token string) (string, error) {
	if token == "" {
		return "", &Error{Reason: ReasonCredentialRejected, Message: "no access token was handed out"}
	}
	u, err := url.Parse(instanceURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", &Error{Reason: ReasonServerError, Message: "the hand-out's instance URL is not an https URL of a host"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return "", &Error{Reason: ReasonHostNotAllowed, Message: "the hand-out's instance URL points at " + serverText(u.Host) + ", which is not allowed (" + hostWhy(err) + ")"}
	}
	s := &session{access: token, instanceURL: "https://" + u.Host}
	link, err := c.singleAccess(ctx, s)
	if errors.Is(err, errSessionRefused) {
		err = &Error{Reason: ReasonCredentialRejected,
			Message: "Salesforce refused the handed-out access token for a login link: the session ended (expired, revoked, or logged out); ask for access again"}
	}
	if err != nil {
		return "", s.scrub(err)
	}
	return link, nil
}
