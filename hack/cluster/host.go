package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostState is what the cluster changed in the host outside its directory and must put back:
// written before the change, read by down.
type hostState struct {
	Sysctls map[string]string `json:"sysctls"` // /proc/sys paths and their values before the start
	Created []string          `json:"created"` // host directories that did not exist before
	Modules []string          `json:"modules"` // kernel modules the start loaded
}

func (c *cluster) statePath() string { return c.path("host-state.json") }

func (c *cluster) readState() (*hostState, error) {
	raw, err := os.ReadFile(c.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return &hostState{}, nil
	}
	if err != nil {
		return nil, err
	}
	var s hostState
	return &s, json.Unmarshal(raw, &s)
}

func (c *cluster) writeState(s *hostState) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.statePath(), raw, 0o644)
}

// sysctlsSet are the sysctls a node needs; sysctlsTouched those the kubelet sets on its own
// (protectKernelDefaults: false). down restores all of them.
var (
	sysctlsSet = map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
	}
	sysctlsTouched = []string{
		"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/conf/all/route_localnet",
	}
	// Host directories that the components create outside the cluster's directory.
	hostDirs = []string{"/run/containerd", "/var/lib/cni", "/var/run/kubernetes", "/etc/cni"}
)

// prepareHost loads the kernel modules and sets the sysctls a node needs, after recording what
// it finds, and notes which host directories the run will create.
func (c *cluster) prepareHost() error {
	s := &hostState{Sysctls: map[string]string{}}
	for _, dir := range hostDirs {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			s.Created = append(s.Created, dir)
		}
	}
	if !hasFilesystem("overlay") {
		if err := modprobe("overlay"); err != nil {
			return err
		}
		s.Modules = append(s.Modules, "overlay")
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if err := modprobe("br_netfilter"); err != nil {
			return err
		}
		s.Modules = append(s.Modules, "br_netfilter")
	}
	for _, key := range append(slices.Sorted(mapKeys(sysctlsSet)), sysctlsTouched...) {
		if v, err := os.ReadFile("/proc/sys/" + key); err == nil {
			s.Sysctls[key] = strings.TrimSpace(string(v))
		}
	}
	if err := c.writeState(s); err != nil {
		return err
	}
	for key, v := range sysctlsSet {
		if err := os.WriteFile("/proc/sys/"+key, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), v, err)
		}
	}
	return nil
}

// restoreHost puts back what prepareHost recorded.
func (c *cluster) restoreHost(s *hostState) {
	for key, v := range s.Sysctls {
		if now, err := os.ReadFile("/proc/sys/" + key); err == nil && strings.TrimSpace(string(now)) != v {
			if err := os.WriteFile("/proc/sys/"+key, []byte(v), 0o644); err != nil {
				logf("restoring sysctl %s=%s: %v", key, v, err)
			}
		}
	}
	for _, m := range s.Modules {
		_ = exec.Command("modprobe", "-r", m).Run() // best effort: another user may hold it
	}
	// Deepest first; only if empty: another containerd may run beside ours.
	dirs := slices.Clone(s.Created)
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		removeEmptyDirs(d)
	}
}

// removeEmptyDirs removes dir and the directories below it that hold no file.
func removeEmptyDirs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyDirs(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir) // fails unless empty
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func hasFilesystem(fs string) bool {
	raw, _ := os.ReadFile("/proc/filesystems")
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

func modprobe(module string) error {
	if out, err := exec.Command("modprobe", module).CombinedOutput(); err != nil {
		return fmt.Errorf("modprobe %s: %v: %s", module, err, bytes.TrimSpace(out))
	}
	return nil
}

// primaryIPv4 is the address of the interface of the default route, else of the first interface
// that is up and not loopback.
func primaryIPv4() (net.IP, error) {
	iface := ""
	if raw, err := os.ReadFile("/proc/net/route"); err == nil {
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
				iface = f[0]
				break
			}
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifaces {
		if iface != "" && ifc.Name != iface || ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == bridgeName {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLinkLocalUnicast() {
				return ipn.IP.To4(), nil
			}
		}
	}
	if iface != "" {
		return nil, fmt.Errorf("the default route's interface %s has no IPv4 address; pass -node-ip (E2E_NODE_IP)", iface)
	}
	return nil, fmt.Errorf("no interface but loopback has an IPv4 address; pass -node-ip (E2E_NODE_IP) after adding one")
}

// killCgroups kills every process in the pods' cgroups (kubepods, in every hierarchy) and
// removes the cgroups, deepest first.
func killCgroups() error {
	roots := cgroupRoots()
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(filepath.Join(root, "kubepods"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return nil
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		left := 0
		for _, d := range dirs {
			raw, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				last = fmt.Errorf("removing cgroup %s: %w", d, err)
				left++
			}
		}
		if left == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// cgroupRoots are the mount points of the cgroup hierarchies (v1 and v2).
func cgroupRoots() []string {
	var roots []string
	for _, m := range mounts() {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			roots = append(roots, m.point)
		}
	}
	return roots
}

type mount struct{ point, fstype string }

// mounts reads /proc/self/mountinfo.
func mounts() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		ms = append(ms, mount{point: unescapeOctal(f[4]), fstype: f[sep+1]})
	}
	return ms
}

