package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func (c *cluster) down() error {
	if err := c.cleanup(); err != nil {
		return err
	}
	if left := c.remains(c.checkMarker() == nil); len(left) > 0 {
		return fmt.Errorf("stopped, but these remain:\n  %s", strings.Join(left, "\n  "))
	}
	logf("down: no process, mount, cgroup, iptables chain or cni0 of the cluster remains; logs in %s", c.path("logs"))
	return nil
}

// cleanup stops the cluster and removes what it left in the host, whether it runs, half runs
// or was killed: first gracefully (the kubelet stops, containerd removes the pods and so their
// networks), then by sweeping (the processes, the pods' cgroups, the mounts below the
// directory, the chains, the bridge). It keeps the logs and removes the rest of the state, so
// the next start is a new cluster.
func (c *cluster) cleanup() error {
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet"} {
		c.stop(name, 10*time.Second)
	}
	if c.running("containerd") != 0 {
		if err := c.removePods(); err != nil {
			logf("removing the pods through containerd: %v (sweeping instead)", err)
		}
	}
	for _, name := range []string{"kube-proxy", "kube-apiserver", "etcd", "containerd"} {
		c.stop(name, 10*time.Second)
	}
	if pids := c.strays(); len(pids) > 0 {
		logf("stopping %d leftover processes of the cluster (%v)", len(pids), pids)
		for _, pid := range pids {
			stopPID(pid, 5*time.Second)
		}
	}
	var errs []error
	// The pods' cgroups, the chains, cni0 and the sysctls are the machine's, not the directory's:
	// while the cluster of another directory runs they are its own, and stay.
	if other := c.checkMarker(); other != nil {
		logf("leaving the host's cgroups, iptables chains, %s and sysctls alone: %v", bridgeName, other)
		if err := unmountBelow(c.dir); err != nil {
			return err
		}
	} else {
		if err := killCgroups(); err != nil {
			errs = append(errs, err)
		}
		if err := unmountBelow(c.dir); err != nil {
			errs = append(errs, err)
		}
		if err := removeChains(); err != nil {
			errs = append(errs, err)
		}
		if err := deleteLink(bridgeName); err != nil {
			errs = append(errs, err)
		}
		c.removeCNIResults()
		if state, err := c.readState(); err != nil {
			errs = append(errs, err)
		} else {
			c.restoreHost(state)
		}
	}
	if len(errs) > 0 {
		// Keep the state: removing files below a mount would reach into it.
		return errors.Join(errs...)
	}
	for _, p := range []string{"containerd", "etcd", "kubelet", "run", "cni", "pod-logs", "pki", "kubeconfigs", "kubeconfig", "ctr", "kubelet.yaml", "kube-proxy.yaml", "host-state.json"} {
		if err := os.RemoveAll(c.path(p)); err != nil {
			errs = append(errs, err)
		}
	}
	if raw, err := os.ReadFile(markerFile); err == nil && strings.TrimSpace(string(raw)) == c.dir {
		_ = os.Remove(markerFile)
	}
	return errors.Join(errs...)
}

// remains lists what of the cluster is still in the host after cleanup; hostWide adds what
// only a node creates (while another directory's cluster runs, that is its own).
func (c *cluster) remains(hostWide bool) []string {
	var left []string
	if pids := c.strays(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	for _, m := range mounts() {
		if strings.HasPrefix(m.point, c.dir+"/") {
			left = append(left, "mount "+m.point)
		}
	}
	if !hostWide {
		return left
	}
	for _, root := range cgroupRoots() {
		if fileExists(filepath.Join(root, "kubepods")) {
			left = append(left, "cgroup "+filepath.Join(root, "kubepods"))
		}
	}
	for _, family := range []string{"iptables", "ip6tables"} {
		if out, err := exec.Command(family + "-save").Output(); err == nil {
			if s := removalScript(string(out)); s != "" {
				left = append(left, family+" chains:\n"+s)
			}
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		left = append(left, "link "+bridgeName)
	}
	return left
}

func (c *cluster) status() error {
	for _, name := range append([]string{"containerd", "etcd", "kube-apiserver"}, stopOrder[:4]...) {
		if pid := c.running(name); pid != 0 {
			fmt.Printf("%-24s running (pid %d), log %s\n", name, pid, c.logFile(name))
		} else {
			fmt.Printf("%-24s not running\n", name)
		}
	}
	if err := c.healthy(); err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	fmt.Printf("node %s Ready\n", nodeName)
	c.printAccess()
	return nil
}

// load imports image tarballs (OCI layout or docker-archive) into the cluster's containerd.
func (c *cluster) load(tars ...string) error {
	if c.running("containerd") == 0 {
		return errNotRunning
	}
	for _, t := range tars {
		names, err := c.importImages(t)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Printf("loaded %s from %s\n", n, t)
		}
	}
	return nil
}

// importImages imports one tarball with ctr into the namespace the kubelet uses, and tags each
// image also under the name the kubelet will ask for (docker.io/library/NAME for a bare NAME).
func (c *cluster) importImages(tarball string) ([]string, error) {
	ctr := func(args ...string) error {
		cmd := exec.Command("ctr", append([]string{"--address", c.containerdSock(), "--namespace", "k8s.io"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := ctr("images", "import", tarball); err != nil {
		return nil, err
	}
	names, err := imageNames(tarball)
	if err != nil {
		return nil, err
	}
	var full []string
	for _, n := range names {
		f := normalize(n)
		if f != n {
			if err := ctr("images", "tag", "--force", n, f); err != nil {
				return nil, err
			}
		}
		full = append(full, f)
	}
	return full, nil
}

// imageNames reads the image names from a tarball's index.json (OCI) or manifest.json
// (docker-archive).
func imageNames(tarball string) ([]string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tarball, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "index.json":
			var index struct {
				Manifests []struct{ Annotations map[string]string }
			}
			if err := json.NewDecoder(tr).Decode(&index); err != nil {
				return nil, fmt.Errorf("%s: index.json: %w", tarball, err)
			}
			for _, m := range index.Manifests {
				if n := m.Annotations["io.containerd.image.name"]; n != "" {
					names = append(names, n)
				}
			}
			if len(names) > 0 {
				return names, nil
			}
		case "manifest.json":
			var manifest []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return nil, fmt.Errorf("%s: manifest.json: %w", tarball, err)
			}
			for _, m := range manifest {
				names = append(names, m.RepoTags...)
			}
		}
	}
}

// normalize is the name the kubelet asks containerd for: the Docker Hub's domain and library/
// for names without a domain, the tag latest for names without a tag.
func normalize(name string) string {
	if domain, _, found := strings.Cut(name, "/"); !found {
		name = "docker.io/library/" + name
	} else if !strings.ContainsAny(domain, ".:") && domain != "localhost" {
		name = "docker.io/" + name
	}
	if last := name[strings.LastIndex(name, "/")+1:]; !strings.ContainsAny(last, ":@") {
		name += ":latest"
	}
	return name
}
