package main

import "syscall"

// childAttrs keeps a manager out of the terminal's process group (Ctrl-C reaches the harness,
// which then stops it) and kills it if the harness itself dies without cleaning up.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
