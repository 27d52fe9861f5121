// Command probe is the workload of 'make e2e-cluster-check', the cluster's smoke test: `probe
// serve ADDR` answers every HTTP request with "probe POD-NAME"; `probe get URL...` fetches each
// URL and fails unless all answer 200. An https URL is verified with the pod's service-account
// CA and carries its token, as an in-cluster client would.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe serve ADDR | probe get URL...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "get":
		err = get(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	name, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "probe %s\n", name)
	})
	fmt.Printf("serving on %s\n", addr)
	return http.ListenAndServe(addr, nil)
}

func get(urls []string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	if ca, err := os.ReadFile(serviceAccount + "ca.crt"); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	token, _ := os.ReadFile(serviceAccount + "token")
	for _, u := range urls {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if strings.HasPrefix(u, "https://") && len(token) > 0 {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if err != nil {
			return err
		}
		fmt.Printf("GET %s: %s %s\n", u, resp.Status, strings.Join(strings.Fields(string(body)), " "))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	return nil
}
