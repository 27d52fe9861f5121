package plugin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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
	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	deliver := func(r result) {
		select {
		case done <- r:
		default:
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
			fmt.Fprintf(rw, callbackPage, "Login refused", "This answer does not belong to the login kubectl salesforce started (the state does not match).")
			deliver(result{err: errors.New("the login callback carried the wrong state: it does not answer the login this command started; nothing was saved")})
		case q.Get("error") != "":
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(rw, callbackPage, "Login failed", "Salesforce refused the login; see the terminal.")
			deliver(result{err: fmt.Errorf("Salesforce refused the login: %s (%s)", oneLine(q.Get("error_description")), oneLine(q.Get("error")))})
		case q.Get("code") == "":
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(rw, callbackPage, "Login failed", "Salesforce sent no code.")
			deliver(result{err: errors.New("the login callback carried no code")})
		default:
			fmt.Fprintf(rw, callbackPage, "Logged in", "kubectl salesforce has the login; you can close this window.")
			deliver(result{code: q.Get("code")})
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	authorize := wl.AuthCodeURL()
	host := wl.LoginURL
	if noBrowser {
		fmt.Fprintf(w, "Open this URL in a browser on this machine to log in at %s (it carries no secret):\n\n  %s\n\n", host, authorize)
	} else if err := env.OpenBrowser(authorize); err != nil {
		fmt.Fprintf(w, "Could not open a browser. Open this URL in a browser on this machine to log in at %s (it carries no secret):\n\n  %s\n\n", host, authorize)
	} else {
		fmt.Fprintf(w, "Log in at %s in the browser window that opened.\n", host)
	}
	fmt.Fprintf(w, "Waiting for the login on http://localhost:%d/OauthRedirect (on a remote machine: ssh -L %d:localhost:%d) ...\n", port, port, port)

	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res result
	select {
	case res = <-done:
	case <-wait.Done():
		return salesforce.AuthURL{}, fmt.Errorf("no login within %s", timeout)
	}
	if res.err != nil {
		return salesforce.AuthURL{}, res.err
	}
	return sf.ExchangeWebLoginCode(ctx, wl, res.code)
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

// openBrowser opens url with the system's opener, never printing it.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no display")
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
