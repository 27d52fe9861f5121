package salesforce

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// ShortFormClientID is the client id of the Salesforce CLI's own connected app, implied by the
// short auth URL form force://<refreshToken>@<host>.
const ShortFormClientID = "PlatformCLI"

// howToGetAuthURL ends every auth URL error: it is the one fix that always works.
const howToGetAuthURL = "generate it with `sf org auth show-sfdx-auth-url --target-org <alias> --json` and use result.sfdxAuthUrl as printed"

// MaxAuthURLLength bounds an auth URL: a real one is a few hundred bytes.
const MaxAuthURLLength = 4096

// redactedPlaceholder starts what recent Salesforce CLIs print in place of the auth URL in
// the CLI's org display command (--verbose --json).
const redactedPlaceholder = "[REDACTED]"

// AuthURL is a parsed SFDX auth URL: the credential of the refresh-token flow.
//
// Every printed form of an AuthURL is redacted (String, GoString, every fmt verb, JSON, text,
// slog and logr); Reveal is the only way to get the secret text back.
type AuthURL struct {
	ClientID     string // ShortFormClientID for the short form
	ClientSecret string // may be empty: it is then not sent to the token endpoint
	RefreshToken string
	Host         string // host or host:port, no scheme
}

// credentialField is what the Salesforce CLI accepts in each credential field
// (@salesforce/core AuthInfo.parseSfdxAuthUrl): base64url-ish characters and at most two '='.
// The secret alone may be empty, or even bare padding, as in the CLI's pattern.
var (
	credentialField = regexp.MustCompile(`^[a-zA-Z0-9._-]+={0,2}$`)
	secretField     = regexp.MustCompile(`^[a-zA-Z0-9._-]*={0,2}$`)
)

// hostChar is the CLI's character class for the host part; the first other character ends it.
func hostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '.' || c == '_' || c == '-'
}

