package salesforce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// defaultAllowedSuffixes are Salesforce's own domains: the only ones a credential goes to unless
// the operator is told otherwise. Source: Salesforce Help, "Allow the Required Domains"
// (help.salesforce.com, "allowlist Salesforce domains"), as published for My Domain, enhanced
// domains, Government Cloud (salesforce.mil) and the Alibaba-operated China region
// (sfcrmproducts.cn, sfcrmapps.cn); recalled, the page itself could not be fetched from here.
// Only the suffixes that can serve a login or an API endpoint are kept; content-only domains
// (documentforce.com, force-user-content.com, sfdcstatic.com, ...) never see a token.
// Each entry matches any name strictly below it, on port 443 only.
var defaultAllowedSuffixes = []string{
	".salesforce.com", // login., test., *.my.salesforce.com, *.sandbox.my.salesforce.com, *.scratch.my.salesforce.com, instances
	".force.com",      // *.lightning.force.com, *.my.site... legacy force.com sites and instances
	".cloudforce.com", // legacy My Domain
	".database.com",   // database.com orgs
	".salesforce.mil", // Government Cloud Plus - Defense
	".salesforce-setup.com",
	".sfcrmproducts.cn", // Salesforce on Alibaba Cloud
	".sfcrmapps.cn",
	".site.com", // Experience Cloud *.my.site.com
	".salesforce-sites.com",
	".salesforce-experience.com",
	".salesforceliveagent.com",
	".visualforce.com",
	".lightning.force.com", // covered by .force.com; listed because it is on Salesforce's list
}

// hostRule is one explicitly allowed host: an exact host (any port), an exact host:port, or a
// *.suffix pattern (any name strictly below suffix, any port).
type hostRule struct {
	host   string // lower case; IPv6 without brackets
	port   string // "" = any port
	suffix string // ".example.test" for *.example.test
}

type allowList struct {
	rules []hostRule
}

// ParseAllowedHosts parses a comma-separated list of extra hosts for Options.AllowedHosts (an
// operator flag): each entry is a host ("localhost", "10.0.0.7", "::1"), a host:port
// ("127.0.0.1:8443", "[::1]:8443") or a *.suffix pattern ("*.example.test"). Blank entries are
// skipped. Entries come back normalised (lower case).
func ParseAllowedHosts(csv string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(csv, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		r, err := parseHostRule(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r.String())
	}
	return out, nil
}

func (r hostRule) String() string {
	switch {
	case r.suffix != "":
		return "*" + r.suffix
	case r.port != "":
		return net.JoinHostPort(r.host, r.port)
	default:
		return r.host
	}
}

func allowedHostError(entry, why string) error {
	return &Error{Reason: ReasonHostNotAllowed, Message: fmt.Sprintf("allowed-hosts entry %q is invalid: %s; "+
		"use host, host:port or *.domain (for example 127.0.0.1:8443 or *.example.test)", entry, why)}
}

func parseHostRule(entry string) (hostRule, error) {
	e := strings.ToLower(strings.TrimSpace(entry))
	if strings.Contains(e, "://") || strings.ContainsAny(e, "/@?#") {
		return hostRule{}, allowedHostError(entry, "give a host, not a URL")
	}
	if strings.HasPrefix(e, "*.") {
		suffix := e[1:]
		if why := checkHostName(suffix[1:]); why != "" {
			return hostRule{}, allowedHostError(entry, why)
		}
		if !strings.Contains(suffix[1:], ".") {
			return hostRule{}, allowedHostError(entry, "a wildcard must name at least two labels (not *.com)")
		}
		return hostRule{suffix: suffix}, nil
	}
	if strings.Contains(e, "*") {
		return hostRule{}, allowedHostError(entry, "'*' is only allowed as a leading *.")
	}
	host, port := e, ""
	if h, p, err := net.SplitHostPort(e); err == nil {
		host, port = h, p
		if why := checkHostPort("x:" + p); why != "" {
			return hostRule{}, allowedHostError(entry, why)
		}
	} else if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		host = e[1 : len(e)-1]
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return hostRule{host: ip.Unmap().String(), port: port}, nil
	}
	if why := checkHostName(host); why != "" {
		return hostRule{}, allowedHostError(entry, why)
	}
	return hostRule{host: host, port: port}, nil
}

func newAllowList(entries []string) (*allowList, error) {
	a := &allowList{}
	for _, e := range entries {
		r, err := parseHostRule(e)
		if err != nil {
			return nil, err
		}
		a.rules = append(a.rules, r)
	}
	return a, nil
}

// splitHostPort splits a URL host ("h", "h:p", "[v6]:p") into a lower-case host and a port
// (default 443).
func splitHostPort(hostport string) (host, port string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), "443"
	}
	host = strings.ToLower(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return host, port
}

// check reports whether hostport may be contacted; explicit is true when an operator-given rule
// (rather than Salesforce's own domains) allowed it, which also lifts the dial-time address check.
func (a *allowList) check(hostport string) (explicit bool, err error) {
	host, port := splitHostPort(hostport)
	if host == "" {
		return false, hostNotAllowed(hostport, "it is empty")
	}
	for _, r := range a.rules {
		switch {
		case r.suffix != "":
			if len(host) > len(r.suffix) && strings.HasSuffix(host, r.suffix) {
				return true, nil
			}
		case r.host == host && (r.port == "" || r.port == port):
			return true, nil
		}
	}
	for _, s := range defaultAllowedSuffixes {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			if port != "443" {
				return false, hostNotAllowed(hostport, "Salesforce serves HTTPS on port 443 only")
			}
			return false, nil
		}
	}
	return false, hostNotAllowed(hostport, "it is not a Salesforce domain")
}

// hostNotAllowedError is returned (inside *url.Error) by the transport and the dialer. Its text
// names a host and an address, never anything secret.
type hostNotAllowedError struct {
	host, why string
}

func (e *hostNotAllowedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: %s", e.host, e.why)
}

func hostNotAllowed(host, why string) *hostNotAllowedError {
	return &hostNotAllowedError{host: host, why: why}
}

// forbiddenAddr is what a Salesforce name must never resolve to: this machine, link-local (cloud
// metadata at 169.254.169.254), unspecified or multicast. Private ranges stay allowed on purpose:
// Salesforce Private Connect resolves Salesforce names to private VPC addresses.
func forbiddenAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid()
}

// dialContext is the transport's only way out. It re-checks the allow-list, and for a name allowed
// only because it is a Salesforce domain it resolves the name itself, refuses if any answer is a
// forbidden address, and dials the checked addresses (so a DNS answer cannot change in between).
func (c *Client) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	explicit, err := c.allow.check(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}
	if explicit {
		return d.DialContext(ctx, network, addr)
	}
	host, port := splitHostPort(addr)
	ips, err := c.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	for _, ip := range ips {
		if forbiddenAddr(ip) {
			return nil, hostNotAllowed(host, fmt.Sprintf("it resolves to %s, a loopback, link-local or unspecified address", ip.Unmap()))
		}
	}
	var firstErr error
	for _, ip := range ips {
		ip = ip.Unmap()
		if network == "tcp4" && !ip.Is4() || network == "tcp6" && !ip.Is6() {
			continue
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = &net.DNSError{Err: "no address of the right family", Name: host, IsNotFound: true}
	}
	return nil, firstErr
}

func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
