package salesforce

import (
	"errors"
	"strings"
	"unicode"
)

// Reason classifies a failure. The set is closed and each value is stable: the operator uses them
// as Kubernetes condition reasons.
type Reason string

const (
	// ReasonAuthURLInvalid: the auth URL (or another credential field) cannot be parsed or used as
	// given. Fix the Secret.
	ReasonAuthURLInvalid Reason = "AuthURLInvalid"
	// ReasonHostNotAllowed: a credential would have been sent to a host outside the allow-list
	// (the auth URL's host, an instance_url answer, a JWT login URL). Nothing was sent.
	ReasonHostNotAllowed Reason = "HostNotAllowed"
	// ReasonCredentialRejected: Salesforce refused the credential (invalid_grant, invalid_client*,
	// inactive user or org, a fresh access token refused). Retrying with the same credential cannot help.
	ReasonCredentialRejected Reason = "CredentialRejected"
	// ReasonUnreachable: DNS, TCP, TLS or a timeout. Usually transient.
	ReasonUnreachable Reason = "Unreachable"
	// ReasonServerError: a 5xx, an HTML page where JSON was expected, a redirect, or an answer that
	// cannot be parsed.
	ReasonServerError Reason = "ServerError"
	// ReasonRateLimited: REQUEST_LIMIT_EXCEEDED from the REST API or rate_limit_exceeded from the
	// token endpoint. Back off; never re-authenticate because of it.
	ReasonRateLimited Reason = "RateLimited"
	// ReasonAPIDisabled: the org's edition or the user has no API access.
	ReasonAPIDisabled Reason = "APIDisabled"
	// ReasonOrgGone: the org no longer exists (deleted, or an expired scratch org).
	ReasonOrgGone Reason = "OrgGone"
	// ReasonAuthConfigInvalid: a JWT bearer credential cannot be used as given (no consumer key or
	// username, a private key that is not PEM, encrypted, not RSA). Fix the configuration.
	ReasonAuthConfigInvalid Reason = "AuthConfigInvalid"
	// ReasonSecretUpdateFailed: Salesforce rotated the refresh token and the caller's Persist
	// could not save it. The client keeps the new token and offers it to Persist again first.
	ReasonSecretUpdateFailed Reason = "SecretUpdateFailed"
)

// Error is every error Check returns and every error ParseAuthURL returns.
type Error struct {
	Reason Reason
	// Message is one sentence a person can act on, with Salesforce's own text where there is one.
	// It never contains a credential.
	Message string
	// Retryable says whether trying again later, with the same credential, can help.
	Retryable bool
	// Code is Salesforce's own error code when there is one ("invalid_grant",
	// "REQUEST_LIMIT_EXCEEDED", ...): for logs and metrics.
	Code string

	// cause is only ever a context error: nothing that could carry a URL, a body or a token.
	cause error
}

func (e *Error) Error() string { return "salesforce: " + string(e.Reason) + ": " + e.Message }

// Unwrap exposes context.Canceled / context.DeadlineExceeded when the caller's context ended.
func (e *Error) Unwrap() error { return e.cause }

// ReasonOf returns the Reason of err: "" for nil, the Reason of an *Error anywhere in its chain,
// and ReasonServerError for any other error (Check itself only ever returns *Error).
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonServerError
}

// IsRetryable reports whether trying again later can help: false for nil, the Retryable field of
// an *Error, and true for any other error (treated like a transient server error).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	return true
}

// maxMessageText bounds how much of Salesforce's text goes into a message.
const maxMessageText = 300

// serverText makes text from a server fit for a single-line message: control characters and runs
// of whitespace collapse to one space, and it is cut to a bounded length.
func serverText(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
		if b.Len() >= maxMessageText {
			b.WriteString("...")
			break
		}
	}
	return b.String()
}

// scrub replaces every secret in the message of an *Error with "***". Salesforce never echoes a
// token, but a message must stay safe even if some server (or proxy) did.
func scrub(err error, secrets ...string) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	for _, s := range secrets {
		if len(s) >= 6 {
			e.Message = strings.ReplaceAll(e.Message, s, "***")
		}
	}
	return err
}
