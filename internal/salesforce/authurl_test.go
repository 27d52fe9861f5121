package salesforce

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// Distinctive credential values: a test fails if any of them shows up where it must not.
const (
	testToken  = "5Aep861SECRETrefresh.tok_en-value"
	testSecret = "CLIENTsecret0123456789"
	testHost   = "acme.my.salesforce.com"
)

// cliAuthURL is @salesforce/core's own pattern (AuthInfo.parseSfdxAuthUrl), not anchored at the
// end: ParseAuthURL must agree with it wherever it accepts.
var cliAuthURL = regexp.MustCompile(`^force://([a-zA-Z0-9._-]+={0,2}):([a-zA-Z0-9._-]*={0,2}):([a-zA-Z0-9._-]+={0,2})@([a-zA-Z0-9:._-]+)`)

func TestParseAuthURLAccepts(t *testing.T) {
	tests := []struct {
		name, in string
		want     AuthURL
	}{
		{"CLI form with empty secret", "force://PlatformCLI::" + testToken + "@" + testHost,
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: testHost}},
		{"connected app with secret", "force://3MVG9abc.def:" + testSecret + ":" + testToken + "@" + testHost,
			AuthURL{ClientID: "3MVG9abc.def", ClientSecret: testSecret, RefreshToken: testToken, Host: testHost}},
		{"base64 padding in every field", "force://client==:secret=:" + testToken + "==@" + testHost,
			AuthURL{ClientID: "client==", ClientSecret: "secret=", RefreshToken: testToken + "==", Host: testHost}},
		{"port in the host", "force://PlatformCLI::" + testToken + "@127.0.0.1:8443",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: "127.0.0.1:8443"}},
		{"short form", "force://" + testToken + "@" + testHost,
			AuthURL{ClientID: ShortFormClientID, RefreshToken: testToken, Host: testHost}},
		{"trailing newline", "force://PlatformCLI::" + testToken + "@" + testHost + "\n",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: testHost}},
		{"surrounding whitespace", " \t force://PlatformCLI::" + testToken + "@" + testHost + "\r\n ",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: testHost}},
		{"trailing slash ignored as the CLI does", "force://PlatformCLI::" + testToken + "@" + testHost + "/",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: testHost}},
		{"sandbox host", "force://PlatformCLI::" + testToken + "@acme--uat.sandbox.my.salesforce.com",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: "acme--uat.sandbox.my.salesforce.com"}},
		{"localhost with port", "force://PlatformCLI::" + testToken + "@localhost:8443",
			AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: "localhost:8443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthURL(tt.in)
			if err != nil {
				t.Fatalf("ParseAuthURL: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if again, err := ParseAuthURL(got.Reveal()); err != nil || again != got {
				t.Fatalf("Reveal does not round-trip: %#v, %v", again, err)
			}
		})
	}
}