var schemePrefix = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:/`)

// ParseAuthURL parses an SFDX auth URL as the Salesforce CLI does
// (force://<clientId>:<clientSecret>:<refreshToken>@<host>, the secret may be empty, each field may
// end in up to two '=', the host may carry a port, and anything after the host, such as a path, is
// ignored), plus the legacy short form force://<refreshToken>@<host> (client id PlatformCLI).
// Surrounding whitespace is trimmed.
//
// Where the CLI would silently produce garbage it returns an error instead: a scheme inside the
// host part, a refresh token that is the literal text "undefined" or "null", a host that is not a
// valid host name, a base64-wrapped URL. Errors are *Error with Reason ReasonAuthURLInvalid, say
// how to fix the input, and never contain any part of it but a valid host name.
func ParseAuthURL(s string) (AuthURL, error) {
	s = strings.TrimSpace(s)
	switch {
	case len(s) > MaxAuthURLLength:
		return AuthURL{}, invalidAuthURL(fmt.Sprintf("the value is %d bytes long, but an auth URL is a few hundred bytes (at most %d accepted): the Secret holds something else; %s",
			len(s), MaxAuthURLLength, howToGetAuthURL))
	case strings.HasPrefix(s, redactedPlaceholder):
		return AuthURL{}, invalidAuthURL("this is the Salesforce CLI's redacted placeholder, not the auth URL: run " +
			"`sf org auth show-sfdx-auth-url --target-org <alias> --json` and use result.sfdxAuthUrl as printed")
	case s == "":
		return AuthURL{}, invalidAuthURL("the auth URL is empty; " + howToGetAuthURL)
	case s == "undefined" || s == "null":
		return AuthURL{}, invalidAuthURL(`the auth URL is the literal text "` + s + `", so the variable or field meant to hold it was not set; ` + howToGetAuthURL)
	}
	const prefix = "force://"
	if !strings.HasPrefix(s, prefix) {
		switch {
		case isBase64AuthURL(s):
			return AuthURL{}, invalidAuthURL("the auth URL is base64-encoded: decode it once before use " +
				"(in a Kubernetes Secret put the plain force:// URL under stringData, or base64-encode it exactly once under data)")
		case strings.HasPrefix(s, "{") && strings.Contains(s, "sfdxAuthUrl"):
			return AuthURL{}, invalidAuthURL("this is the JSON output of the Salesforce CLI, not an auth URL: use only the value of result.sfdxAuthUrl")
		case len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix):
			return AuthURL{}, invalidAuthURL("the auth URL must start with force:// in lower case; " + howToGetAuthURL)
		default:
			return AuthURL{}, invalidAuthURL("an auth URL starts with force://; " + howToGetAuthURL)
		}
	}
	rest := s[len(prefix):]
	at := strings.IndexByte(rest, '@')
	if at < 0 {
		return AuthURL{}, invalidAuthURL("the auth URL has no '@' before the host (expected force://<clientId>:<clientSecret>:<refreshToken>@<host>); " + howToGetAuthURL)
	}
	userinfo, hostPart := rest[:at], rest[at+1:]

	var a AuthURL
	fields := strings.Split(userinfo, ":")
	switch len(fields) {
	case 1:
		a.ClientID, a.RefreshToken = ShortFormClientID, fields[0]
	case 3:
		a.ClientID, a.ClientSecret, a.RefreshToken = fields[0], fields[1], fields[2]
	default:
		return AuthURL{}, invalidAuthURL(fmt.Sprintf("the part before '@' has %d ':'-separated fields, expected 3 (clientId:clientSecret:refreshToken) or 1 (refreshToken); %s",
			len(fields), howToGetAuthURL))
	}
	if err := checkCredentialField("client id", a.ClientID, false); err != nil {
		return AuthURL{}, err
	}
	if err := checkCredentialField("client secret", a.ClientSecret, true); err != nil {
		return AuthURL{}, err
	}
	if a.RefreshToken == "undefined" || a.RefreshToken == "null" {
		return AuthURL{}, invalidAuthURL(`the refresh token is the literal text "` + a.RefreshToken + `", so the shell variable or field meant to hold it was not set; ` + howToGetAuthURL)
	}
	if err := checkCredentialField("refresh token", a.RefreshToken, false); err != nil {
		return AuthURL{}, err
	}

	if schemePrefix.MatchString(hostPart) {
		return AuthURL{}, invalidAuthURL("the host part after '@' starts with a scheme such as https://; an auth URL carries the bare host " +
			"(force://...@mydomain.my.salesforce.com), and https:// is implied; " + howToGetAuthURL)
	}
	end := 0
	for end < len(hostPart) && hostChar(hostPart[end]) {
		end++
	}
	a.Host = hostPart[:end]
	if a.Host == "" {
		return AuthURL{}, invalidAuthURL("the auth URL has no host after '@'; " + howToGetAuthURL)
	}
	if why := checkHostPort(a.Host); why != "" {
		return AuthURL{}, invalidAuthURL("the host after '@' is not a valid host name (" + why + "), expected something like mydomain.my.salesforce.com; " + howToGetAuthURL)
	}
	return a, nil
}

func checkCredentialField(name, v string, emptyOK bool) error {
	if v == "" {
		if emptyOK {
			return nil
		}
		return invalidAuthURL("the " + name + " is empty; " + howToGetAuthURL)
	}
	if credentialField.MatchString(v) || emptyOK && secretField.MatchString(v) {
		return nil
	}
	hint := ""
	switch {
	case strings.Contains(v, "%"):
		hint = " (it looks URL-encoded: use the URL exactly as the CLI prints it, without %XX escapes)"
	case strings.ContainsAny(v, "+/"):
		hint = " (it contains '+' or '/', which no Salesforce token has: was it re-encoded along the way?)"
	case strings.ContainsAny(v, " \t\r\n"):
		hint = " (it contains whitespace: was the URL wrapped over several lines?)"
	}
	return invalidAuthURL("the " + name + " contains characters the Salesforce CLI does not accept: only letters, digits, '.', '_', '-' and at most two trailing '='" +
		hint + "; " + howToGetAuthURL)
}

// checkHostPort validates a host or host:port and returns why it is invalid, or "". The reason
// never quotes the input.
func checkHostPort(hp string) string {
	host := hp
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		host = hp[:i]
		port := hp[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || len(port) > 5 {
			return "the port must be a number from 1 to 65535"
		}
		if strings.Contains(host, ":") {
			return "it has more than one ':'"
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			return ""
		}
		return "IPv6 literals are not accepted in an auth URL"
	}
	return checkHostName(host)
}

// checkHostName validates a DNS host name (RFC 1123 labels), returning why it is invalid or "".
func checkHostName(host string) string {
	if host == "" {
		return "it is empty"
	}
	if len(host) > 253 {
		return "it is longer than 253 characters"
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return "it has an empty label (a leading, trailing or doubled '.')"
		}
		if len(l) > 63 {
			return "a label is longer than 63 characters"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "a label starts or ends with '-'"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "only letters, digits, '-' and '.' are allowed in a host name"
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return "the last label is all digits but the host is not an IPv4 address"
	}
	return ""
}

// isBase64AuthURL reports whether s, with any line breaks removed, base64-decodes to a force:// URL.
func isBase64AuthURL(s string) bool {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "force://") {
			return true
		}
	}
	return false
}

func invalidAuthURL(msg string) *Error {
	return &Error{Reason: ReasonAuthURLInvalid, Message: msg}
}

// InstanceURL is the org's base URL: "https://" + Host.
func (a AuthURL) InstanceURL() string { return "https://" + a.Host }

// WithRefreshToken returns a copy of a carrying refresh token t.
func (a AuthURL) WithRefreshToken(t string) AuthURL {
	a.RefreshToken = t
	return a
}

// Reveal returns the full force:// URL, secrets included, always in the long form. It is the only
// way to get the secret text, and exists to write a rotated URL back to a Kubernetes Secret.
func (a AuthURL) Reveal() string {
	return "force://" + a.ClientID + ":" + a.ClientSecret + ":" + a.RefreshToken + "@" + a.Host
}

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}

// String is the redacted URL, e.g. "force://PlatformCLI::***@host" (an empty secret stays empty).
func (a AuthURL) String() string {
	return "force://" + a.ClientID + ":" + redacted(a.ClientSecret) + ":" + redacted(a.RefreshToken) + "@" + a.Host
}

// GoString is the redacted %#v form.
func (a AuthURL) GoString() string {
	return fmt.Sprintf("salesforce.AuthURL{ClientID:%q, ClientSecret:%q, RefreshToken:%q, Host:%q}",
		a.ClientID, redacted(a.ClientSecret), redacted(a.RefreshToken), a.Host)
}

// Format makes every fmt verb print the redacted form.
func (a AuthURL) Format(f fmt.State, verb rune) { formatRedacted(f, verb, a.String(), a.GoString()) }

// MarshalJSON encodes the redacted URL as a JSON string.
func (a AuthURL) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// MarshalText is the redacted URL, for encoders (and slog's text handler) that use it.
func (a AuthURL) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// LogValue is the redacted URL for log/slog.
func (a AuthURL) LogValue() slog.Value { return slog.StringValue(a.String()) }

// MarshalLog is the redacted URL for logr (and so for controller-runtime's logger).
func (a AuthURL) MarshalLog() any { return a.String() }

func formatRedacted(f fmt.State, verb rune, s, goSyntax string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(goSyntax))
	case verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(s)))
	default:
		_, _ = f.Write([]byte(s))
	}
}
