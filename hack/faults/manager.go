package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// manager is one run of the operator's binary as its own process, its output in a log file.
type manager struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	// exitedAt is when the process exited; read it only after done is closed.
	exitedAt time.Time
}

// managers starts manager processes and remembers the live ones, so that every one is killed
// when the harness ends, whatever the reason.
type managers struct {
	binary string
	args   []string
	env    []string
	logDir string

	mu   sync.Mutex
	runs int
	live map[*manager]bool
}

// start starts a manager with the common flags and then extra.
func (ms *managers) start(extra ...string) (*manager, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.runs++
	logPath := filepath.Join(ms.logDir, fmt.Sprintf("manager-%04d.log", ms.runs))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(ms.binary, append(slices.Clip(ms.args), extra...)...)
	cmd.Env = ms.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	m := &manager{cmd: cmd, log: logPath, done: make(chan struct{})}
	if ms.live == nil {
		ms.live = map[*manager]bool{}
	}
	ms.live[m] = true
	go func() {
		_ = cmd.Wait()
		m.exitedAt = time.Now()
		close(m.done)
		ms.mu.Lock()
		delete(ms.live, m)
		ms.mu.Unlock()
	}()
	return m, nil
}

// killAll kills every manager still running and waits for each to exit.
func (ms *managers) killAll() {
	ms.mu.Lock()
	var all []*manager
	for m := range ms.live {
		all = append(all, m)
	}
	ms.mu.Unlock()
	for _, m := range all {
		m.stop(syscall.SIGKILL, 0)
	}
}

func (m *manager) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the process to exit, then kills it. It says whether
// the process exited within grace.
func (m *manager) stop(sig syscall.Signal, grace time.Duration) bool {
	_ = m.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-m.done:
		return true
	case <-t.C:
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	return false
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
