// Command fakesalesforce runs the fake Salesforce of internal/salesforce/sftest on its own, for the
// local demo: three demo orgs (a production org acme-prod, its sandbox acme-uat, and a
// developer-edition DevHub acme-devhub; see sftest.AddDemoOrgs) on one HTTPS address, with a CA
// the operator is told to trust.
//
// It prints the demo orgs' auth URLs: they are FAKE credentials, valid only against this process,
// and printing them is the point. It must never be pointed at, or stand in for, a real org, and it
// listens on loopback unless told otherwise.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on (HTTPS)")
	caFile := flag.String("ca-file", "", "write the CA certificate (PEM) the operator must trust to this file")
	outDir := flag.String("out-dir", "", "optional: write one <org>.authurl file per demo org into this directory")
	flag.Parse()

	if err := run(*addr, *caFile, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "fakesalesforce:", err)
		os.Exit(1)
	}
}

func run(addr, caFile, outDir string) error {
	s, err := sftest.NewStandaloneServer(addr)
	if err != nil {
		return err
	}
	defer s.Close()

	orgs := sftest.AddDemoOrgs(s)

	if caFile != "" {
		if err := os.WriteFile(caFile, s.CACertPEM(), 0o644); err != nil {
			return err
		}
	}
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return err
		}
		for _, o := range orgs {
			if err := os.WriteFile(filepath.Join(outDir, o.Name()+".authurl"), []byte(o.AuthURL()+"\n"), 0o600); err != nil {
				return err
			}
		}
	}

	fmt.Printf("fake Salesforce listening on %s\n", s.URL())
	fmt.Printf("allowed host for the operator: %s\n", s.Host())
	if caFile != "" {
		fmt.Printf("CA certificate: %s\n", caFile)
	}
	fmt.Println()
	fmt.Println("FAKE demo credentials (valid only against this local fake, regenerated on every start):")
	for _, o := range orgs {
		s := o.Spec()
		fmt.Printf("  %-12s %-16s org %s  user %s\n", o.Name(), s.Kind, o.OrgID(), o.Username())
		fmt.Printf("  %-12s %s\n", "", o.AuthURL())
	}
	if outDir != "" {
		fmt.Printf("\nauth URL files written to %s\n", outDir)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Println("fakesalesforce: stopping")
	return nil
}
