// Command kube-controller-manager is the upstream kube-controller-manager, built from
// k8s.io/kubernetes for the single-node cluster of 'make e2e-cluster' (hack/cluster).
package main

import (
	"os"

	_ "time/tzdata" // the upstream binary embeds tzdata for CronJob time zones

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
