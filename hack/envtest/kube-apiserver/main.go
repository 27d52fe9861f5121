// Command kube-apiserver is the upstream kube-apiserver, built from k8s.io/kubernetes so that
// envtest and the embedded control plane of 'make run' have a binary on machines that cannot
// download one.
package main

import (
	"os"

	_ "time/tzdata" // the upstream binary embeds tzdata for CronJob time zones

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
