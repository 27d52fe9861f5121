// Command pause is the pod sandbox's process for the cluster of 'make e2e-cluster': it holds the
// pod's namespaces and does nothing else until SIGTERM or SIGINT. The cluster cannot pull
// registry.k8s.io/pause, so it builds this one. As PID 1 of a pod that shares its process
// namespace it also reaps orphaned children, as the upstream pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
