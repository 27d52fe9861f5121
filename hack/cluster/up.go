package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// withLock runs f holding an exclusive lock on the cluster's directory, so that two up or down
// calls never interleave.
func (c *cluster) withLock(f func() error) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(c.path(".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("waiting for another up or down on %s", c.dir)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
	}
	return f()
}

func (c *cluster) up() error {
	begin := time.Now()
	if err := c.checkMarker(); err != nil {
		return err
	}
	if c.allRunning() {
		// Never restart a cluster whose processes all run: a suite may be using it.
		if err := c.waitFor("the running cluster to be healthy", 60*time.Second, "kube-apiserver", c.healthy); err != nil {
			return fmt.Errorf("it runs (%s) but is not healthy: %w; see its logs in %s, 'make e2e-cluster-down' stops it", c.dir, err, c.path("logs"))
		}
		logf("already running (%s); 'make e2e-cluster-down' stops it", c.dir)
		c.printAccess()
		return nil
	}
	if c.leftovers() {
		why := "none of its processes runs"
		for _, name := range stopOrder {
			if c.running(name) != 0 {
				why = c.healthy().Error()
				break
			}
		}
		logf("a previous run is still partly there (%s): cleaning it up first", why)
		if err := c.cleanup(); err != nil {
			return fmt.Errorf("cleaning up the previous run: %w", err)
		}
	}
	if err := ensurePackages(c.path("logs")); err != nil {
		return err
	}
	if err := c.resolveHost(); err != nil {
		return err
	}
	if err := checkPorts(); err != nil {
		return err
	}
	if _, err := os.Stat(c.pauseTar); err != nil {
		return fmt.Errorf("the pause image: %w (make e2e-cluster builds it)", err)
	}
	for _, comp := range c.components() {
		if _, err := exec.LookPath(comp.exe); err != nil {
			return fmt.Errorf("%s: %w (make e2e-cluster builds the Kubernetes binaries)", comp.name, err)
		}
	}
	if err := os.WriteFile(markerFile, []byte(c.dir+"\n"), 0o644); err != nil {
		return err
	}
	if err := c.prepareHost(); err != nil {
		return c.failed("host", err)
	}
	if _, err := writePKI(c.path("pki"), c.nodeIP); err != nil {
		return c.failed("pki", err)
	}
	if err := c.writeConfigs(); err != nil {
		return c.failed("configuration", err)
	}
	for _, dir := range []string{"pod-logs", "cni/ipam", "kubelet"} {
		if err := os.MkdirAll(c.path(dir), 0o755); err != nil {
			return c.failed("configuration", err)
		}
	}
	logf("node %s at %s; starting the components (logs in %s)", nodeName, c.nodeIP, c.path("logs"))
	var kubeletStart time.Time
	for _, comp := range c.components() {
		t := time.Now()
		if comp.name == "kubelet" {
			kubeletStart = t
		}
		if err := c.start(comp); err != nil {
			return c.failed(comp.name, err)
		}
		if err := c.waitReady(comp.name); err != nil {
			return c.failed(comp.name, err)
		}
		logf("%-23s ready in %s", comp.name, since(t))
		if comp.name == "containerd" {
			if _, err := c.importImages(c.pauseTar); err != nil {
				return c.failed(comp.name, err)
			}
		}
	}
	if err := c.waitFor("node Ready", 90*time.Second, "kubelet", c.nodeReady); err != nil {
		return c.failed("kubelet", err)
	}
	logf("node %s Ready %s after the kubelet started (%s after up began)", nodeName, since(kubeletStart), since(begin))
	if err := c.waitFor("the default ServiceAccount", 60*time.Second, "kube-controller-manager", func() error {
		return c.apiGet("/api/v1/namespaces/default/serviceaccounts/default", nil)
	}); err != nil {
		return c.failed("kube-controller-manager", err)
	}
	if err := c.waitFor("https://"+kubernetesIP+" (kube-proxy's rules)", 60*time.Second, "kube-proxy", func() error {
		return c.httpsGet("https://"+kubernetesIP+"/readyz", nil)
	}); err != nil {
		return c.failed("kube-proxy", err)
	}
	logf("up in %s", since(begin))
	c.printAccess()
	return nil
}

