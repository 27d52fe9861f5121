/*
Copyright 2026 The salesforce-operator Authors.

Licensed under the Apache License, Version 2.0.
*/

// Command salesforce-operator runs the manager that keeps SalesforceOrg, PipelineStage and
// SalesforceImplementation objects true.
package main

import (
	"flag"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sfops/salesforce-operator/internal/operator"
)

// gcPercent is the manager's GOGC unless the environment sets one.
const gcPercent = 40

func main() {
	var o operator.Options
	finish := operator.BindFlags(flag.CommandLine, &o)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")
	if os.Getenv("GOGC") == "" {
		// The heap is mostly the informers' cache, which lives as long as the process, and past
		// the first connections the manager allocates little (a periodic check, ~0.5 ms of CPU).
		// Go's default (100) lets the heap grow to twice what is live between collections; 40%
		// keeps 10,000 orgs under 100 MiB for more, but cheap, collections (make bench-scale:
		// 95 MiB against 102 at 50 and 123 at 100; 0.6 ms of CPU a check against 0.5).
		debug.SetGCPercent(gcPercent)
		setupLog.V(1).Info("garbage collector target set", "GOGC", gcPercent)
	}
	if limit, ok := containerMemoryLimit(); ok && os.Getenv("GOMEMLIMIT") == "" {
		// A complement to keeping memory small, not a substitute: near the container's limit the
		// garbage collector works harder instead of the kernel killing the pod (as automemlimit does).
		debug.SetMemoryLimit(limit / 10 * 9)
		setupLog.Info("soft memory limit set from the container's", "GOMEMLIMIT", limit/10*9)
	}
	if o.PprofAddr != "" && o.PprofAddr != "0" {
		// Sample contention too, so that the mutex and block profiles have something to show.
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(time.Millisecond))
	}
	if err := finish(); err != nil {
		setupLog.Error(err, "invalid flags")
		os.Exit(2)
	}
	mgr, err := operator.New(ctrl.GetConfigOrDie(), o)
	if err != nil {
		setupLog.Error(err, "unable to set up the operator")
		os.Exit(1)
	}
	setupLog.Info("starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "the manager stopped with an error")
		os.Exit(1)
	}
}

// containerMemoryLimit is the memory limit of the container the process runs in (cgroup v2, else
// v1), when it has one.
func containerMemoryLimit() (int64, bool) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2) or a huge number (v1) means no limit.
		return n, err == nil && n > 0 && n < 1<<50
	}
	return 0, false
}
