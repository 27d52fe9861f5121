//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// childAttrs keeps a manager out of the terminal's process group (Ctrl-C reaches the harness,
// which then stops it).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// apiServerPID needs Linux's /proc to find the kube-apiserver the harness started.
func apiServerPID(binary, port string) (int, error) {
	return 0, errors.New("freezing the API server needs Linux (/proc)")
}
