package salesforce

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// unauthorizedError is a REST 401: the cached access token is dead. Check turns it into one
// refresh and one retry, or into CredentialRejected when a fresh token gets it too.
type unauthorizedError struct {
	code, msg string
}

func (e *unauthorizedError) Error() string { return "unauthorized: " + withCode(e.msg, e.code) }

func withCode(msg, code string) string {
	switch {
	case msg == "" && code == "":
		return "no details given"
	case code == "":
		return msg
	case msg == "":
		return code
	}
	return msg + " (" + code + ")"
}

func hostWhy(err error) string {
	var h *hostNotAllowedError
	if errors.As(err, &h) {
		return h.why
	}
	return "not allowed"
}

// transportError classifies a failure to get any answer at all. The text comes from the error
// inside *url.Error, never from the URL itself, and is bounded.
func (c *Client) transportError(ctx context.Context, host string, err error) *Error {
	var own *Error
	if errors.As(err, &own) {
		return own // the transport's own refusal (a courtesy limit)
	}
	var h *hostNotAllowedError
	if errors.As(err, &h) {
		return &Error{Reason: ReasonHostNotAllowed, Message: h.Error() + "; nothing was sent. " +
			"Only Salesforce's own domains are contacted: fix the host in the auth URL, or add it to the operator's --salesforce-allowed-hosts flag"}
	}
	if ctx.Err() != nil {
		return &Error{Reason: ReasonUnreachable, Retryable: true, cause: ctx.Err(),
			Message: fmt.Sprintf("the call to %s was abandoned: %v", host, ctx.Err())}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return &Error{Reason: ReasonUnreachable, Retryable: true,
			Message: fmt.Sprintf("%s did not answer within %s", host, c.timeout)}
	case errors.As(err, &dnsErr):
		return &Error{Reason: ReasonUnreachable, Retryable: true,
			Message: fmt.Sprintf("cannot resolve %s: %s; check the host in the credential and the cluster's DNS and egress", host, serverText(dnsErr.Err))}
	case errors.As(err, &unknownCA) || errors.As(err, &hostnameErr) || errors.As(err, &invalidCert) || errors.As(err, &verifyErr):
		return &Error{Reason: ReasonUnreachable,
			Message: fmt.Sprintf("the TLS certificate of %s is not trusted: %s; a proxy may be intercepting TLS, or the operator needs its CA", host, serverText(err.Error()))}
	}
	return &Error{Reason: ReasonUnreachable, Retryable: true,
		Message: fmt.Sprintf("cannot reach %s: %s", host, serverText(err.Error()))}
}

// tokenError classifies a failed token request from what the guarded transport saw and from
// x/oauth2's error. oauth2.RetrieveError.Body is only ever parsed, never quoted.
func (c *Client) tokenError(ctx context.Context, host string, p *probe, err error, fix string) *Error {
	if p.err != nil {
		return c.transportError(ctx, host, p.err)
	}
	if !p.attempted {
		if ctx.Err() != nil {
			return c.transportError(ctx, host, ctx.Err())
		}
		return &Error{Reason: ReasonServerError, Message: "the token request could not be built"}
	}
	if p.status >= 300 && p.status < 400 {
		return redirectError(p.status, p.header)
	}
	if isHTML(p.header, p.body) {
		return htmlError(p.status, p.body)
	}
	var code, desc string
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code, desc = re.ErrorCode, re.ErrorDescription
	}
	if code == "" {
		// The JWT flow does not parse error codes: read them from the body ourselves.
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(p.body, &body) == nil {
			code, desc = body.Error, body.Description
		}
	}
	code, desc = serverText(code), serverText(desc)
	switch {
	case code == "rate_limit_exceeded":
		return &Error{Reason: ReasonRateLimited, Retryable: true, Code: code,
			Message: "Salesforce is rate-limiting logins for this user or app: " + withCode(desc, code) + "; the operator backs off and retries later"}
	case strings.Contains(strings.ToLower(desc), "already being processed"):
		// Another request with the same refresh token is in flight (Salesforce serialises them):
		// nothing was spent or revoked. The token's one owner retries it later.
		return &Error{Reason: ReasonServerError, Retryable: true, Code: code,
			Message: "Salesforce is still processing another token request with this refresh token: " + withCode(desc, code) + "; the operator tries again"}
	case code == "server_error" || code == "temporarily_unavailable":
		return &Error{Reason: ReasonServerError, Retryable: true, Code: code,
			Message: "Salesforce's token endpoint failed: " + withCode(desc, code)}
	case code != "":
		return &Error{Reason: ReasonCredentialRejected, Code: code,
			Message: "Salesforce rejected the credential: " + withCode(desc, code) + "; " + fix}
	case p.status >= 500:
		return &Error{Reason: ReasonServerError, Retryable: true,
			Message: fmt.Sprintf("Salesforce's token endpoint answered HTTP %d", p.status)}
	case p.status >= 400:
		return &Error{Reason: ReasonServerError,
			Message: fmt.Sprintf("the token endpoint on %s answered HTTP %d without an OAuth error; is it a Salesforce org?", host, p.status)}
	}
	return &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's token answer could not be read"}
}