// printAccess prints, on stdout, the line that points kubectl at the cluster.
func (c *cluster) printAccess() {
	logf("kubectl %s/kubectl (v1.36.3); images: make e2e-cluster-load IMAGE_TAR=... or %s images import", c.bin, c.path("ctr"))
	fmt.Printf("export KUBECONFIG=%s\n", c.kubeconfig())
}

// failed reports a component that did not start, with the end of its log, and stops the rest
// (unless -keep-on-failure); the logs stay.
func (c *cluster) failed(name string, err error) error {
	logf("%s failed: %v", name, err)
	if log := c.logFile(name); fileExists(log) {
		logf("the last lines of %s:", log)
		os.Stderr.Write(tail(log, 40))
	}
	if c.keep {
		logf("left running for debugging (-keep-on-failure); 'make e2e-cluster-down' stops it")
	} else {
		logf("stopping what started; the logs stay in %s", c.path("logs"))
		if err := c.cleanup(); err != nil {
			logf("cleanup: %v", err)
		}
	}
	return fmt.Errorf("%s failed: %w", name, err)
}

func tail(path string, lines int) []byte {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	all := bytes.Split(bytes.TrimRight(raw, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return append(bytes.Join(all, []byte("\n")), '\n')
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkMarker refuses to start when the cluster of another directory runs on this machine: there
// is one cni0, one set of KUBE-* chains and one port 6443.
func (c *cluster) checkMarker() error {
	raw, err := os.ReadFile(markerFile)
	if err != nil {
		return nil
	}
	other := strings.TrimSpace(string(raw))
	if other == c.dir || other == "" {
		return nil
	}
	o := &cluster{dir: other}
	for _, name := range stopOrder {
		if o.running(name) != 0 {
			return fmt.Errorf("the cluster of %s runs on this machine (%s); stop it there first (make e2e-cluster-down)", other, name)
		}
	}
	if len(o.strays()) > 0 {
		return fmt.Errorf("processes of the cluster of %s still run on this machine; stop it there first (make e2e-cluster-down)", other)
	}
	return nil
}

// resolveHost finds the CNI plugins and the node's address.
func (c *cluster) resolveHost() error {
	if c.cniBin == "" {
		for _, dir := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
			if fileExists(filepath.Join(dir, "bridge")) && fileExists(filepath.Join(dir, "host-local")) && fileExists(filepath.Join(dir, "loopback")) {
				c.cniBin = dir
				break
			}
		}
		if c.cniBin == "" {
			return fmt.Errorf("no CNI plugins (bridge, host-local, loopback) in /usr/lib/cni or /opt/cni/bin")
		}
	}
	if c.nodeIP == nil {
		ip, err := primaryIPv4()
		if err != nil {
			return err
		}
		c.nodeIP = ip
	}
	// A Unix socket's path has at most 107 bytes; the deepest is the kubelet's.
	if deepest := c.path("kubelet", "plugins_registry", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-reg.sock"); len(deepest) > 107 {
		return fmt.Errorf("the cluster's directory %s is too long for its Unix sockets; set E2E_CLUSTER_DIR to a shorter path", c.dir)
	}
	return nil
}

// ports are those the components listen on.
var ports = []int{apiPort, etcdPort, etcdPort + 1, 10248, 10249, 10250, 10256, 10257, 10259}

func checkPorts() error {
	for _, p := range ports {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("port %d is in use on this machine (the cluster needs %v): %w", p, ports, err)
		}
		l.Close()
	}
	return nil
}

// packages maps the commands the cluster runs to the Debian packages that hold them.
var packages = []struct{ command, pkg string }{
	{"containerd", "containerd"}, {"containerd-shim-runc-v2", "containerd"}, {"ctr", "containerd"},
	{"runc", "runc"}, {"iptables", "iptables"}, {"iptables-restore", "iptables"}, {"conntrack", "conntrack"},
	{"ip", "iproute2"},
}

// ensurePackages installs, with apt-get, the packages of the commands that are missing; its
// output goes to logDir/apt-get.log, shown when it fails.
func ensurePackages(logDir string) error {
	var missing []string
	for _, p := range packages {
		if _, err := exec.LookPath(p.command); err != nil && !slices.Contains(missing, p.pkg) {
			missing = append(missing, p.pkg)
		}
	}
	cni := false
	for _, dir := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		cni = cni || fileExists(filepath.Join(dir, "bridge")) && fileExists(filepath.Join(dir, "host-local"))
	}
	if !cni {
		missing = append(missing, "containernetworking-plugins")
	}
	if len(missing) == 0 {
		return nil
	}
	t := time.Now()
	logf("installing with apt-get: %s", strings.Join(missing, " "))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(logDir, "apt-get.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			os.Stderr.Write(tail(logPath, 20))
			return fmt.Errorf("apt-get %s: %w (its output: %s)", args[0], err, logPath)
		}
	}
	logf("installed in %s", since(t))
	return nil
}

