// Command kubectl-salesforce is the kubectl plugin of the salesforce-operator: `kubectl
// salesforce login|reconnect|open|exec|test|import|tree`. Install it on PATH (go install
// ./cmd/kubectl-salesforce) and kubectl finds it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sfops/salesforce-operator/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Run(ctx, plugin.Env{}, os.Args[1:])
	stop()
	os.Exit(code)
}
