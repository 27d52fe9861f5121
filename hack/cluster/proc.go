package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pid file holds "PID STARTTIME": the start time (in clock ticks since boot, from
// /proc/PID/stat) tells a live component from a process that got its PID after a crash.

func (c *cluster) pidFile(name string) string { return c.path("run", name+".pid") }
func (c *cluster) logFile(name string) string { return c.path("logs", name+".log") }

// start runs a component in a session of its own (it outlives make and the terminal), its
// output in its log, and records its pid file.
func (c *cluster) start(comp component) error {
	exe, err := exec.LookPath(comp.exe)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("run"), 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(c.logFile(comp.name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(exe, comp.args...)
	cmd.Dir = c.dir
	cmd.Env = componentEnv()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", comp.name, err)
	}
	pid := cmd.Process.Pid
	started, ok := startTime(pid)
	if !ok {
		return fmt.Errorf("%s exited at once; its log: %s", comp.name, c.logFile(comp.name))
	}
	_ = cmd.Process.Release()
	return os.WriteFile(c.pidFile(comp.name), fmt.Appendf(nil, "%d %d\n", pid, started), 0o644)
}

// componentEnv is this process's environment without proxy settings (the API server would send
// webhook calls to a proxy), with the sbin directories (iptables, conntrack, modprobe).
func componentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "no_proxy", "all_proxy", "path", "kubeconfig":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// running is the PID of a component whose pid file names a live process, else 0.
func (c *cluster) running(name string) int {
	raw, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0
	}
	var pid int
	var started uint64
	if _, err := fmt.Sscanf(string(raw), "%d %d", &pid, &started); err != nil {
		return 0
	}
	if now, ok := startTime(pid); !ok || now != started {
		return 0
	}
	return pid
}

// startTime is field 22 of /proc/PID/stat; false for a process that is gone or a zombie.
func startTime(pid int) (uint64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses; count after the last ')'.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	n, err := strconv.ParseUint(fields[19], 10, 64)
	return n, err == nil
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the process to be gone.
func stopPID(pid int, grace time.Duration) {
	started, ok := startTime(pid)
	if !ok {
		return
	}
	gone := func() bool { now, ok := startTime(pid); return !ok || now != started }
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gone() {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gone() {
			return
		}
	}
}

func (c *cluster) stop(name string, grace time.Duration) {
	if pid := c.running(name); pid != 0 {
		logf("stopping %s (pid %d)", name, pid)
		stopPID(pid, grace)
	}
	_ = os.Remove(c.pidFile(name))
}

// ownBinaries are the executables of the processes the cluster starts, directly or through
// containerd (its shims).
var ownBinaries = []string{"containerd", "containerd-shim-runc-v2", "etcd", "kube-apiserver",
	"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// strays are the processes of this cluster that no pid file names any more (a run killed before
// it wrote them, or shims): one of ownBinaries whose command line holds the cluster's directory.
func (c *cluster) strays() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !slices.Contains(ownBinaries, filepath.Base(strings.TrimSuffix(exe, " (deleted)"))) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(raw), "\x00") {
			if arg == c.dir || strings.Contains(arg, c.dir+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
