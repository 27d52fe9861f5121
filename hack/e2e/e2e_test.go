// Package e2e is the end-to-end suite: the operator's image, installed with config/default (and
// then the Helm chart) into a real cluster (`make e2e-cluster`), checking demo orgs from inside
// its pods against the fake Salesforce behind a Service, admission through the webhook Service,
// leader failover, the pods' security context as the kernel sees it, a rolling upgrade with
// refresh tokens rotating throughout, and a pipeline Job using a SalesforceAccessToken. `make e2e` builds and imports the images, brings the
// cluster up and runs it; without E2E_KUBECONFIG every test here is skipped.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/demo"
	"github.com/sfops/salesforce-operator/internal/operator"
	"github.com/sfops/salesforce-operator/internal/salesforce"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

const (
	system     = "salesforce-operator-system"
	deployment = "salesforce-operator-controller-manager"
	fakeNS     = "sfops-e2e"
	electionID = "salesforce-operator.sfops.io"
	caFile     = "/etc/sfops-e2e/ca.crt"
)

// env is what `make e2e` hands the suite.
type env struct {
	kubeconfig string // the cluster's admin kubeconfig
	image      string // the manager image to install (imported into the node, pull policy Never)
	nextImage  string // the image the rolling upgrade moves to
	helm       string // a helm binary ("" skips the chart install)
	probe      string // the probe image of hack/cluster, the pipeline Job's ("" skips that step)
	repo       string // the repository root
}

func loadEnv(t *testing.T) env {
	e := env{kubeconfig: os.Getenv("E2E_KUBECONFIG"), image: os.Getenv("E2E_IMAGE"),
		nextImage: os.Getenv("E2E_IMAGE_NEXT"), helm: os.Getenv("E2E_HELM"), probe: os.Getenv("E2E_PROBE_IMAGE")}
	if e.kubeconfig == "" {
		t.Skip("E2E_KUBECONFIG is not set: run `make e2e` (it brings up a cluster with `make e2e-cluster`)")
	}
	if e.image == "" || e.nextImage == "" {
		t.Fatal("E2E_IMAGE and E2E_IMAGE_NEXT name the manager images imported into the node")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e.repo = filepath.Join(wd, "..", "..")
	return e
}

// suite is one cluster, one fake Salesforce and one installed operator, shared by the steps.
type suite struct {
	t    *testing.T
	env  env
	c    client.Client
	fake *sftest.Server
	orgs map[string]*sftest.Org
	dir  string // the kustomize overlay that installed the operator
}

// TestEndToEnd runs the steps in order: each builds on the cluster the previous one left.
func TestEndToEnd(t *testing.T) {
	e := loadEnv(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, env: e, c: c, dir: t.TempDir()}
	s.startFake()
	s.install(e.image)
	t.Cleanup(s.dumpOnFailure)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PodsHoldTheirSecurityContext", s.securityContext},
		{"DemoOrgsConnectFromInsideThePod", s.demoOrgsConnect},
		{"WebhooksRefuseThroughTheService", s.webhooksRefuse},
		{"LeaderFailover", s.leaderFailover},
		{"RollingUpgradeKeepsEveryCredential", s.rollingUpgrade},
		{"PipelineJobUsesAHandOut", s.pipelineHandOut},
		{"Uninstall", s.uninstall},
		{"HelmChart", s.helmChart},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			t.Fatalf("%s failed; later steps need it", st.name)
		}
	}
}