func TestParseAuthURLRejects(t *testing.T) {
	wrapped := base64.StdEncoding.EncodeToString([]byte("force://PlatformCLI::" + testToken + "@" + testHost + "\n"))
	tests := []struct {
		name, in, wantInMessage string
	}{
		{"empty", "", "empty"},
		{"only whitespace", " \n", "empty"},
		{"whole URL undefined", "undefined", `"undefined"`},
		{"refresh token undefined", "force://PlatformCLI::undefined@" + testHost, `"undefined"`},
		{"short form undefined", "force://undefined@" + testHost, `"undefined"`},
		{"refresh token null", "force://PlatformCLI::null@" + testHost, `"null"`},
		{"scheme in the host", "force://PlatformCLI::" + testToken + "@https://" + testHost, "scheme"},
		{"http scheme in the host", "force://PlatformCLI:" + testSecret + ":" + testToken + "@http://" + testHost, "scheme"},
		{"base64-wrapped URL", wrapped, "base64"},
		{"base64url-wrapped URL without padding", base64.RawURLEncoding.EncodeToString([]byte("force://PlatformCLI::" + testToken + "@" + testHost)), "base64"},
		{"the CLI's redacted placeholder", "[REDACTED] Use 'sf org auth show-sfdx-auth-url' to view", "redacted placeholder"},
		{"a megabyte of token", "force://PlatformCLI::" + strings.Repeat("a", 1<<20) + "@" + testHost, "at most 4096"},
		{"JSON of the CLI", `{"status":0,"result":{"sfdxAuthUrl":"force://PlatformCLI::` + testToken + `@` + testHost + `"}}`, "result.sfdxAuthUrl"},
		{"percent-encoded token", "force://PlatformCLI::" + testToken + "%3D@" + testHost, "URL-encoded"},
		{"plus in token", "force://PlatformCLI::" + testToken + "+x@" + testHost, "'+' or '/'"},
		{"slash in token", "force://PlatformCLI::" + testToken + "/x@" + testHost, "'+' or '/'"},
		{"percent in secret", "force://PlatformCLI:" + testSecret + "%2F:" + testToken + "@" + testHost, "client secret"},
		{"three = of padding", "force://PlatformCLI::" + testToken + "===@" + testHost, "two trailing '='"},
		{"underscore in host", "force://PlatformCLI::" + testToken + "@bad_host.my.salesforce.com", "not a valid host name"},
		{"trailing dot in host", "force://PlatformCLI::" + testToken + "@" + testHost + ".", "empty label"},
		{"port out of range", "force://PlatformCLI::" + testToken + "@" + testHost + ":99999", "port"},
		{"port not a number", "force://PlatformCLI::" + testToken + "@" + testHost + ":abc", "port"},
		{"two colons in host", "force://PlatformCLI::" + testToken + "@" + testHost + ":1:2", "more than one ':'"},
		{"numeric last label", "force://PlatformCLI::" + testToken + "@1.2.3", "all digits"},
		{"no host", "force://PlatformCLI::" + testToken + "@", "no host"},
		{"IPv6 literal", "force://PlatformCLI::" + testToken + "@[::1]:8443", "no host"},
		{"no @", "force://PlatformCLI::" + testToken, "no '@'"},
		{"two fields", "force://PlatformCLI:" + testToken + "@" + testHost, "2 ':'-separated fields"},
		{"four fields", "force://a:b:c:" + testToken + "@" + testHost, "4 ':'-separated fields"},
		{"empty client id", "force://:" + testSecret + ":" + testToken + "@" + testHost, "client id is empty"},
		{"empty refresh token", "force://PlatformCLI:" + testSecret + ":@" + testHost, "refresh token is empty"},
		{"https URL", "https://" + testHost, "starts with force://"},
		{"upper-case scheme", "FORCE://PlatformCLI::" + testToken + "@" + testHost, "lower case"},
		{"whitespace inside", "force://PlatformCLI:: " + testToken + "@" + testHost, "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthURL(tt.in)
			if err == nil {
				t.Fatalf("accepted, got %v", got)
			}
			var e *Error
			if !asError(err, &e) || e.Reason != ReasonAuthURLInvalid || e.Retryable {
				t.Fatalf("want a non-retryable *Error with reason %s, got %#v", ReasonAuthURLInvalid, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantInMessage) {
				t.Errorf("message %q does not contain %q", msg, tt.wantInMessage)
			}
			for _, secret := range []string{testToken, testSecret, testHost, wrapped} {
				if strings.Contains(msg, secret) {
					t.Errorf("message quotes the input: %q", msg)
				}
			}
			if ReasonOf(err) != ReasonAuthURLInvalid || IsRetryable(err) {
				t.Errorf("ReasonOf/IsRetryable disagree with the error")
			}
		})
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

// TestAuthURLIsRedacted prints an AuthURL every way a log line or status could.
func TestAuthURLIsRedacted(t *testing.T) {
	a, err := ParseAuthURL("force://3MVG9app:" + testSecret + ":" + testToken + "@" + testHost)
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		Auth AuthURL
		Ptr  *AuthURL
	}
	var outputs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outputs = append(outputs, fmt.Sprintf(f, a), fmt.Sprintf(f, &a), fmt.Sprintf(f, holder{a, &a}))
	}
	outputs = append(outputs, a.String(), a.GoString(), fmt.Sprint(a), fmt.Sprintln(&a))
	for _, v := range []any{a, &a, holder{a, &a}, map[string]AuthURL{"k": a}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, string(b))
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("check", "auth", a, "ptr", &a)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("check", "auth", a, "ptr", &a, "holder", holder{a, &a})
	outputs = append(outputs, buf.String())
	var logged []string
	logger := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	logger.Info("check", "auth", a, "ptr", &a)
	outputs = append(outputs, logged...)

	for _, out := range outputs {
		if strings.Contains(out, testToken) || strings.Contains(out, testSecret) {
			t.Errorf("credential leaked in %q", out)
		}
	}
	if want := "force://3MVG9app:***:***@" + testHost; a.String() != want {
		t.Errorf("String() = %q, want %q", a.String(), want)
	}
	if !strings.Contains(a.Reveal(), testToken) || !strings.Contains(a.Reveal(), testSecret) {
		t.Errorf("Reveal must return the secrets")
	}
}

