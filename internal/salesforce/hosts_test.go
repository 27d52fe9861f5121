package salesforce

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseAllowedHosts(t *testing.T) {
	got, err := ParseAllowedHosts(" 127.0.0.1:8443, LocalHost ,*.Example.test,, [::1]:9000, ::1 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:8443", "localhost", "*.example.test", "[::1]:9000", "::1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"https://x.example.test", "*", "*.com", "a_b.example.test", "host:0", "host:99999",
		"*.", "x*.example.test", "user@host", "host/path"} {
		if _, err := ParseAllowedHosts(bad); err == nil {
			t.Errorf("ParseAllowedHosts(%q) accepted", bad)
		} else if ReasonOf(err) != ReasonHostNotAllowed {
			t.Errorf("ParseAllowedHosts(%q): reason %s", bad, ReasonOf(err))
		}
	}
	if _, err := NewClient(Options{AllowedHosts: []string{"https://bad"}}); err == nil {
		t.Error("NewClient accepted an invalid allowed host")
	}
	if _, err := NewClient(Options{APIVersion: "v65"}); err == nil {
		t.Error("NewClient accepted an invalid API version")
	}
}

func TestAllowList(t *testing.T) {
	a, err := newAllowList([]string{"127.0.0.1:8443", "localhost", "*.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host              string
		allowed, explicit bool
	}{
		{"acme.my.salesforce.com", true, false},
		{"acme.my.salesforce.com:443", true, false},
		{"ACME.My.Salesforce.COM", true, false},
		{"acme--uat.sandbox.my.salesforce.com", true, false},
		{"login.salesforce.com", true, false},
		{"test.salesforce.com", true, false},
		{"acme.lightning.force.com", true, false},
		{"acme.my.salesforce.mil", true, false},
		{"acme.my.sfcrmproducts.cn", true, false},
		{"acme.my.site.com", true, false},
		{"acme.my.salesforce.com:8443", false, false},
		{"salesforce.com", false, false},
		{"evilsalesforce.com", false, false},
		{"salesforce.com.evil.example", false, false},
		{"evil.example", false, false},
		{"127.0.0.1", false, false},
		{"127.0.0.1:8443", true, true},
		{"127.0.0.1:8444", false, false},
		{"localhost:1234", true, true},
		{"LOCALHOST", true, true},
		{"a.example.test:99", true, true},
		{"example.test", false, false},
		{"169.254.169.254", false, false},
		{"[::1]:8443", false, false},
	}
	for _, tt := range tests {
		explicit, err := a.check(tt.host)
		if (err == nil) != tt.allowed || explicit != tt.explicit {
			t.Errorf("check(%q) = explicit %v, err %v; want allowed %v explicit %v", tt.host, explicit, err, tt.allowed, tt.explicit)
		}
	}
}

func TestForbiddenAddr(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::", "::ffff:127.0.0.1", "224.0.0.1", "ff02::1"} {
		if !forbiddenAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s is allowed", s)
		}
	}
	// Private addresses stay allowed: Salesforce Private Connect resolves to them.
	for _, s := range []string{"10.0.0.1", "192.168.1.1", "13.108.0.1", "2001:db8::1"} {
		if forbiddenAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s is forbidden", s)
		}
	}
}

// TestDialRefusesSalesforceNameResolvingInside points a Salesforce name at internal addresses
// through the resolver hook: the client must refuse before dialling anything.
func TestDialRefusesSalesforceNameResolvingInside(t *testing.T) {
	for _, answer := range [][]string{{"127.0.0.1"}, {"169.254.169.254"}, {"0.0.0.0"}, {"::1"}, {"::ffff:127.0.0.1"}, {"13.108.0.1", "127.0.0.1"}} {
		t.Run(strings.Join(answer, ","), func(t *testing.T) {
			c, err := NewClient(Options{})
			if err != nil {
				t.Fatal(err)
			}
			var lookups atomic.Int32
			c.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
				lookups.Add(1)
				if host != "evil.my.salesforce.com" {
					t.Errorf("looked up %q", host)
				}
				var out []netip.Addr
				for _, a := range answer {
					out = append(out, netip.MustParseAddr(a))
				}
				return out, nil
			}
			_, err = c.Check(context.Background(), AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: "evil.my.salesforce.com"})
			if ReasonOf(err) != ReasonHostNotAllowed || IsRetryable(err) {
				t.Fatalf("want HostNotAllowed, got %v", err)
			}
			if !strings.Contains(err.Error(), "loopback, link-local or unspecified") || strings.Contains(err.Error(), testToken) {
				t.Errorf("message: %v", err)
			}
			if lookups.Load() == 0 {
				t.Error("the dialer never resolved the name")
			}
		})
	}
}

func TestDialDNSFailureIsUnreachable(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	_, err = c.Check(context.Background(), AuthURL{ClientID: "PlatformCLI", RefreshToken: testToken, Host: "gone.my.salesforce.com"})
	if ReasonOf(err) != ReasonUnreachable || !IsRetryable(err) || !strings.Contains(err.Error(), "cannot resolve gone.my.salesforce.com") {
		t.Fatalf("want a retryable Unreachable naming the host, got %v", err)
	}
}
