package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockCallbackPort waits for, and takes, this machine's lock on the login callback port 1717
// (PlatformCLI's only callback, which the demo's acme-dev accepts), so that tests which log in
// through it (the README tour, the browser test), in this process or another checkout's, take
// turns instead of failing on "cannot listen on 127.0.0.1:1717". The kernel releases the lock of
// a process that dies.
func LockCallbackPort() (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "salesforce-operator-callback-1717.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("the callback port's lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("the callback port's lock: %w", err)
	}
	return func() { _ = f.Close() }, nil
}