func TestJWTBearerIsRedacted(t *testing.T) {
	key := []byte("-----BEGIN PRIVATE KEY-----\nMIIEvSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n")
	j := JWTBearer{ConsumerKey: "3MVG9key", Username: "u@example.com", PrivateKeyPEM: key}
	b, _ := json.Marshal(j)
	for _, out := range []string{fmt.Sprintf("%v", j), fmt.Sprintf("%+v", &j), fmt.Sprintf("%#v", j), string(b)} {
		if strings.Contains(out, "SECRETKEYMATERIAL") {
			t.Errorf("private key leaked in %q", out)
		}
	}
}

// templateText is the text of every ParseAuthURL message, built from inputs covering every branch:
// a word of it appearing in a message is not a leak.
func templateText(seeds []string) string {
	var b strings.Builder
	for _, s := range seeds {
		if _, err := ParseAuthURL(s); err != nil {
			b.WriteString(err.Error())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var credentialRun = regexp.MustCompile(`[a-zA-Z0-9._=-]{6,}`)

// fuzzSeeds covers every branch of ParseAuthURL with the given credential values.
func fuzzSeeds(testToken, testSecret, testHost string) []string {
	wrapped := base64.StdEncoding.EncodeToString([]byte("force://PlatformCLI::" + testToken + "@" + testHost))
	return []string{
		"force://PlatformCLI::" + testToken + "@" + testHost,
		"force://3MVG9app:" + testSecret + ":" + testToken + "@" + testHost,
		"force://id==:sec=:" + testToken + "==@127.0.0.1:8443",
		"force://" + testToken + "@" + testHost,
		"force://PlatformCLI::" + testToken + "@" + testHost + "\n",
		"force://PlatformCLI::" + testToken + "@" + testHost + "/path?x",
		"", "undefined", "null",
		"force://PlatformCLI::undefined@" + testHost,
		"force://PlatformCLI::" + testToken + "@https://" + testHost,
		wrapped,
		`{"result":{"sfdxAuthUrl":"force://PlatformCLI::` + testToken + `@` + testHost + `"}}`,
		"force://PlatformCLI::" + testToken + "%3D@" + testHost,
		"force://PlatformCLI::" + testToken + "+/@" + testHost,
		"force://PlatformCLI::" + testToken + " @" + testHost,
		"force://PlatformCLI::" + testToken + "===@" + testHost,
		"force://PlatformCLI:" + testSecret + "%2F:" + testToken + "@" + testHost,
		"force://PlatformCLI:" + testSecret + " :" + testToken + "@" + testHost,
		"force://PlatformCLI:" + testSecret + "+:" + testToken + "@" + testHost,
		"force://Platform%CLI:" + testSecret + ":" + testToken + "@" + testHost,
		"force://Platform CLI:" + testSecret + ":" + testToken + "@" + testHost,
		"force://0:=:" + testToken + "@" + testHost,
		"force://PlatformCLI::" + testToken + "@bad_host",
		"force://PlatformCLI::" + testToken + "@" + testHost + ":99999",
		"force://PlatformCLI::" + testToken + "@" + testHost + ":1:2",
		"force://PlatformCLI::" + testToken + "@1.2.3",
		"force://PlatformCLI::" + testToken + "@",
		"force://PlatformCLI::" + testToken,
		"force://a:" + testToken + "@" + testHost,
		"force://:" + testSecret + ":" + testToken + "@" + testHost,
		"force://a:b:@" + testHost,
		"https://" + testHost,
		"FORCE://a::" + testToken + "@" + testHost,
		"force://a::" + testToken + "@" + testHost + ".",
	}
}

// FuzzParseAuthURL proves the parser never panics, agrees with the Salesforce CLI wherever it
// accepts, never quotes its input in an error, and never prints a credential it parsed.
func FuzzParseAuthURL(f *testing.F) {
	for _, s := range fuzzSeeds(testToken, testSecret, testHost) {
		f.Add(s)
	}
	// The same branches with other credentials: what their messages share is template text.
	templates := templateText(fuzzSeeds("9Zq111OTHERtoken.value", "OTHERsecret98765", "other.my.salesforce.com"))
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseAuthURL(in)
		trimmed := strings.TrimSpace(in)
		if err != nil {
			var e *Error
			if !asError(err, &e) || e.Reason != ReasonAuthURLInvalid {
				t.Fatalf("error is not an AuthURLInvalid *Error: %#v", err)
			}
			msg := err.Error()
			for _, run := range credentialRun.FindAllString(in, -1) {
				if strings.Contains(msg, run) && !strings.Contains(templates, run) {
					t.Fatalf("error message quotes part of the input (%d characters)", len(run))
				}
			}
			// Where the CLI's pattern matches with a valid host and a real token, we must accept.
			if m := cliAuthURL.FindStringSubmatch(trimmed); m != nil && checkHostPort(m[4]) == "" &&
				m[3] != "undefined" && m[3] != "null" && !schemePrefix.MatchString(trimmed[strings.IndexByte(trimmed, '@')+1:]) {
				t.Fatalf("refused a URL the CLI accepts: %s", e.Message)
			}
			return
		}
		if a.ClientID == "" || a.RefreshToken == "" || checkHostPort(a.Host) != "" {
			t.Fatalf("accepted an incomplete URL: %v", a)
		}
		if m := cliAuthURL.FindStringSubmatch(trimmed); m != nil {
			if m[1] != a.ClientID || m[2] != a.ClientSecret || m[3] != a.RefreshToken || m[4] != a.Host {
				t.Fatalf("disagrees with the CLI: got %v", a)
			}
		} else if a.ClientID != ShortFormClientID || a.ClientSecret != "" {
			t.Fatalf("accepted a long form the CLI refuses: %v", a)
		}
		again, err := ParseAuthURL(a.Reveal())
		if err != nil || again != a {
			t.Fatalf("Reveal does not round-trip: %v", err)
		}
		b, _ := json.Marshal(a)
		for _, secret := range []string{a.RefreshToken, a.ClientSecret} {
			if len(secret) < 6 || strings.Contains(a.ClientID, secret) || strings.Contains(a.Host, secret) ||
				strings.Contains("force://:***@salesforce.AuthURL{ClientID:, ClientSecret:, RefreshToken:, Host:}", secret) {
				continue
			}
			for _, out := range []string{a.String(), a.GoString(), fmt.Sprintf("%+v", a), string(b)} {
				if strings.Contains(out, secret) {
					t.Fatalf("a printed form leaks a credential")
				}
			}
		}
	})
}
