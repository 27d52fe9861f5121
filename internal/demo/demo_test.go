package demo

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeShowsTheBanner: the README's "Start here" shows make run's banner as it prints it
// (with the port and password of one run).
func TestReadmeShowsTheBanner(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "```console\nThe demo is up")
	if start < 0 {
		t.Fatal("the README shows no banner of make run")
	}
	block := readme[start+len("```console\n"):]
	block = block[:strings.Index(block, "```")]
	want := Banner("$PWD/bin/localdev/kubeconfig", "https://127.0.0.1:43283", "3qhIB9VcE7OeMtO3")
	if block != want {
		t.Errorf("the README shows\n%s\nbut make run prints\n%s", block, want)
	}
}
