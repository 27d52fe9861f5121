package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const checkNamespace = "e2e-cluster-check"

// check is the smoke test of a running cluster, with the probe image: a Deployment behind a
// ClusterIP Service answers from the host, from a pod, and through kubectl exec; a pod reaches
// the API server at https://10.96.0.1 with its service-account token. It removes its namespace
// at the end, whatever the outcome.
func (c *cluster) check(probeTar, probeImage string) error {
	if err := c.healthy(); err != nil {
		return fmt.Errorf("%w: %v", errNotRunning, err)
	}
	kubectl := filepath.Join(c.bin, "kubectl")
	if !fileExists(kubectl) {
		kubectl = "kubectl"
	}
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig())
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	step := func(format string, args ...any) { fmt.Printf("check: "+format+"\n", args...) }

	names, err := c.importImages(probeTar)
	if err != nil {
		return err
	}
	step("imported %s", strings.Join(names, ", "))
	defer func() {
		if _, err := run("", "delete", "namespace", checkNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	if _, err := run(strings.ReplaceAll(workload, "IMAGE", probeImage), "apply", "-f", "-"); err != nil {
		return err
	}
	t := time.Now()
	if _, err := run("", "-n", checkNamespace, "rollout", "status", "deployment/probe", "--timeout=90s"); err != nil {
		return err
	}
	step("deployment probe available (2 pods from %s) in %s", probeImage, since(t))
	ip, err := run("", "-n", checkNamespace, "get", "service", "probe", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return err
	}
	t = time.Now()
	if err := c.waitFor("service probe at "+ip, 30*time.Second, "kube-proxy", func() error {
		return plainGet("http://" + ip + "/")
	}); err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ip + "/")
	if err != nil {
		return err
	}
	body := make([]byte, 200)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	step("from the host: GET http://%s/ answered %q (after %s)", ip, strings.TrimSpace(string(body[:n])), since(t))

	pod := strings.NewReplacer("IMAGE", probeImage, "CLUSTERIP", ip).Replace(clientPod)
	if _, err := run(pod, "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := run("", "-n", checkNamespace, "wait", "pod/client", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s"); err != nil {
		logs, _ := run("", "-n", checkNamespace, "logs", "client")
		return fmt.Errorf("%w\nclient's log:\n%s", err, logs)
	}
	logs, err := run("", "-n", checkNamespace, "logs", "client")
	if err != nil {
		return err
	}
	step("from pod client (kubectl logs):\n%s", indent(logs))
	out, err := run("", "-n", checkNamespace, "exec", "deployment/probe", "--", "/manager", "get", "http://"+ip+"/", "https://"+kubernetesIP+"/readyz")
	if err != nil {
		return err
	}
	step("from a probe pod (kubectl exec):\n%s", indent(out))
	step("passed")
	return nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// workload is the probe behind a ClusterIP Service; the image's entrypoint is the probe binary.
const workload = `apiVersion: v1
kind: Namespace
metadata:
  name: ` + checkNamespace + `
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe
  namespace: ` + checkNamespace + `
spec:
  replicas: 2
  selector:
    matchLabels: {app: probe}
  template:
    metadata:
      labels: {app: probe}
    spec:
      containers:
      - name: probe
        image: IMAGE
        imagePullPolicy: Never
        args: [serve, ":8080"]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: probe
  namespace: ` + checkNamespace + `
spec:
  selector: {app: probe}
  ports:
  - port: 80
    targetPort: 8080
`

// clientPod fetches the Service and the API server's version with its service account.
const clientPod = `apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: ` + checkNamespace + `
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: IMAGE
    imagePullPolicy: Never
    args: [get, "http://CLUSTERIP/", "https://` + kubernetesIP + `/version"]
`