func redirectError(status int, h http.Header) *Error {
	target := "another location"
	if u, err := url.Parse(h.Get("Location")); err == nil && u.Host != "" {
		target = serverText(u.Scheme + "://" + u.Host)
	}
	return &Error{Reason: ReasonServerError, Message: fmt.Sprintf("Salesforce answered HTTP %d, a redirect to %s, which is never followed; "+
		"if the org's My Domain changed, put the new host in the credential", status, target)}
}

func isHTML(h http.Header, body []byte) bool {
	if strings.Contains(strings.ToLower(h.Get("Content-Type")), "html") {
		return true
	}
	b := bytes.ToLower(bytes.TrimSpace(body[:min(len(body), 512)]))
	return bytes.HasPrefix(b, []byte("<!doctype html")) || bytes.HasPrefix(b, []byte("<html"))
}

// orgGoneMarkers are the texts of the pages Salesforce serves where an org no longer exists.
var orgGoneMarkers = [][]byte{[]byte("data not available"), []byte("url no longer exists")}

func htmlError(status int, body []byte) *Error {
	lower := bytes.ToLower(body)
	for _, m := range orgGoneMarkers {
		if bytes.Contains(lower, m) {
			return &Error{Reason: ReasonOrgGone, Code: "DATA_NOT_AVAILABLE",
				Message: "the org no longer exists: Salesforce answers \"Data Not Available\" (it was deleted, or it is an expired scratch org)"}
		}
	}
	return &Error{Reason: ReasonServerError, Retryable: true,
		Message: fmt.Sprintf("Salesforce answered with an HTML page (HTTP %d) instead of JSON; it may be down for maintenance", status)}
}

// restErrorText reads Salesforce's REST error body: [{"message","errorCode"}], a single object,
// or an OAuth-style {"error","error_description"}.
func restErrorText(body []byte) (code, msg string) {
	type restErr struct {
		Message     string `json:"message"`
		ErrorCode   string `json:"errorCode"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	var list []restErr
	var one restErr
	switch {
	case json.Unmarshal(body, &list) == nil && len(list) > 0:
		one = list[0]
	case json.Unmarshal(body, &one) == nil:
	default:
		return "", ""
	}
	if one.ErrorCode == "" && one.Error != "" {
		one.ErrorCode, one.Message = one.Error, one.Description
	}
	return serverText(one.ErrorCode), serverText(one.Message)
}

var apiDisabledCodes = map[string]bool{
	"API_DISABLED_FOR_ORG":      true,
	"API_CURRENTLY_DISABLED":    true,
	"RESTAPINOTENABLED":         true,
	"REST_API_NOT_ENABLED":      true,
	"FUNCTIONALITY_NOT_ENABLED": true,
}

// restError classifies a REST answer: nil for a 2xx that is not an HTML page; a 401 is an
// *unauthorizedError.
func restError(status int, h http.Header, body []byte) error {
	if h == nil {
		h = http.Header{}
	}
	if status >= 200 && status < 300 && !isHTML(h, body) {
		return nil
	}
	if status >= 300 && status < 400 {
		return redirectError(status, h)
	}
	if isHTML(h, body) {
		return htmlError(status, body)
	}
	code, msg := restErrorText(body)
	switch {
	case status == http.StatusUnauthorized || code == "INVALID_SESSION_ID":
		return &unauthorizedError{code: code, msg: msg}
	case code == "REQUEST_LIMIT_EXCEEDED":
		return &Error{Reason: ReasonRateLimited, Retryable: true, Code: code,
			Message: "Salesforce refused the call: " + withCode(msg, code) + "; the org's API limit is used up, so the operator backs off"}
	case apiDisabledCodes[code]:
		return &Error{Reason: ReasonAPIDisabled, Code: code,
			Message: "the org or user has no API access: " + withCode(msg, code) +
				"; the API needs an edition that includes it (Enterprise, Unlimited, Performance, Developer) and a user with the API Enabled permission"}
	case status >= 500:
		return &Error{Reason: ReasonServerError, Retryable: true, Code: code,
			Message: fmt.Sprintf("Salesforce answered HTTP %d: %s", status, withCode(msg, code))}
	case code == "" && msg == "" && status < 400:
		return &Error{Reason: ReasonServerError, Retryable: true,
			Message: fmt.Sprintf("Salesforce answered HTTP %d, which the operator does not expect", status)}
	}
	return &Error{Reason: ReasonServerError, Code: code,
		Message: fmt.Sprintf("Salesforce answered HTTP %d: %s", status, withCode(msg, code))}
}
