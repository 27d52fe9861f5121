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
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sfops/salesforce-operator/internal/operator"
)

func main() {
	var o operator.Options
	finish := operator.BindFlags(flag.CommandLine, &o)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")
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
