package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The queries of a check. The Organization query is the one the Salesforce CLI runs; the
// ScratchOrgInfo query is how the CLI tells a DevHub (a 400 INVALID_TYPE answer: not a DevHub).
const (
	organizationQuery = "SELECT Id, Name, InstanceName, IsSandbox, TrialExpirationDate, NamespacePrefix, OrganizationType FROM Organization"
	devHubQuery       = "SELECT Id FROM ScratchOrgInfo LIMIT 1"
)

type compositeSubrequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	ReferenceID string `json:"referenceId"`
}

type compositeRequest struct {
	AllOrNone        bool                  `json:"allOrNone"`
	CompositeRequest []compositeSubrequest `json:"compositeRequest"`
}

type compositeAnswer struct {
	CompositeResponse []struct {
		Body           json.RawMessage   `json:"body"`
		HTTPHeaders    map[string]string `json:"httpHeaders"`
		HTTPStatusCode int               `json:"httpStatusCode"`
		ReferenceID    string            `json:"referenceId"`
	} `json:"compositeResponse"`
}

type organizationRecord struct {
	ID                  string  `json:"Id"`
	Name                string  `json:"Name"`
	InstanceName        string  `json:"InstanceName"`
	IsSandbox           bool    `json:"IsSandbox"`
	TrialExpirationDate *string `json:"TrialExpirationDate"`
	NamespacePrefix     *string `json:"NamespacePrefix"`
	OrganizationType    string  `json:"OrganizationType"`
}

// flexInt decodes a number sent either as a JSON number or as a string (very old API versions
// sent limits as strings).
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*f = flexInt(n)
	return nil
}

// readFacts is the one REST request of a check: a composite call (allOrNone=false) batching the
// Organization query, the DevHub probe, the limits and the user's username.
func (c *Client) readFacts(ctx context.Context, s *session) (OrgFacts, error) {
	base := "/services/data/v" + c.apiVersion
	subs := []compositeSubrequest{
		{Method: "GET", URL: base + "/query?q=" + url.QueryEscape(organizationQuery), ReferenceID: "org"},
		{Method: "GET", URL: base + "/query?q=" + url.QueryEscape(devHubQuery), ReferenceID: "devhub"},
		{Method: "GET", URL: base + "/limits", ReferenceID: "limits"},
	}
	if salesforceID.MatchString(s.userID) {
		subs = append(subs, compositeSubrequest{Method: "GET", URL: base + "/sobjects/User/" + s.userID + "?fields=Username", ReferenceID: "user"})
	}
	body, err := json.Marshal(compositeRequest{AllOrNone: false, CompositeRequest: subs})
	if err != nil {
		return OrgFacts{}, &Error{Reason: ReasonServerError, Message: "the composite request could not be built"}
	}
	cctx, p, cancel := c.call(ctx, "composite")
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, s.instanceURL+base+"/composite", bytes.NewReader(body))
	if err != nil {
		return OrgFacts{}, &Error{Reason: ReasonServerError, Message: "the composite request could not be built"}
	}
	req.Header.Set("Authorization", "Bearer "+s.access)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	host := req.URL.Host
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.transportError(ctx, host, err)
		c.observeCall(p, err)
		return OrgFacts{}, err
	}
	_ = resp.Body.Close()
	if err := restError(p.status, p.header, p.body); err != nil {
		c.observeCall(p, err)
		return OrgFacts{}, err
	}
	c.observeCall(p, nil)
	return s.facts(p.header, p.body)
}

func (s *session) facts(h http.Header, body []byte) (OrgFacts, error) {
	var ans compositeAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return OrgFacts{}, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's composite answer could not be read"}
	}
	f := OrgFacts{OrgID: s.orgID, UserID: s.userID, InstanceURL: s.instanceURL}
	if j, ok := s.cred.(JWTBearer); ok {
		f.Username = j.Username
	}
	gotOrg := false
	for _, sub := range ans.CompositeResponse {
		ok := sub.HTTPStatusCode >= 200 && sub.HTTPStatusCode < 300
		switch sub.ReferenceID {
		case "org":
			if !ok {
				return OrgFacts{}, restError(sub.HTTPStatusCode, nil, sub.Body)
			}
			var q struct {
				Records []organizationRecord `json:"records"`
			}
			if json.Unmarshal(sub.Body, &q) != nil || len(q.Records) == 0 {
				return OrgFacts{}, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's Organization query answer could not be read"}
			}
			r := q.Records[0]
			gotOrg = true
			if salesforceID.MatchString(r.ID) {
				f.OrgID = r.ID
			}
			f.Name, f.InstanceName, f.Edition = r.Name, r.InstanceName, r.OrganizationType
			if r.NamespacePrefix != nil {
				f.NamespacePrefix = *r.NamespacePrefix
			}
			f.TrialExpirationDate = parseSalesforceTime(r.TrialExpirationDate)
			trial := r.TrialExpirationDate != nil && *r.TrialExpirationDate != ""
			f.IsScratch = r.IsSandbox && trial
			f.IsSandbox = r.IsSandbox && !trial
		case "devhub":
			f.IsDevHub = ok
		case "limits":
			var l struct {
				DailyAPIRequests *struct {
					Max       flexInt `json:"Max"`
					Remaining flexInt `json:"Remaining"`
				} `json:"DailyApiRequests"`
			}
			if ok && json.Unmarshal(sub.Body, &l) == nil && l.DailyAPIRequests != nil {
				f.APIRequestsMax, f.APIRequestsRemaining = int64(l.DailyAPIRequests.Max), int64(l.DailyAPIRequests.Remaining)
			}
		case "user":
			var u struct {
				Username string `json:"Username"`
			}
			if ok && json.Unmarshal(sub.Body, &u) == nil && u.Username != "" {
				f.Username = u.Username
			}
		}
	}
	if !gotOrg {
		return OrgFacts{}, &Error{Reason: ReasonServerError, Retryable: true, Message: "Salesforce's composite answer lacks the Organization query"}
	}
	if f.APIRequestsMax == 0 {
		if used, max, ok := parseLimitInfo(h.Get("Sforce-Limit-Info")); ok {
			f.APIRequestsMax, f.APIRequestsRemaining = max, max-used
		}
	}
	return f, nil
}

var limitInfo = regexp.MustCompile(`(?:^|[\s,;])api-usage=(\d+)/(\d+)`)

// parseLimitInfo reads "api-usage=18/15000" from a Sforce-Limit-Info header.
func parseLimitInfo(v string) (used, max int64, ok bool) {
	m := limitInfo.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, false
	}
	used, err1 := strconv.ParseInt(m[1], 10, 64)
	max, err2 := strconv.ParseInt(m[2], 10, 64)
	return used, max, err1 == nil && err2 == nil
}

// parseSalesforceTime reads a Salesforce date or datetime ("2024-07-01T00:00:00.000+0000").
func parseSalesforceTime(s *string) *time.Time {
	if s == nil || *s == "" {
		return nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05.000Z0700", time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, *s); err == nil {
			t = t.UTC()
			return &t
		}
	}
	return nil
}
