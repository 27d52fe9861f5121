package plugin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sfops/salesforce-operator/internal/salesforce"
)

// DefaultCallbackPort is the Salesforce CLI's: PlatformCLI's only callback is
// http://localhost:1717/OauthRedirect.
const DefaultCallbackPort = 1717

const callbackPage = `<!DOCTYPE html><html><head><title>kubectl salesforce</title></head><body>
<h1>%s</h1><p>%s</p></body></html>`

// webLogin runs the browser part of the web-server flow: a callback server on 127.0.0.1:port
// (loopback only, one code accepted, closed when done), the browser sent to the authorize URL,
// state checked, the code exchanged. The returned auth URL is never printed.
func webLogin(ctx context.Context, sf *salesforce.Client, env Env, w io.Writer, loginURL, clientID string, port int, noBrowser bool, timeout time.Duration) (salesforce.AuthURL, error) {
	redirect := "http://localhost:" + strconv.Itoa(port) + "/OauthRedirect"
	wl, err := sf.NewWebLogin(loginURL, clientID, redirect)
	if err != nil {
		return salesforce.AuthURL{}, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return salesforce.AuthURL{}, fmt.Errorf("cannot listen on 127.0.0.1:%d for the login callback (is another login running?): %w", port, err)
	}
	// The callback answers the browser only once the code is exchanged, so that its page says
	// what happened: "Logged in" only when the credential is in hand.
	type callback struct {
		code    string
		err     error
		outcome chan error // the exchange's result, for the page; nil for an err callback
	}
	done := make(chan callback, 1)
	deliver := func(c callback) bool {
		select {
		case done <- c:
			return true
		default:
			return false
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/OauthRedirect", func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(wl.State)) != 1:
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(rw, callbackPage, "Login refused", "This answer does not belong to the login kubectl salesforce started (the state does not match). Nothing was saved.")
			deliver(callback{err: errors.New("the login callback carried the wrong state: it does not answer the login this command started; nothing was saved")})
			return
		case q.Get("error") != "":
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(rw, callbackPage, "Login failed", "Salesforce refused the login; see the terminal.")
			deliver(callback{err: fmt.Errorf("Salesforce refused the login: %s (%s)", oneLine(q.Get("error_description")), oneLine(q.Get("error")))})
			return
		case q.Get("code") == "":
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(rw, callbackPage, "Login failed", "Salesforce sent no code.")
			deliver(callback{err: errors.New("the login callback carried no code")})
			return
		}
		c := callback{code: q.Get("code"), outcome: make(chan error, 1)}
		if !deliver(c) {
			rw.WriteHeader(http.StatusConflict)
			fmt.Fprintf(rw, callbackPage, "Login already answered", "kubectl salesforce already has an answer for this login; see the terminal.")
			return
		}
		var err error
		select {
		case err = <-c.outcome:
		case <-r.Context().Done():
			return
		}
		if err != nil {
			rw.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(rw, callbackPage, "Login not completed", html.EscapeString(
				"Salesforce accepted the login, but kubectl salesforce could not complete it ("+reasonOf(err)+"). Nothing was saved; see the terminal for why and what to do."))
			return
		}
		fmt.Fprintf(rw, callbackPage, "Logged in", "kubectl salesforce has the credential and is saving it; you can close this window and return to the terminal.")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // waits for the callback page to be written
	}()

	authorize := wl.AuthCodeURL()
	host := wl.LoginURL
	if noBrowser {
		fmt.Fprintf(w, "Open this URL in a browser on this machine to log in at %s (it carries no secret):\n\n  %s\n\n", host, authorize)
	} else if err := env.OpenBrowser(authorize); err != nil {
		fmt.Fprintf(w, "Could not open a browser (%v). Open this URL in a browser on this machine to log in at %s (it carries no secret):\n\n  %s\n\n", err, host, authorize)
	} else {
		fmt.Fprintf(w, "Log in at %s in the browser window that opened.\n", host)
	}
	fmt.Fprintf(w, "Waiting for the login on http://localhost:%d/OauthRedirect (on a remote machine: ssh -L %d:localhost:%d) ...\n", port, port, port)

	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c callback
	select {
	case c = <-done:
	case <-wait.Done():
		if ctx.Err() != nil {
			return salesforce.AuthURL{}, errors.New("login interrupted before the browser answered: nothing was saved")
		}
		return salesforce.AuthURL{}, fmt.Errorf("no login within %s (--login-timeout): nothing was saved; run the command again", timeout)
	}
	if c.err != nil {
		return salesforce.AuthURL{}, c.err
	}
	a, err := sf.ExchangeWebLoginCode(ctx, wl, c.code)
	c.outcome <- err
	return a, err
}

// reasonOf is err's Salesforce reason for the browser page, never its message.
func reasonOf(err error) string {
	var e *salesforce.Error
	if errors.As(err, &e) {
		return string(e.Reason)
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return "an error"
}

// oneLine bounds text from a callback for the terminal.
func oneLine(s string) string {
	b := []rune(s)
	if len(b) > 200 {
		b = append(b[:200], '…')
	}
	for i, r := range b {
		if r < ' ' {
			b[i] = ' '
		}
	}
	return string(b)
}

// openBrowser opens url with the browser that $BROWSER names (a command, its words separated by
// spaces; %s in a word is replaced by url, else url is its last argument), as git, gh and
// Python's webbrowser honour it, else with the system's opener. It never prints url.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	if words := strings.Fields(os.Getenv("BROWSER")); len(words) > 0 {
		args, substituted := make([]string, 0, len(words)), false
		for _, w := range words[1:] {
			if strings.Contains(w, "%s") {
				w, substituted = strings.ReplaceAll(w, "%s", url), true
			}
			args = append(args, w)
		}
		if !substituted {
			args = append(args, url)
		}
		cmd = exec.Command(words[0], args...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("the browser of $BROWSER (%s) could not be started", words[0])
		}
		go func() { _ = cmd.Wait() }()
		return nil
	}
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no display: $DISPLAY and $WAYLAND_DISPLAY are unset; set $BROWSER to your browser's command, or use --no-browser")
		}
		path, err := exec.LookPath("xdg-open")
		if err != nil {
			return err
		}
		cmd = exec.Command(path, url)
	}
	if err := cmd.Start(); err != nil {
		return errors.New("the browser could not be started")
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
