// Command probe is the workload of 'make e2e-cluster-check', the cluster's smoke test: `probe
// serve ADDR` answers every HTTP request with "probe POD-NAME"; `probe get URL...` fetches each
// URL and fails unless all answer 200. An https URL is verified with the pod's service-account
// CA and carries its token, as an in-cluster client would.
//
// make e2e also imports it as the pipeline of its hand-out test (the node has no curl image):
// `probe get -ca FILE -bearer-env SF_ACCESS_TOKEN -env-names URL` verifies with FILE's CA, sends
// that variable's value as the bearer token instead, and first prints the names of its
// environment variables. It never prints a value of the environment or a token.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe serve ADDR | probe get [-ca FILE] [-bearer-env NAME] [-env-names] URL...")
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

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	caFile := fs.String("ca", serviceAccount+"ca.crt", "The CA bundle that verifies https URLs (when it exists).")
	bearerEnv := fs.String("bearer-env", "", "Send this environment variable's value as the bearer token (default: the pod's service-account token).")
	envNames := fs.Bool("env-names", false, "First print the names (never the values) of the environment variables.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls := fs.Args()
	if *envNames {
		var names []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			names = append(names, name)
		}
		slices.Sort(names)
		fmt.Printf("env: %s\n", strings.Join(names, " "))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if ca, err := os.ReadFile(*caFile); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	token, _ := os.ReadFile(serviceAccount + "token")
	if *bearerEnv != "" {
		if token = []byte(os.Getenv(*bearerEnv)); len(token) == 0 {
			return fmt.Errorf("environment variable %s is empty", *bearerEnv)
		}
	}
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
