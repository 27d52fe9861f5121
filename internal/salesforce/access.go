package salesforce

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Hand-outs: short-lived access to an org for someone else (a pipeline, a person), given by the
// chain's one owner. The refresh token never leaves: Access returns the chain session's access
// token, exchanging the refresh token only when the session holds none or Salesforce refused it,
// under the chain's lock like every other use of the chain.
//
// Salesforce hands the same access token to every refresh of a chain while its session lives
// (docs/salesforce-protocol.md, "One session per chain"), so every hand-out of a chain shares the
// operator's own session: revoking one hand-out's token ends them all. The caller revokes a token
// (RevokeAccess) only when no other live hand-out holds it.

// Access is a live access token of an org and where to use it. The token is a credential: it
// goes only to the Secret made for it.
type Access struct {
	Token       string
	InstanceURL string
	OrgID       string
	UserID      string
}

// Access returns a live access token of the chain ch stores. storedVersion is as for CheckChain.
// It costs one Salesforce call (GET the API's resource directory, which proves the session still
// lives: a session can end at any moment, by its timeout or an administrator), and a token
// exchange only when the session has no token or Salesforce refused it. Errors are as CheckChain's.
func (c *Client) Access(ctx context.Context, ch Chain, storedVersion string) (Access, error) {
	s, unlock, err := c.lockChain(ctx, ch.ChainID())
	if err != nil {
		return Access{}, err
	}
	defer unlock()
	ctx = withOrgLimiter(ctx, s.limiter)
	err = c.use(ctx, s, ch, storedVersion, func() error { return c.resources(ctx, s) })
	if err != nil {
		var ua *unauthorizedError
		if errors.As(err, &ua) {
			err = &Error{Reason: ReasonCredentialRejected, Code: ua.code,
				Message: "Salesforce refused a freshly issued access token: " + withCode(ua.msg, ua.code)}
		}
		if r := ReasonOf(err); r == ReasonCredentialRejected || r == ReasonOrgGone {
			s.access = ""
		}
		return Access{}, s.scrub(err)
	}
	return Access{Token: s.access, InstanceURL: s.instanceURL, OrgID: s.orgID, UserID: s.userID}, nil
}

// resources is GET /services/data/vNN.0 with the session's token: the cheapest authenticated
// call (what the CLI reads for a connected status).
func (c *Client) resources(ctx context.Context, s *session) error {
	cctx, p, cancel := c.call(ctx, "resources")
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, s.instanceURL+"/services/data/v"+c.apiVersion, nil)
	if err != nil {
		return &Error{Reason: ReasonServerError, Message: "the request could not be built"}
	}
	req.Header.Set("Authorization", "Bearer "+s.access)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, req.URL.Host, err)
		c.observeCall(p, err)
		return err
	}
	_ = resp.Body.Close()
	if err := restError(p.status, p.header, p.body); err != nil {
		c.observeCall(p, err)
		return err
	}
	c.observeCall(p, nil)
	return nil
}

// RevokeAccess revokes an access token that Access handed out (POST /services/oauth2/revoke at
// instanceURL), under the chain's lock, and drops it from the chain's session when the session
// holds it, so the next use of the chain gets a new one (ch nil: the chain is gone, no lock). A token Salesforce no longer knows
// (answer invalid_token) counts as revoked. It never presents the refresh token.
func (c *Client) RevokeAccess(ctx context.Context, ch Chain, instanceURL, token string) error {
	if token == "" {
		return nil
	}
	u, err := url.Parse(instanceURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return &Error{Reason: ReasonServerError, Message: "the hand-out's instance URL is not an https URL"}
	}
	if _, err := c.allow.check(u.Host); err != nil {
		return &Error{Reason: ReasonHostNotAllowed, Message: "the hand-out's instance URL points at " + serverText(u.Host) + ", which is not allowed (" + hostWhy(err) + ")"}
	}
	if ch != nil {
		s, unlock, err := c.lockChain(ctx, ch.ChainID())
		if err != nil {
			return err
		}
		defer unlock()
		if s.access == token {
			s.access = ""
		}
		ctx = withOrgLimiter(ctx, s.limiter)
	}
	cctx, p, cancel := c.call(ctx, "revoke")
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, strings.TrimSuffix(instanceURL, "/")+"/services/oauth2/revoke",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return &Error{Reason: ReasonServerError, Message: "the revoke request could not be built"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, req.URL.Host, err)
		c.observeCall(p, err)
		return scrub(err, token)
	}
	_ = resp.Body.Close()
	if p.status == http.StatusOK {
		c.observeCall(p, nil)
		return nil
	}
	if p.status == http.StatusBadRequest {
		if code, _ := restErrorText(p.body); code == "invalid_token" {
			c.observeCall(p, nil)
			return nil // already dead: expired, revoked, or its chain revoked
		}
	}
	err = &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce did not confirm the revocation (HTTP " + http.StatusText(p.status) + ")"}
	c.observeCall(p, err)
	return err
}