// startFake runs the fake Salesforce in this process on the node's address, behind a Service
// with no selector and an EndpointSlice naming that address: the manager's pods reach it at the
// Service's ClusterIP through kube-proxy, as they would reach an external Salesforce.
func (s *suite) startFake() {
	t, ctx := s.t, context.Background()
	nodeIP := s.nodeIP()
	s.apply(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Service
metadata: {name: salesforce, namespace: %[1]s}
spec:
  ports: [{name: https, port: 443, protocol: TCP}]
`, fakeNS))
	var svc corev1.Service
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: fakeNS, Name: "salesforce"}, &svc); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	fake, err := sftest.NewAdvertisedServer(net.JoinHostPort(nodeIP, "0"), net.JoinHostPort(svc.Spec.ClusterIP, "443"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	s.fake = fake
	_, port, _ := net.SplitHostPort(fake.ListenAddr())
	p, _ := strconv.Atoi(port)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: "salesforce-node",
			Labels: map[string]string{discoveryv1.LabelServiceName: "salesforce"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{nodeIP}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: ptr(int32(p)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	_ = s.c.Delete(ctx, slice) // left by an interrupted run
	if err := s.c.Create(ctx, slice); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	t.Cleanup(func() { s.kubectlErr("delete", "namespace", fakeNS, "--wait=false") })
	t.Logf("fake Salesforce listens on %s:%d, reached by the pods at %s", nodeIP, p, fake.Host())
}

// nodeIP is the node's InternalIP: the host address the pods can reach.
func (s *suite) nodeIP() string {
	var nodes corev1.NodeList
	if err := s.c.List(context.Background(), &nodes); err != nil || len(nodes.Items) == 0 {
		s.t.Fatalf("listing nodes: %v (%d)", err, len(nodes.Items))
	}
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	s.t.Fatal("the node has no InternalIP")
	return ""
}

// install applies config/default with the manager image set, rendered as a user would render it
// (`make deploy-manifests IMG=...`), through a kustomize overlay that only adds what the test
// needs: trust in the fake's CA and its address, and pull policy Never (the images are imported
// into the node, nothing can be pulled).
func (s *suite) install(image string) {
	t := s.t
	if out, err := run("make", "-C", s.env.repo, "--no-print-directory", "deploy-manifests", "IMG="+image); err != nil {
		t.Fatalf("make deploy-manifests: %v\n%s", err, out)
	}
	write(t, filepath.Join(s.dir, "base.yaml"), readFile(t, filepath.Join(s.env.repo, "bin", "deploy.yaml")))
	write(t, filepath.Join(s.dir, "fake-ca.crt"), string(s.fake.CACertPEM()))
	write(t, filepath.Join(s.dir, "kustomization.yaml"), fmt.Sprintf(`resources: [base.yaml]
configMapGenerator:
- name: salesforce-operator-e2e-fake-ca
  namespace: %[1]s
  files: [ca.crt=fake-ca.crt]
  options: {disableNameSuffixHash: true}
patches:
- target: {kind: Deployment, name: %[2]s}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--salesforce-allowed-hosts=%[3]s"}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--salesforce-ca-file=%[4]s"}
    - {op: add, path: /spec/template/spec/containers/0/imagePullPolicy, value: Never}
    - {op: add, path: /spec/template/spec/volumes, value: [{name: e2e-fake-ca, configMap: {name: salesforce-operator-e2e-fake-ca}}]}
    - {op: add, path: /spec/template/spec/containers/0/volumeMounts, value: [{name: e2e-fake-ca, mountPath: %[5]s, readOnly: true}]}
`, system, deployment, s.fake.Host(), caFile, filepath.Dir(caFile)))
	s.kubectl("apply", "--server-side", "-k", s.dir)
	s.rollout(system, deployment, 4*time.Minute)
}

// securityContext checks each manager container as the kernel runs it: found through its
// cgroup in /proc, it runs as a non-root user with no effective capabilities, no_new_privs and
// seccomp on, and a read-only root filesystem.
func (s *suite) securityContext(t *testing.T) {
	pods := s.managerPods(t)
	for _, p := range pods {
		id := containerID(t, p)
		pid := pidOfContainer(t, id)
		status := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
		fields := procFields(status)
		for _, uid := range strings.Fields(fields["Uid"]) {
			if uid == "0" {
				t.Errorf("pod %s: the manager runs with uid 0 (Uid: %s)", p.Name, fields["Uid"])
			}
		}
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
			if strings.Trim(fields[k], "0") != "" {
				t.Errorf("pod %s: %s is %s, want no capabilities", p.Name, k, fields[k])
			}
		}
		if fields["NoNewPrivs"] != "1" || fields["Seccomp"] != "2" {
			t.Errorf("pod %s: NoNewPrivs %s, Seccomp %s; want 1 and 2 (filter)", p.Name, fields["NoNewPrivs"], fields["Seccomp"])
		}
		root := ""
		for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/mountinfo", pid)), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				root = f[5]
			}
		}
		if !strings.HasPrefix(root, "ro") {
			t.Errorf("pod %s: the root filesystem is mounted %q, want read-only", p.Name, root)
		}
		t.Logf("pod %s: pid %d, Uid %s, CapEff %s, NoNewPrivs %s, Seccomp %s, / mounted %s",
			p.Name, pid, fields["Uid"], fields["CapEff"], fields["NoNewPrivs"], fields["Seccomp"], root)
	}
}

// demoOrgsConnect seeds the demo namespace of `make run` and waits until every org is Connected:
// the checks run in the manager's pod, through the Service, with the CA from the ConfigMap.
func (s *suite) demoOrgsConnect(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	before := s.fake.TotalCalls()
	orgs, err := demo.Seed(ctx, s.c, s.fake)
	if err != nil {
		t.Fatal(err)
	}
	s.orgs = orgs
	if err := demo.WaitReady(ctx, s.c, 3*time.Minute); err != nil {
		s.describeOrgs(t)
		t.Fatal(err)
	}
	for _, name := range demo.Orgs {
		s.waitConnected(t, name)
	}
	t.Logf("%d demo orgs Connected %s after seeding; the fake answered %d calls",
		len(demo.Orgs), time.Since(start).Round(time.Millisecond), s.fake.TotalCalls()-before)
}

// webhooksRefuse changes that only the webhooks refuse, with kubectl as a user would: the API
// server reaches them through their Service with the CA the manager injected.
func (s *suite) webhooksRefuse(t *testing.T) {
	out, err := s.kubectlErr("-n", demo.Namespace, "patch", "salesforceorg", "acme-uat", "--type=merge",
		"-p", `{"spec":{"state":"Inactive"}}`)
	if err == nil || !strings.Contains(out, "denied the request") || !strings.Contains(out, "release/uat") {
		t.Fatalf("making acme-uat Inactive while stage release/uat uses it: want a webhook refusal naming the stage, got err=%v:\n%s", err, out)
	}
	t.Logf("refused: %s", firstLine(out))
	out, err = s.kubectlErr("-n", demo.Namespace, "delete", "salesforceorg", "acme-uat", "--wait=false")
	if err == nil || !strings.Contains(out, "release/uat") {
		t.Fatalf("deleting acme-uat while stage release/uat uses it: want a refusal naming the stage, got err=%v:\n%s", err, out)
	}
	t.Logf("refused: %s", firstLine(out))
	// The refused deletion is remembered; cancel it as the message says.
	s.kubectl("-n", demo.Namespace, "annotate", "salesforceorg", "acme-uat", sfv1.DeletionRequestedAnnotation+"-")
	var org sfv1.SalesforceOrg
	if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: demo.Namespace, Name: "acme-prod"}, &org); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	if org.Annotations[sfv1.CreatedByAnnotation] == "" {
		t.Fatalf("the mutating webhook did not record who created acme-prod (annotations %v)", org.Annotations)
	}
}

// leaderFailover deletes the leader's pod and measures how long until the other replica holds
// the lease and until an org's check runs again under it. Admission must answer throughout.
func (s *suite) leaderFailover(t *testing.T) {
	leader := s.leaderPod(t)
	org := s.orgs["acme-devhub"]
	start := time.Now()
	s.kubectl("-n", system, "delete", "pod", leader, "--wait=false")
	var refused []string
	write := func() {
		if _, err := s.tryRequestCheck("acme-devhub"); err != nil {
			refused = append(refused, time.Now().Format("15:04:05.000")+" "+testkit.APIError(err))
		}
	}
	var next string
	testkit.Eventually(t, 3*time.Minute, "another pod holding the lease", func() string {
		write() // the stopping pod serves until its SIGTERM, then the other one alone
		if next = s.leaderPod(t); next == leader {
			time.Sleep(200 * time.Millisecond)
			return "still held by " + leader
		}
		return ""
	})
	handover := time.Since(start)
	calls := s.fake.CallsFor(org)
	testkit.Eventually(t, 2*time.Minute, "a check of acme-devhub under the new leader", func() string {
		write()
		if s.fake.CallsFor(org) > calls {
			return ""
		}
		time.Sleep(400 * time.Millisecond)
		return fmt.Sprintf("%d calls for acme-devhub", s.fake.CallsFor(org))
	})
	if len(refused) > 0 {
		t.Errorf("%d writes failed while the leader's pod stopped (admission must stay reachable):\n%s", len(refused), strings.Join(refused, "\n"))
	}
	t.Logf("leader %s deleted (a 5 s preStop, then SIGTERM); %s held the lease %s later; checks resumed %s after the deletion",
		leader, next, handover.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	s.rollout(system, deployment, 3*time.Minute)
}

// rollingUpgrade moves the Deployment to the next image while every auth-URL org rotates its
// refresh token on each exchange and checks keep being requested, then proves each Secret
// still holds the live refresh token and every org still connects with a new exchange.
func (s *suite) rollingUpgrade(t *testing.T) {
	ctx := context.Background()
	rotating := []string{"acme-prod", "acme-uat", "acme-devhub"}
	for _, name := range rotating {
		s.orgs[name].SetRotateRefreshTokens(true)
	}
	// Reuse detection and concurrent-refresh refusal are on with rotation, as at Salesforce: one
	// spent token presented by either manager revokes the org's chain.
	exchanges, spentBefore := s.fake.Calls("token"), s.fake.SpentTokensPresented()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refused []string // admission must keep answering throughout the rollout
	wg.Add(1)
	go func() { // churn: each requested check needs a token exchange, which rotates the token
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			for _, name := range rotating {
				s.orgs[name].ExpireAccessTokens()
				if _, err := s.tryRequestCheck(name); err != nil {
					refused = append(refused, time.Now().Format("15:04:05.000")+" "+name+": "+testkit.APIError(err))
				}
			}
		}
	}()
	s.kubectl("-n", system, "set", "image", "deployment/"+deployment, "manager="+s.env.nextImage)
	s.rollout(system, deployment, 4*time.Minute)
	time.Sleep(3 * time.Second) // a few more rotations under the new pods
	close(stop)
	wg.Wait()
	rotations := s.fake.Calls("token") - exchanges
	if len(refused) > 0 {
		t.Errorf("%d of the writes during the rollout failed (the webhook must stay reachable):\n%s", len(refused), strings.Join(refused, "\n"))
	}
	if rotations < len(rotating) {
		t.Fatalf("only %d token exchanges during the upgrade: the churn did not run", rotations)
	}
	for _, p := range s.managerPods(t) {
		if img := p.Spec.Containers[0].Image; img != s.env.nextImage {
			t.Fatalf("pod %s runs %s after the upgrade, want %s", p.Name, img, s.env.nextImage)
		}
	}
	for _, name := range rotating {
		org := s.orgs[name]
		testkit.Eventually(t, time.Minute, name+"'s Secret holding a live refresh token", func() string {
			var sec corev1.Secret
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: demo.Namespace, Name: name + "-auth"}, &sec); err != nil {
				return testkit.APIError(err)
			}
			if !s.fake.RefreshTokenLive(refreshToken(string(sec.Data[sfv1.DefaultAuthSecretKey]))) {
				return "the Secret's refresh token is not the org's live one"
			}
			return ""
		})
		org.ExpireAccessTokens()
		calls := s.fake.CallsFor(org)
		value := s.requestCheck(t, name)
		testkit.Eventually(t, time.Minute, name+" Connected after a new token exchange", func() string {
			var o sfv1.SalesforceOrg
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: demo.Namespace, Name: name}, &o); err != nil {
				return testkit.APIError(err)
			}
			c := meta.FindStatusCondition(o.Status.Conditions, sfv1.ConditionConnected)
			switch {
			case o.Status.LastHandledReconcileAt != value:
				return "check requested at " + value + " not handled yet"
			case c == nil || c.Status != metav1.ConditionTrue:
				return fmt.Sprintf("Connected is %v", c)
			case s.fake.CallsFor(org) == calls:
				return "no call reached the fake"
			}
			return ""
		})
	}
	spent := s.fake.SpentTokensPresented() - spentBefore
	t.Logf("upgraded to %s with %d token exchanges (each rotating the refresh token) during the rollout; every Secret holds its org's live token\n"+
		"| token exchanges | spent tokens presented | concurrent refreshes refused |\n|---|---|---|\n| %d | %d | %d |",
		s.env.nextImage, rotations, rotations, spent, s.fake.ConcurrentRefreshesRefused())
	if spent != 0 {
		t.Fatalf("%d spent refresh tokens presented during the rollout: two managers exchanged one chain", spent)
	}
}

// uninstall removes the demo (the manager releases its finalizers) and then the operator, and
// checks that nothing of it is left.
func (s *suite) uninstall(t *testing.T) {
	s.kubectl("delete", "namespace", demo.Namespace, "--timeout=2m")
	s.kubectl("delete", "-k", s.dir, "--timeout=3m")
	for _, kind := range []string{"validatingwebhookconfigurations", "mutatingwebhookconfigurations", "clusterroles", "crd"} {
		if out := s.kubectl("get", kind, "-o", "name"); strings.Contains(out, "salesforce") {
			t.Fatalf("left behind after uninstall:\n%s", out)
		}
	}
}

// helmChart installs the chart with its defaults (the self-managed webhook certificate), seeds
// the demo again, and checks the orgs connect and a webhook refuses.
func (s *suite) helmChart(t *testing.T) {
	if s.env.helm == "" {
		t.Skip("E2E_HELM is not set")
	}
	repo, tag, _ := strings.Cut(s.env.nextImage, ":")
	write(t, filepath.Join(s.dir, "values.yaml"), fmt.Sprintf(`image: {repository: %q, tag: %q, pullPolicy: Never}
extraArgs: ["--salesforce-allowed-hosts=%s", "--salesforce-ca-file=%s"]
extraVolumes: [{name: e2e-fake-ca, configMap: {name: e2e-fake-ca}}]
extraVolumeMounts: [{name: e2e-fake-ca, mountPath: %q, readOnly: true}]
`, repo, tag, s.fake.Host(), caFile, filepath.Dir(caFile)))
	s.kubectl("create", "namespace", "sfops-helm")
	s.kubectl("-n", "sfops-helm", "create", "configmap", "e2e-fake-ca", "--from-file=ca.crt="+filepath.Join(s.dir, "fake-ca.crt"))
	out, err := run(s.env.helm, "--kubeconfig", s.env.kubeconfig, "install", "sfops", filepath.Join(s.env.repo, "charts", "salesforce-operator"),
		"-n", "sfops-helm", "-f", filepath.Join(s.dir, "values.yaml"), "--wait", "--timeout", "4m")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		s.kubectlErr("delete", "namespace", demo.Namespace, "--timeout=2m")
		run(s.env.helm, "--kubeconfig", s.env.kubeconfig, "uninstall", "sfops", "-n", "sfops-helm", "--wait")
		s.kubectlErr("delete", "namespace", "sfops-helm", "--timeout=2m")
	})
	s.demoOrgsConnect(t)
	s.webhooksRefuse(t)
}

// --- helpers ---

func (s *suite) managerPods(t *testing.T) []corev1.Pod {
	var pods corev1.PodList
	if err := s.c.List(context.Background(), &pods, client.InNamespace(system),
		client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		t.Fatal("no manager pod is running")
	}
	return running
}

// leaderPod is the pod holding the manager's Lease (its identity is <hostname>_<uuid>).
func (s *suite) leaderPod(t *testing.T) string {
	var name string
	testkit.Eventually(t, 2*time.Minute, "a leader", func() string {
		var lease coordinationv1.Lease
		if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: system, Name: electionID}, &lease); err != nil {
			return testkit.APIError(err)
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return "the lease has no holder"
		}
		name, _, _ = strings.Cut(*lease.Spec.HolderIdentity, "_")
		return ""
	})
	return name
}

// requestCheck asks for a check now, as `kubectl salesforce check` does, and returns the value.
func (s *suite) requestCheck(t *testing.T, name string) string {
	v, err := s.tryRequestCheck(name)
	if err != nil {
		t.Logf("requesting a check of %s: %s", name, testkit.APIError(err))
	}
	return v
}

func (s *suite) tryRequestCheck(name string) (string, error) {
	v := time.Now().UTC().Format(time.RFC3339Nano)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, sfv1.ReconcileRequestedAtAnnotation, v)
	org := &sfv1.SalesforceOrg{ObjectMeta: metav1.ObjectMeta{Namespace: demo.Namespace, Name: name}}
	return v, s.c.Patch(context.Background(), org, client.RawPatch("application/merge-patch+json", []byte(patch)))
}

func (s *suite) waitConnected(t *testing.T, name string) {
	s.kubectl("-n", demo.Namespace, "wait", "--for=condition=Connected", "salesforceorg/"+name, "--timeout=2m")
}

func (s *suite) rollout(ns, name string, timeout time.Duration) {
	if out, err := s.kubectlErr("-n", ns, "rollout", "status", "deployment/"+name, "--timeout="+timeout.String()); err != nil {
		s.dumpManager()
		s.t.Fatalf("rollout of %s/%s: %v\n%s", ns, name, err, out)
	}
}

func (s *suite) describeOrgs(t *testing.T) {
	out, _ := s.kubectlErr("-n", demo.Namespace, "get", "salesforceorgs", "-o", "wide")
	t.Log(out)
}

func (s *suite) dumpOnFailure() {
	if s.t.Failed() {
		s.dumpManager()
	}
}

// dumpManager prints the manager pods' state and logs: the operator never logs a credential, so
// they are safe to show.
func (s *suite) dumpManager() {
	out, _ := s.kubectlErr("-n", system, "get", "pods,events", "-o", "wide")
	s.t.Log(out)
	out, _ = s.kubectlErr("-n", system, "logs", "-l", "control-plane=controller-manager", "--tail=60", "--prefix")
	s.t.Log(out)
}

func (s *suite) apply(yaml string) {
	f := filepath.Join(s.dir, "apply.yaml")
	write(s.t, f, yaml)
	s.kubectl("apply", "--server-side", "-f", f)
}

func (s *suite) kubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectlErr(args...)
	if err != nil {
		s.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *suite) kubectlErr(args ...string) (string, error) {
	return run("kubectl", append([]string{"--kubeconfig", s.env.kubeconfig}, args...)...)
}

func run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// containerID is the manager container's containerd ID.
func containerID(t *testing.T, p corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "manager" {
			if _, id, ok := strings.Cut(cs.ContainerID, "://"); ok {
				return id
			}
		}
	}
	t.Fatalf("pod %s has no manager container ID", p.Name)
	return ""
}

// pidOfContainer finds the container's first process by its cgroup (kubepods/.../<id>).
func pidOfContainer(t *testing.T, id string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte(id)) {
			continue
		}
		if best == 0 || pid < best {
			best = pid
		}
	}
	if best == 0 {
		t.Fatalf("no process in /proc belongs to container %s", id)
	}
	return best
}

// procFields parses /proc/<pid>/status into its "Key:\tvalue" fields.
func procFields(status string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// refreshToken is an auth URL's refresh token (force://id:secret:token@host), never printed.
func refreshToken(authURL string) string {
	u, err := salesforce.ParseAuthURL(strings.TrimSpace(authURL))
	if err != nil {
		return ""
	}
	return u.RefreshToken
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func firstLine(s string) string { return strings.SplitN(strings.TrimSpace(s), "\n", 2)[0] }

func ptr[T any](v T) *T { return &v }