// waitReady waits until a component serves (its health endpoint, or the CRI for containerd).
func (c *cluster) waitReady(name string) error {
	check := map[string]func() error{
		"containerd": func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return c.criReady(ctx)
		},
		"etcd":                    func() error { return plainGet(fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort)) },
		"kube-apiserver":          func() error { return c.apiGet("/readyz", nil) },
		"kube-controller-manager": func() error { return insecureGet("https://127.0.0.1:10257/healthz") },
		"kube-scheduler":          func() error { return insecureGet("https://127.0.0.1:10259/healthz") },
		"kubelet":                 func() error { return plainGet("http://127.0.0.1:10248/healthz") },
		"kube-proxy":              func() error { return plainGet("http://127.0.0.1:10256/healthz") },
	}[name]
	return c.waitFor(name+" to serve", 120*time.Second, name, check)
}

// waitFor polls check until it passes, the timeout ends, or the component's process exits.
func (c *cluster) waitFor(what string, timeout time.Duration, component string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if c.running(component) == 0 {
			return fmt.Errorf("%s exited (waiting for %s)", component, what)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %s: %w", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// allRunning says whether the process of every component runs.
func (c *cluster) allRunning() bool {
	for _, name := range stopOrder {
		if c.running(name) == 0 {
			return false
		}
	}
	return true
}

// healthy says whether every component runs and the node is Ready.
func (c *cluster) healthy() error {
	for _, name := range stopOrder {
		if c.running(name) == 0 {
			return fmt.Errorf("%s is not running", name)
		}
	}
	if err := c.apiGet("/readyz", nil); err != nil {
		return err
	}
	return c.nodeReady()
}

// leftovers says whether anything of a previous run may remain.
func (c *cluster) leftovers() bool {
	for _, name := range stopOrder {
		if fileExists(c.pidFile(name)) {
			return true
		}
	}
	for _, p := range []string{c.statePath(), c.path("containerd"), c.path("kubelet"), c.path("etcd")} {
		if fileExists(p) {
			return true
		}
	}
	if raw, err := os.ReadFile(markerFile); err == nil && strings.TrimSpace(string(raw)) == c.dir {
		return true
	}
	return len(c.strays()) > 0
}

func (c *cluster) nodeReady() error {
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status, Reason, Message string }
		}
	}
	if err := c.apiGet("/api/v1/nodes/"+nodeName, &node); err != nil {
		return err
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status == "True" {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s %s", nodeName, cond.Reason, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", nodeName)
}

// apiGet GETs path from the API server as the admin and decodes the JSON answer into out.
func (c *cluster) apiGet(path string, out any) error {
	return c.httpsGet(fmt.Sprintf("https://127.0.0.1:%d%s", apiPort, path), out)
}

// httpsGet GETs url with the admin's certificate, verifying the server with the cluster's CA.
func (c *cluster) httpsGet(url string, out any) error {
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.path("pki", "admin.crt"), c.path("pki", "admin.key"))
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	return get(client, url, out)
}

func plainGet(url string) error {
	return get(&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}, url, nil)
}

// insecureGet is for the health endpoints of kube-controller-manager and kube-scheduler, which
// serve with a certificate they make themselves.
func insecureGet(url string) error {
	return get(&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed, loopback
	}}, url, nil)
}

func get(client *http.Client, url string, out any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body[:min(len(body), 300)]))
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

var errNotRunning = errors.New("the cluster is not running (make e2e-cluster)")
