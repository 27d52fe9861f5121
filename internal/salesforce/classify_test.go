package salesforce

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRESTErrorClassification(t *testing.T) {
	jsonHdr := http.Header{"Content-Type": {"application/json;charset=UTF-8"}}
	tests := []struct {
		name      string
		status    int
		header    http.Header
		body      string
		reason    Reason // "" = unauthorized
		retryable bool
		code      string
	}{
		{"session expired", 401, jsonHdr, `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`, "", false, ""},
		{"limit as a single object", 403, jsonHdr, `{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}`, ReasonRateLimited, true, "REQUEST_LIMIT_EXCEEDED"},
		{"API disabled", 403, jsonHdr, `[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]`, ReasonAPIDisabled, false, "API_DISABLED_FOR_ORG"},
		{"REST API not enabled", 403, jsonHdr, `[{"message":"REST API is not enabled","errorCode":"RESTAPINOTENABLED"}]`, ReasonAPIDisabled, false, "RESTAPINOTENABLED"},
		{"user without API", 403, jsonHdr, `[{"message":"API is disabled for this User","errorCode":"API_CURRENTLY_DISABLED"}]`, ReasonAPIDisabled, false, "API_CURRENTLY_DISABLED"},
		{"server unavailable", 503, jsonHdr, `[{"message":"Server unavailable","errorCode":"SERVER_UNAVAILABLE"}]`, ReasonServerError, true, "SERVER_UNAVAILABLE"},
		{"deleted org page", 200, http.Header{"Content-Type": {"text/html"}}, `<html><body>Data Not Available</body></html>`, ReasonOrgGone, false, "DATA_NOT_AVAILABLE"},
		{"HTML without a content type", 500, http.Header{}, "\n<!DOCTYPE html><html>oops</html>", ReasonServerError, true, ""},
		{"redirect", 302, http.Header{"Location": {"https://evil.example/x?sid=abc"}}, "", ReasonServerError, false, ""},
		{"unparseable 5xx", 502, http.Header{}, `bad gateway`, ReasonServerError, true, ""},
		{"other 4xx", 400, jsonHdr, `[{"message":"No such column","errorCode":"INVALID_FIELD"}]`, ReasonServerError, false, "INVALID_FIELD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := restError(tt.status, tt.header, []byte(tt.body))
			if tt.reason == "" {
				var ua *unauthorizedError
				if !errors.As(err, &ua) {
					t.Fatalf("want unauthorized, got %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Retryable != tt.retryable || e.Code != tt.code {
				t.Fatalf("got %#v", err)
			}
			if strings.Contains(e.Message, "sid=abc") || strings.Contains(e.Message, "<html") {
				t.Fatalf("message quotes the answer: %q", e.Message)
			}
		})
	}
	if restError(200, nil, nil) != nil {
		t.Fatal("2xx is not an error")
	}
}

func TestScrub(t *testing.T) {
	err := scrub(&Error{Reason: ReasonServerError, Message: "echo: abcdef123456 and abcdef123456"}, "abcdef123456", "", "abc")
	if strings.Contains(err.Error(), "abcdef123456") {
		t.Fatalf("not scrubbed: %v", err)
	}
	if got := serverText("a\n\tb\x00  c" + strings.Repeat("x", 1000)); strings.ContainsAny(got, "\n\t\x00") || len(got) > maxMessageText+10 {
		t.Fatalf("serverText: %q", got)
	}
	if ReasonOf(nil) != "" || IsRetryable(nil) || ReasonOf(errors.New("x")) != ReasonServerError || !IsRetryable(errors.New("x")) {
		t.Fatal("ReasonOf/IsRetryable of nil or foreign errors")
	}
}

func TestFactDecoding(t *testing.T) {
	if used, max, ok := parseLimitInfo("per-app-api-usage=17/250(appName=x), api-usage=18/15000"); !ok || used != 18 || max != 15000 {
		t.Fatalf("parseLimitInfo: %d/%d %v", used, max, ok)
	}
	if _, _, ok := parseLimitInfo("per-app-api-usage=17/250(appName=x)"); ok {
		t.Fatal("per-app usage taken for the org's")
	}
	s := &session{cred: AuthURL{}, orgID: "00D000000000001AAA", userID: "005000000000001AAA", instanceURL: "https://x.my.salesforce.com"}
	body := `{"compositeResponse":[
	 {"body":{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Organization"},"Id":"00D000000000002AAA","Name":"Acme","InstanceName":"CS8","IsSandbox":true,"TrialExpirationDate":"2030-01-02T00:00:00.000+0000","NamespacePrefix":null,"OrganizationType":"Developer Edition"}]},"httpHeaders":{},"httpStatusCode":200,"referenceId":"org"},
	 {"body":[{"message":"sObject type 'ScratchOrgInfo' is not supported.","errorCode":"INVALID_TYPE"}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"devhub"},
	 {"body":{"DailyApiRequests":{"Max":"15000","Remaining":"14990"}},"httpHeaders":{},"httpStatusCode":200,"referenceId":"limits"},
	 {"body":{"attributes":{"type":"User"},"Username":"a@b.c"},"httpHeaders":{},"httpStatusCode":200,"referenceId":"user"}]}`
	f, err := s.facts(http.Header{}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	if f.OrgID != "00D000000000002AAA" || !f.IsScratch || f.IsSandbox || f.IsDevHub || f.Username != "a@b.c" ||
		f.APIRequestsMax != 15000 || f.APIRequestsRemaining != 14990 || f.TrialExpirationDate == nil || !f.TrialExpirationDate.Equal(want) {
		t.Fatalf("facts %+v", f)
	}
	// Limits missing: fall back to the Sforce-Limit-Info header.
	noLimits := strings.Replace(body, `"referenceId":"limits"`, `"referenceId":"ignored"`, 1)
	f, err = s.facts(http.Header{"Sforce-Limit-Info": {"api-usage=18/15000"}}, []byte(noLimits))
	if err != nil || f.APIRequestsMax != 15000 || f.APIRequestsRemaining != 14982 {
		t.Fatalf("header fallback: %+v %v", f, err)
	}
	// The Organization query failing fails the check with Salesforce's reason.
	disabled := `{"compositeResponse":[{"body":[{"message":"API is disabled for this User","errorCode":"API_CURRENTLY_DISABLED"}],"httpStatusCode":403,"referenceId":"org"}]}`
	if _, err := s.facts(http.Header{}, []byte(disabled)); ReasonOf(err) != ReasonAPIDisabled {
		t.Fatalf("org subrequest failure: %v", err)
	}
	if _, err := s.facts(http.Header{}, []byte(`{"compositeResponse":[]}`)); ReasonOf(err) != ReasonServerError {
		t.Fatalf("missing org answer: %v", err)
	}
}
