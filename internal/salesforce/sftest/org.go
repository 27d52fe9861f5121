package sftest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// OrgKind is the kind of a fake org.
type OrgKind string

const (
	Production       OrgKind = "Production"
	Sandbox          OrgKind = "Sandbox"
	DeveloperEdition OrgKind = "DeveloperEdition"
	Scratch          OrgKind = "Scratch"
)

// OrgSpec describes a fake org. Zero fields get defaults: Kind Production; Name "Fake Org N";
// Username "admin@<name>.example.com"; Edition by kind ("Enterprise Edition", or "Developer
// Edition" for DeveloperEdition and Scratch); ClientID "PlatformCLI" with no secret (the CLI's
// own app); DailyAPIMax by kind (100000 production, 5000000 sandbox, 15000 otherwise);
// TrialExpirationDate in 7 days for scratch orgs (and only for them); CallbackURL the CLI's
// (http://localhost:1717/OauthRedirect); for a sandbox, SandboxName its name lower-cased to
// letters and digits (at most 10).
type OrgSpec struct {
	Name                string
	Kind                OrgKind
	DevHub              bool
	Username            string
	Edition             string
	NamespacePrefix     string
	ClientID            string
	ClientSecret        string
	DailyAPIMax         int64
	InstanceName        string
	TrialExpirationDate time.Time
	// CallbackURL is the connected app's callback: the only redirect_uri its web login accepts.
	CallbackURL string
	// Production is the org a sandbox was copied from: its Tooling API lists the sandbox
	// (SandboxProcess) and authorizes its user (sandboxAuth). Only for Kind Sandbox.
	Production  *Org
	SandboxName string
	// ApprovalRequired: the user has not yet allowed the connected app. After a web login,
	// authorize shows the "Allow Access?" page, as Salesforce does the first time a user
	// authorizes an app that is not admin-approved; once allowed, it does not ask again.
	ApprovalRequired bool
}

// Org is one fake org. Its methods are safe for concurrent use.
type Org struct {
	s    *Server
	spec OrgSpec // immutable after AddOrg

	// guarded by s.mu
	orgID, userID    string
	current          string          // the refresh token AuthURL shows
	currentIssued    time.Time       // when current was issued
	valid            map[string]bool // refresh tokens that still work
	epoch            int             // access tokens of an older epoch are dead
	rotate           bool
	rateLimited      bool
	loginRateLimited bool
	apiDisabled      bool
	inactive         bool
	deleted          bool
	apiUsed          int64
	instanceURL      string // "" = the server's URL
	consumerKey      string
	jwtKey           *rsa.PrivateKey
	failAlways       FailMode
	password         string // for the web login form
	webLoginDenied   bool
	approvedApps     map[string]bool // client ids the user allowed on the approval page
	activating       bool            // a sandbox whose copy is done but whose user cannot log in yet
	sandboxInfoID    string          // a sandbox's SandboxInfo and SandboxProcess ids
	sandboxProcessID string

	reuseDetection    bool // SetReuseDetection
	concurrentRefusal bool // SetConcurrentRefreshRefusal
	spentPresented    int  // SpentTokensPresented; never reset
	concurrentRefused int  // ConcurrentRefreshesRefused; never reset
	chainsRevoked     int  // ChainsRevoked; never reset
	accessRevoked     int  // AccessTokensRevoked; never reset
	refreshesGranted  int  // RefreshesGranted; never reset
}

