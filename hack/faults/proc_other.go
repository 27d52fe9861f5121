//go:build !linux

package main

import "syscall"

// childAttrs keeps a manager out of the terminal's process group (Ctrl-C reaches the harness,
// which then stops it).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
