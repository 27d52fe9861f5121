package demo

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// LogIn does, without a browser, what a person does on the fake Salesforce's login page that
// authorize (the URL `kubectl salesforce login` opens) shows: submit the form as user with
// password, allow the app when asked (the first time), and follow the redirect to the plugin's
// callback. hc must trust the fake and must
// not follow redirects. It returns the callback's page: the plugin's answer.
func LogIn(ctx context.Context, hc *http.Client, authorize, user, password string) (string, error) {
	// send makes one request (a GET of u, or a POST of form to u) and reads its answer.
	send := func(u string, form url.Values) (*http.Response, string, error) {
		method, body := http.MethodGet, io.Reader(nil)
		if form != nil {
			method, body = http.MethodPost, strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, string(b), nil
	}
	get := func(u string) (*http.Response, string, error) { return send(u, nil) }
	au, err := url.Parse(authorize)
	if err != nil || au.Path != "/services/oauth2/authorize" {
		return "", fmt.Errorf("not an authorize URL")
	}
	resp, page, err := get(authorize)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the login page answered HTTP %d", resp.StatusCode)
	}
	// post submits the form on page (its hidden fields) with fields.
	post := func(page string, fields url.Values) (*http.Response, string, error) {
		for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
			fields.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
		}
		return send(au.Scheme+"://"+au.Host+au.Path, fields)
	}
	resp, page, err = post(page, url.Values{"username": {user}, "pw": {password}})
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusOK && strings.Contains(page, `id="oaapprove"`) {
		// The first login to an app asks "Allow Access?": allow it, as the person would.
		if resp, _, err = post(page, url.Values{"approve": {"Allow"}}); err != nil {
			return "", err
		}
	}
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("the login form answered HTTP %d, not a redirect to the callback (a wrong user or password?)", resp.StatusCode)
	}
	resp, page, err = get(resp.Header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("the plugin's callback: %w", err)
	}
	return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, page), nil
}
