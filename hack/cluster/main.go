// Command cluster runs the single-node Kubernetes cluster of 'make e2e-cluster' on this machine,
// without Docker or systemd: containerd, etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet and kube-proxy run as plain root processes, with their PKI,
// configuration, state and logs in one directory (bin/cluster).
//
//	up      start the cluster, or report that it runs; a run left behind by a killed one is
//	        cleaned up first
//	down    stop what up started and remove what it left in the host: processes, mounts,
//	        cgroups, iptables chains, the cni0 bridge, sysctls it changed
//	status  show the components and the node
//	load    import image tarballs into the cluster's containerd (pods use imagePullPolicy: Never)
//	check   the smoke test: a Deployment behind a Service, reached from the host and from a pod
//
// It must never signal, unmount or delete anything that is not its own: processes are matched
// by their binary and by this directory in their command line, mounts and files by this
// directory, and the host-wide leftovers (kubepods cgroups, KUBE-* and CNI-* chains, cni0) are
// the ones only a Kubernetes node creates.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The cluster's fixed addresses.
const (
	nodeName     = "e2e-node"
	serviceCIDR  = "10.96.0.0/16"
	kubernetesIP = "10.96.0.1" // the kubernetes Service: the first address of serviceCIDR
	clusterCIDR  = "10.244.0.0/16"
	podCIDR      = "10.244.0.0/24" // the node's share of clusterCIDR, fixed in the CNI configuration
	apiPort      = 6443
	etcdPort     = 12379 // off the default 2379, so as not to meet another etcd of the machine
	networkName  = "e2e-cluster"
	bridgeName   = "cni0"
	markerFile   = "/run/e2e-cluster.dir" // which directory's cluster runs on this machine
)

type cluster struct {
	dir        string // absolute; everything the cluster writes but host-wide state lives here
	bin        string // the Kubernetes binaries (hack/envtest/build.sh)
	cniBin     string // the CNI plugins
	nodeIP     net.IP
	pauseTar   string // the sandbox image's tarball
	pauseImage string // and its name
	keep       bool   // leave a failed start running, for debugging
}

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

func (c *cluster) kubeconfig() string     { return c.path("kubeconfig") }
func (c *cluster) containerdSock() string { return c.path("containerd", "containerd.sock") }

func main() {
	var c cluster
	var nodeIP string
	flag.StringVar(&c.dir, "dir", "bin/cluster", "The cluster's directory: PKI, configuration, state, logs, the admin kubeconfig.")
	flag.StringVar(&c.bin, "bin", "bin/k8s", "The directory of kube-apiserver, etcd, kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl.")
	flag.StringVar(&c.cniBin, "cni-bin", "", "The CNI plugins' directory (default: /usr/lib/cni or /opt/cni/bin, whichever has bridge).")
	flag.StringVar(&c.pauseTar, "pause-tar", "bin/e2e/pause.tar", "The pod sandbox (pause) image tarball, imported at start.")
	flag.StringVar(&c.pauseImage, "pause-image", "localhost/e2e/pause:v1", "The pause image's name in -pause-tar.")
	flag.StringVar(&nodeIP, "node-ip", "", "The node's IPv4 address (default: the address of the default route's interface).")
	flag.BoolVar(&c.keep, "keep-on-failure", false, "Leave the components of a failed start running, for debugging.")
	probeTar := flag.String("probe-tar", "bin/e2e/probe.tar", "check: the probe image tarball.")
	probeImage := flag.String("probe-image", "localhost/e2e/probe:v1", "check: the probe image's name.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: cluster [flags] up|down|status|check|load TARBALL...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	for _, p := range []*string{&c.dir, &c.bin, &c.pauseTar, probeTar} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fatal(err)
		}
		*p = abs
	}
	if nodeIP != "" {
		if c.nodeIP = net.ParseIP(nodeIP).To4(); c.nodeIP == nil {
			fatal(fmt.Errorf("-node-ip %q is not an IPv4 address", nodeIP))
		}
	}
	// iptables, conntrack and modprobe live in sbin, which a non-login shell may not have.
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/local/sbin:/usr/sbin:/sbin")
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("the cluster needs root (it runs containerd and a kubelet, and changes iptables)"))
	}
	var err error
	switch cmd := flag.Arg(0); cmd {
	case "up":
		err = c.withLock(c.up)
	case "down":
		err = c.withLock(c.down)
	case "status":
		err = c.status()
	case "load":
		if flag.NArg() < 2 {
			fatal(fmt.Errorf("load needs image tarballs"))
		}
		err = c.load(flag.Args()[1:]...)
	case "check":
		err = c.check(*probeTar, *probeImage)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "e2e-cluster:", err)
	os.Exit(1)
}

// logf prints progress on stderr; stdout is for what a caller evaluates (the export line).
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e-cluster: "+format+"\n", args...)
}

func since(t time.Time) string {
	return time.Since(t).Round(100 * time.Millisecond).String()
}
