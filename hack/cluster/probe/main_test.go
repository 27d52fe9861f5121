package main

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The e2e pipeline Job's use: the bearer token comes from the named variable, the CA from the
// file, and what is printed names the environment's variables but holds no value of them.
func TestGetSendsTheBearerFromTheEnvironmentAndPrintsNoValue(t *testing.T) {
	const token = "00Dtest!secret-access-token"
	var got string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemCA, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PROBE_TEST_TOKEN", token)

	out := captureStdout(t, func() error {
		return get([]string{"-ca", ca, "-bearer-env", "PROBE_TEST_TOKEN", "-env-names", srv.URL + "/services/data/v65.0"})
	})
	if got != "Bearer "+token {
		t.Error("the request did not carry the variable's value as its bearer token")
	}
	if strings.Contains(out, token) {
		t.Error("the output holds the token")
	}
	if !strings.Contains(out, " PROBE_TEST_TOKEN ") && !strings.Contains(out, " PROBE_TEST_TOKEN\n") {
		t.Errorf("the env line does not name PROBE_TEST_TOKEN:\n%s", out)
	}
	if !strings.Contains(out, ": 200 OK ") {
		t.Errorf("no 200 OK line:\n%s", out)
	}

	if err := get([]string{"-bearer-env", "PROBE_TEST_UNSET", srv.URL}); err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("an empty variable: got %v, want an error naming it", err)
	}
}

func captureStdout(t *testing.T, f func() error) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	ferr := f()
	os.Stdout = stdout
	w.Close()
	out := <-done
	if ferr != nil {
		t.Fatalf("get: %v\n%s", ferr, out)
	}
	return out
}