// AddOrg creates an org with one valid refresh token (see AuthURL).
func (s *Server) AddOrg(spec OrgSpec) *Org {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.orgs) + 1
	if spec.Kind == "" {
		spec.Kind = Production
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("Fake Org %d", n)
	}
	if spec.Username == "" {
		spec.Username = "admin@" + slug(spec.Name) + ".example.com"
	}
	if spec.Edition == "" {
		spec.Edition = "Enterprise Edition"
		if spec.Kind == DeveloperEdition || spec.Kind == Scratch {
			spec.Edition = "Developer Edition"
		}
	}
	if spec.ClientID == "" {
		spec.ClientID = "PlatformCLI"
	}
	if spec.DailyAPIMax == 0 {
		switch spec.Kind {
		case Production:
			spec.DailyAPIMax = 100000
		case Sandbox:
			spec.DailyAPIMax = 5000000
		default:
			spec.DailyAPIMax = 15000
		}
	}
	if spec.InstanceName == "" {
		spec.InstanceName = map[OrgKind]string{Production: "NA224", Sandbox: "CS42", DeveloperEdition: "NA173", Scratch: "CS8"}[spec.Kind]
	}
	if spec.Kind == Scratch && spec.TrialExpirationDate.IsZero() {
		spec.TrialExpirationDate = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 7)
	}
	if spec.Kind != Scratch {
		spec.TrialExpirationDate = time.Time{}
	}
	if spec.CallbackURL == "" {
		spec.CallbackURL = DefaultCallbackURL
	}
	if spec.Kind != Sandbox {
		spec.Production, spec.SandboxName = nil, ""
	} else if spec.SandboxName == "" {
		spec.SandboxName = sandboxName(spec.Name)
	}
	o := &Org{s: s, spec: spec, orgID: newID("00D"), userID: newID("005"), valid: map[string]bool{},
		password: randomToken(12), sandboxInfoID: newID("0GQ"), sandboxProcessID: newID("0GR"),
		reuseDetection: s.strictRotation, concurrentRefusal: s.strictRotation}
	s.issued = append(s.issued, o.password)
	if spec.ClientSecret != "" {
		s.issued = append(s.issued, spec.ClientSecret)
	}
	o.newRefreshTokenLocked(nil)
	s.orgs = append(s.orgs, o)
	return o
}

func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// randomToken is n random bytes in base64url without padding: valid in an auth URL.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newID makes an 18-character Salesforce id with the given 3-character key prefix.
func newID(prefix string) string {
	const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte(prefix)
	for len(b) < 15 {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		if err != nil {
			panic(err)
		}
		b = append(b, alnum[n.Int64()])
	}
	return string(b) + idSuffix(string(b))
}

// idSuffix is the case-safe suffix of a 15-character id: one character per five, encoding which
// of them are upper case.
func idSuffix(id15 string) string {
	const suffix = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	var out []byte
	for i := 0; i < 3; i++ {
		n := 0
		for j := 0; j < 5; j++ {
			if c := id15[i*5+j]; c >= 'A' && c <= 'Z' {
				n |= 1 << j
			}
		}
		out = append(out, suffix[n])
	}
	return string(out)
}

// Spec is the org's spec with defaults filled in.
func (o *Org) Spec() OrgSpec { return o.spec }

// Name is Organization.Name.
func (o *Org) Name() string { return o.spec.Name }

// Username is the org's user.
func (o *Org) Username() string { return o.spec.Username }

// OrgID is the org's current 18-character id (it changes on RefreshSandbox).
func (o *Org) OrgID() string {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.orgID
}

// UserID is the user's 18-character id.
func (o *Org) UserID() string {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.userID
}

// AuthURL is force://<clientId>:<secret>:<refreshToken>@<host> with the org's current refresh
// token: after a rotation, the rotated one; after RevokeRefreshTokens, the dead one (until
// Reauthorize).
func (o *Org) AuthURL() string {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return "force://" + o.spec.ClientID + ":" + o.spec.ClientSecret + ":" + o.current + "@" + o.s.Host()
}

// Reauthorize issues a new refresh token, as logging in again would, and returns the new
// AuthURL. Older refresh tokens stay as they were: the new one starts a credential chain of its
// own, which a replay in another chain does not revoke.
func (o *Org) Reauthorize() string {
	o.s.mu.Lock()
	o.newRefreshTokenLocked(nil)
	o.s.mu.Unlock()
	return o.AuthURL()
}

// AuthorizationCode issues a one-time code for the authorization_code grant, bound to no client,
// redirect URI or PKCE challenge (the web login of Password and the authorize endpoint issues
// bound ones); exchanging it yields a new refresh token that becomes current.
func (o *Org) AuthorizationCode() string {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	c := randomToken(32)
	o.s.issued = append(o.s.issued, c)
	o.s.codes[c] = &authCode{org: o}
	return c
}

// RevokeRefreshTokens revokes every refresh token and every access token of the org: the token
// endpoint answers invalid_grant "expired access/refresh token", REST answers 401.
func (o *Org) RevokeRefreshTokens() {
	o.locked(func() {
		o.valid = map[string]bool{}
		o.epoch++
	})
}

// SetRotateRefreshTokens turns refresh-token rotation on or off: when on, every refresh answer
// carries a new refresh_token, the next of the same credential chain, and the one used is spent.
// While it is on, Salesforce's rules for one-time-use tokens apply too (see SetReuseDetection and
// SetConcurrentRefreshRefusal).
func (o *Org) SetRotateRefreshTokens(on bool) {
	o.locked(func() {
		o.rotate = on
	})
}