// unescapeOctal undoes mountinfo's \040-style escapes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountBelow unmounts everything mounted at or below dir, deepest first, lazily when a mount
// is busy; it repeats for stacked mounts.
func unmountBelow(dir string) error {
	for attempt := 0; attempt < 10; attempt++ {
		var points []string
		for _, m := range mounts() {
			if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
				points = append(points, m.point)
			}
		}
		if len(points) == 0 {
			return nil
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, p := range points {
			if err := syscall.Unmount(p, 0); err != nil {
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
			}
		}
	}
	return fmt.Errorf("mounts remain below %s", dir)
}

// ownChain is a chain only a Kubernetes node creates: kube-proxy's and the kubelet's (KUBE-*),
// and the CNI plugins' (CNI-*).
func ownChain(name string) bool {
	return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-")
}

// removeChains deletes the KUBE-* and CNI-* chains of every table, IPv4 and IPv6, with the rules
// of other chains that jump to them, in one iptables-restore --noflush per family (each table
// changes atomically, and nobody else's rules are rewritten).
func removeChains() error {
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(family + "-save"); err != nil {
			continue
		}
		saved, err := exec.Command(family + "-save").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s-save: %w", family, err))
			continue
		}
		script := removalScript(string(saved))
		if script == "" {
			continue
		}
		cmd := exec.Command(family+"-restore", "--noflush")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %v: %s\n%s", family, err, bytes.TrimSpace(out), script))
		}
	}
	return errors.Join(errs...)
}

// removalScript turns iptables-save output into the iptables-restore input that deletes the own
// chains: per table, -D for the foreign rules that jump to them, then -F and -X for each.
func removalScript(saved string) string {
	var out strings.Builder
	var table string
	var deletes, chains []string
	flushTable := func() {
		if table != "" && (len(deletes) > 0 || len(chains) > 0) {
			fmt.Fprintf(&out, "*%s\n", table)
			for _, d := range deletes {
				out.WriteString(d + "\n")
			}
			for _, ch := range chains {
				fmt.Fprintf(&out, "-F %s\n", ch)
			}
			for _, ch := range chains {
				fmt.Fprintf(&out, "-X %s\n", ch)
			}
			out.WriteString("COMMIT\n")
		}
		deletes, chains = nil, nil
	}
	for _, line := range strings.Split(saved, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			flushTable()
			table = strings.TrimPrefix(line, "*")
		case strings.HasPrefix(line, ":"):
			if name := strings.Fields(line[1:]); len(name) > 0 && ownChain(name[0]) {
				chains = append(chains, name[0])
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || ownChain(f[1]) {
				continue // flushed with its chain
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && ownChain(f[i+1]) {
					deletes = append(deletes, "-D "+line[len("-A "):])
					break
				}
			}
		case line == "COMMIT":
			flushTable()
			table = ""
		}
	}
	return out.String()
}

// deleteLink deletes a network interface if it exists.
func deleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link delete %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// removeCNIResults removes libcni's cached results (kept in /var/lib/cni/results whatever the
// configuration says) of the cluster's network and of the pods' loopback networks: those whose
// name holds the ID of one of the cluster's sandboxes.
func (c *cluster) removeCNIResults() {
	var ids []string
	for _, dir := range []string{c.path("containerd", "root", "io.containerd.grpc.v1.cri", "sandboxes"), c.path("containerd", "state", "io.containerd.grpc.v1.cri", "sandboxes")} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			ids = append(ids, e.Name())
		}
	}
	results, _ := os.ReadDir("/var/lib/cni/results")
	for _, r := range results {
		name := r.Name()
		own := strings.HasPrefix(name, networkName+"-")
		for _, id := range ids {
			own = own || strings.Contains(name, "-"+id+"-")
		}
		if own {
			_ = os.Remove(filepath.Join("/var/lib/cni/results", name))
		}
	}
}
