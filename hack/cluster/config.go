package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// component is one process of the cluster, in start order; stopOrder says how they stop.
type component struct {
	name string
	exe  string // a path, or a name looked up in PATH
	args []string
}

var stopOrder = []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-apiserver", "etcd", "containerd"}

// components are the processes of the cluster, in start order.
func (c *cluster) components() []component {
	pki := func(name string) string { return c.path("pki", name) }
	kubeconfig := func(name string) string { return c.path("kubeconfigs", name+".conf") }
	etcd := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(etcdPort+1)
	return []component{
		{"containerd", "containerd", []string{"--config", c.path("containerd", "config.toml")}},
		{"etcd", filepath.Join(c.bin, "etcd"), []string{
			"--name=e2e", "--data-dir=" + c.path("etcd"),
			"--listen-client-urls=" + etcd, "--advertise-client-urls=" + etcd,
			"--listen-peer-urls=" + etcdPeer, "--initial-advertise-peer-urls=" + etcdPeer,
			"--initial-cluster=e2e=" + etcdPeer,
			"--unsafe-no-fsync", // the data lives as long as one run
			"--log-level=warn",
		}},
		{"kube-apiserver", filepath.Join(c.bin, "kube-apiserver"), []string{
			"--etcd-servers=" + etcd,
			"--bind-address=0.0.0.0", "--secure-port=" + strconv.Itoa(apiPort),
			"--advertise-address=" + c.nodeIP.String(),
			"--cert-dir=" + c.path("run", "kube-apiserver"),
			"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
			"--client-ca-file=" + pki("ca.crt"),
			"--service-cluster-ip-range=" + serviceCIDR,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki("sa.pub"),
			"--service-account-signing-key-file=" + pki("sa.key"),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP,Hostname",
			"--profiling=false",
		}},
		{"kube-controller-manager", filepath.Join(c.bin, "kube-controller-manager"), []string{
			"--kubeconfig=" + kubeconfig("controller-manager"),
			"--authentication-kubeconfig=" + kubeconfig("controller-manager"),
			"--authorization-kubeconfig=" + kubeconfig("controller-manager"),
			"--bind-address=127.0.0.1", "--secure-port=10257",
			"--cert-dir=" + c.path("run", "kube-controller-manager"),
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--cluster-signing-cert-file=" + pki("ca.crt"), "--cluster-signing-key-file=" + pki("ca.key"),
			"--service-cluster-ip-range=" + serviceCIDR,
			"--profiling=false",
		}},
		{"kube-scheduler", filepath.Join(c.bin, "kube-scheduler"), []string{
			"--kubeconfig=" + kubeconfig("scheduler"),
			"--authentication-kubeconfig=" + kubeconfig("scheduler"),
			"--authorization-kubeconfig=" + kubeconfig("scheduler"),
			"--bind-address=127.0.0.1", "--secure-port=10259",
			"--cert-dir=" + c.path("run", "kube-scheduler"),
			"--leader-elect=false",
			"--profiling=false",
		}},
		{"kubelet", filepath.Join(c.bin, "kubelet"), []string{
			"--config=" + c.path("kubelet.yaml"),
			"--kubeconfig=" + kubeconfig("kubelet"),
			"--root-dir=" + c.path("kubelet"),
			"--cert-dir=" + c.path("run", "kubelet"),
			"--node-ip=" + c.nodeIP.String(),
			"--hostname-override=" + nodeName,
		}},
		{"kube-proxy", filepath.Join(c.bin, "kube-proxy"), []string{"--config=" + c.path("kube-proxy.yaml")}},
	}
}

// writeConfigs writes the configuration files of containerd, the CNI network, the kubelet and
// kube-proxy, and the kubeconfigs.
func (c *cluster) writeConfigs() error {
	files := map[string]string{
		c.path("containerd", "config.toml"):                   c.containerdConfig(),
		c.path("cni", "net.d", "10-"+networkName+".conflist"): c.cniConfig(),
		c.path("kubelet.yaml"):                                c.kubeletConfig(),
		c.path("kube-proxy.yaml"):                             c.kubeProxyConfig(),
		c.path("ctr"):                                         c.ctrWrapper(),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Base(path) == "ctr" {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.path("kubeconfigs"), 0o700); err != nil {
		return err
	}
	local := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	for _, cc := range clientCerts {
		if cc.name == "apiserver-kubelet-client" {
			continue
		}
		if err := writeKubeconfig(c.path("kubeconfigs", cc.name+".conf"), c.path("pki"), cc.name, local); err != nil {
			return err
		}
	}
	return writeKubeconfig(c.kubeconfig(), c.path("pki"), "admin", local)
}

// containerdConfig: root and state in the cluster's directory, the CRI plugin with our pause
// image and CNI network, cgroupfs (there is no systemd), and restrict_oom_score_adj because root
// here may lack CAP_SYS_RESOURCE (without it every sandbox fails with "can't get final child's
// PID from pipe"). Network namespaces are mounted under the state directory, so that all the
// mounts of the cluster are below c.dir.
func (c *cluster) containerdConfig() string {
	return fmt.Sprintf(`# Written by hack/cluster for 'make e2e-cluster'; rewritten at every start.
version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSock(),
		c.path("containerd", "opt"), c.pauseImage, c.path("containerd", "runc"),
		c.cniBin, c.path("cni", "net.d"))
}

// cniConfig: one bridge (cni0) for the node's pod CIDR, host-local addresses kept in the
// cluster's directory.
func (c *cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, networkName, bridgeName, podCIDR, c.path("cni", "ipam"))
}

// kubeletConfig: cgroupfs on cgroup v1 (failCgroupV1: false), swap tolerated, no image garbage
// collection (the imported images cannot be pulled again) and eviction only when the machine
// is really full, pod logs in the cluster's directory.
func (c *cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: %s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
`, c.containerdSock(), c.path("pki", "kubelet-serving.crt"), c.path("pki", "kubelet-serving.key"),
		c.path("pki", "ca.crt"), c.path("pod-logs"))
}

// kubeProxyConfig: iptables mode; every conntrack and localhost setting that would change a
// host-wide sysctl is left as the host has it.
func (c *cluster) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.path("kubeconfigs", "kube-proxy.conf"), nodeName, clusterCIDR)
}

// ctrWrapper is bin/cluster/ctr: ctr on the cluster's containerd, in the namespace of its
// images.
func (c *cluster) ctrWrapper() string {
	return fmt.Sprintf("#!/bin/sh\n# ctr on the cluster of 'make e2e-cluster' (images the kubelet sees are in namespace k8s.io).\nexec ctr --address %q --namespace k8s.io \"$@\"\n", c.containerdSock())
}