// ExpireAccessTokens ends every session: the next REST call answers 401 INVALID_SESSION_ID.
func (o *Org) ExpireAccessTokens() {
	o.locked(func() {
		o.epoch++
	})
}

// RefreshSandbox does what a sandbox refresh does: a new org id, every old token dead, API usage
// reset, and a fresh refresh token that AuthURL returns.
func (o *Org) RefreshSandbox() {
	o.locked(func() {
		o.orgID = newID("00D")
		o.epoch++
		o.valid = map[string]bool{}
		o.apiUsed = 0
		o.newRefreshTokenLocked(nil)
	})
}

// Delete deletes the org (or lets a scratch org expire): its token endpoint and REST API answer
// 404 with the HTML "Data Not Available" page, for every token it ever issued.
func (o *Org) Delete() {
	o.locked(func() {
		o.deleted = true
		o.epoch++
	})
}

// SetRateLimited makes every REST call answer 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit
// exceeded." (as does using up DailyAPIMax). The token endpoint is not affected.
func (o *Org) SetRateLimited(on bool) {
	o.locked(func() {
		o.rateLimited = on
	})
}

// SetLoginRateLimited makes the token endpoint answer 400 rate_limit_exceeded for this org.
func (o *Org) SetLoginRateLimited(on bool) {
	o.locked(func() {
		o.loginRateLimited = on
	})
}

// SetAPIDisabled makes every REST call answer 403 API_DISABLED_FOR_ORG.
func (o *Org) SetAPIDisabled(on bool) {
	o.locked(func() {
		o.apiDisabled = on
	})
}

// SetInactiveUser deactivates (or reactivates) the user: the token endpoint answers
// invalid_grant "inactive user", and deactivating ends every session.
func (o *Org) SetInactiveUser(on bool) {
	o.locked(func() {
		o.inactive = on
		if on {
			o.epoch++
		}
	})
}

// SetInstanceURL makes the token endpoint answer this instance_url ("" restores the server's
// URL): for testing a client's refusal of an instance outside its allow-list.
func (o *Org) SetInstanceURL(u string) {
	o.locked(func() {
		o.instanceURL = u
	})
}

// FailAlways makes every request attributed to this org (by its tokens, codes or JWT issuer) fail
// in mode until FailAlways(0). Unlike Server.FailNext, which fails the next requests whoever sends
// them, it is safe when other tests share the server.
func (o *Org) FailAlways(mode FailMode) {
	o.locked(func() {
		o.failAlways = mode
	})
}

// APIUsage is the org's DailyApiRequests used and max.
func (o *Org) APIUsage() (used, max int64) {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	return o.apiUsed, o.spec.DailyAPIMax
}

// JWT enables the JWT bearer flow for the org (generating an RSA key on first use) and returns
// the connected app's consumer key, the username and the private key in PKCS#8 PEM.
func (o *Org) JWT() (consumerKey, username string, privateKeyPEM []byte) {
	o.s.mu.Lock()
	ready := o.jwtKey != nil
	o.s.mu.Unlock()
	if !ready {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		o.s.mu.Lock()
		if o.jwtKey == nil {
			o.jwtKey = key
			o.consumerKey = "3MVG9" + strings.ReplaceAll(randomToken(60), "-", ".")
			o.s.apps[o.consumerKey] = o
		}
		o.s.mu.Unlock()
	}
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	der, err := x509.MarshalPKCS8PrivateKey(o.jwtKey)
	if err != nil {
		panic(err)
	}
	return o.consumerKey, o.spec.Username, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// locked runs f holding the server's lock: every knob changes state the handlers read under it.
func (o *Org) locked(f func()) {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	f()
}

// AddDemoOrgs adds the demo orgs of hack/fakesalesforce and hack/fidelity: a production org
// acme-prod, its sandbox acme-uat (sandbox name uat), and a developer-edition DevHub acme-devhub.
func AddDemoOrgs(s *Server) []*Org {
	prod := s.AddOrg(OrgSpec{Name: "acme-prod", Kind: Production, Username: "admin@acme-prod.example.com"})
	return []*Org{
		prod,
		s.AddOrg(OrgSpec{Name: "acme-uat", Kind: Sandbox, Username: "admin@acme-prod.example.com.uat", Production: prod, SandboxName: "uat"}),
		s.AddOrg(OrgSpec{Name: "acme-devhub", Kind: DeveloperEdition, DevHub: true, Username: "admin@acme-devhub.example.com"}),
	}
}
