//go:build !windows

package plugin

import (
	"os"
	"syscall"
)

// forwardedSignals are the signals exec passes on to its command.
var forwardedSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
