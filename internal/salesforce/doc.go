// Package salesforce is the operator's only way to talk to a Salesforce org: it parses SFDX auth
// URLs, authenticates with a refresh token or a JWT bearer assertion, keeps access tokens in memory,
// and reads the facts the operator reports about an org (identity, edition, sandbox/scratch/DevHub,
// API headroom) in as few API calls as Salesforce allows: two for a first check, one afterwards.
//
// What it must never do:
//   - send a credential anywhere but HTTPS on a Salesforce domain or a host the operator was
//     explicitly told to trust: hosts are checked before a request is built and again when
//     dialling, redirects are never followed, and a Salesforce name that resolves to a loopback,
//     link-local or unspecified address is refused;
//   - put a credential into an error, a log line or a printed value: AuthURL and JWTBearer print
//     redacted in every form (fmt, JSON, slog, logr), errors carry Salesforce's own message text
//     only, scrubbed of anything secret, and wrapped errors are never ones that could hold a
//     token or a response body;
//   - write to an org: every call it makes is a read;
//   - present a refresh token twice, or two at once: Salesforce enforces one-time-use refresh
//     tokens and revokes the whole chain on a replay. Every stored credential is used through its
//     Chain (chain.go): one session and one lock per place it is stored, the stored value re-read
//     and the exchange claimed before each refresh, a rotation saved before its access token is
//     used, and no exchange started once the caller's context is done.
//
// Every failure is an *Error whose Reason belongs to a small closed set (see Reason), stable
// enough to be a Kubernetes condition reason, and which says whether retrying can help.
package salesforce
