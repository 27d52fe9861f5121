package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/demo"
	"github.com/sfops/salesforce-operator/internal/testkit"
)

// orgUserRole is config/rbac's org-user ClusterRole as config/default installs it
// (its namePrefix).
const orgUserRole = "salesforce-operator-org-user"

// pipelineHandOut is the README's "Use an org from a pipeline", in the cluster: a pipeline's
// ServiceAccount, bound to the shipped org-user ClusterRole, creates a
// SalesforceAccessToken (impersonated, as its pipeline's kubectl would), and a Job running as it
// mounts the hand-out Secret with envFrom and calls the org's REST API with the access token, at
// the instance URL the Secret names, through the fake's Service. The Job's image is hack/cluster's
// probe (the node has no curl image): `probe get -bearer-env SF_ACCESS_TOKEN` sends that variable
// as the bearer token and prints the names, never the values, of its environment. The Pod sees
// nothing but the Secret's keys, and no value of them is a refresh token; the ServiceAccount may
// not read the org's auth Secret. A ServiceAccount that may create SalesforceAccessTokens but has
// no `use` on the org is refused at admission. Deleting the hand-out deletes the Secret and
// revokes the token.
func (s *suite) pipelineHandOut(t *testing.T) {
	if s.env.probe == "" {
		t.Skip("E2E_PROBE_IMAGE is not set (make e2e imports hack/cluster's probe image and sets it)")
	}
	ctx := context.Background()
	ns, orgName, name := demo.Namespace, "acme-uat", "deploy-uat"
	deployer, intruder := "system:serviceaccount:"+ns+":deployer", "system:serviceaccount:"+ns+":intruder"
	s.apply(fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer-uses-orgs, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %[2]s}
subjects: [{kind: ServiceAccount, name: deployer, namespace: %[1]s}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: intruder, namespace: %[1]s}
---
# It may create SalesforceAccessTokens, not use an org: only admission stands in its way.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: access-token-creator, namespace: %[1]s}
rules: [{apiGroups: [salesforce.sfops.io], resources: [salesforceaccesstokens], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: intruder-creates-access-tokens, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: access-token-creator}
subjects: [{kind: ServiceAccount, name: intruder, namespace: %[1]s}]
`, ns, orgUserRole))
	s.kubectlErr("-n", ns, "delete", "configmap", "e2e-fake-ca", "--ignore-not-found")
	s.kubectl("-n", ns, "create", "configmap", "e2e-fake-ca", "--from-file=ca.crt="+filepath.Join(s.dir, "fake-ca.crt"))

	request := filepath.Join(s.dir, "access.yaml")
	write(t, request, fmt.Sprintf(`apiVersion: salesforce.sfops.io/v1alpha1
kind: SalesforceAccessToken
metadata: {name: %s, namespace: %s}
spec:
  orgRef: {name: %s}
  lifetime: 30m
`, name, ns, orgName))
	out, err := s.kubectlErr("--as="+intruder, "create", "-f", request)
	if err == nil || !strings.Contains(out, "denied the request") || !strings.Contains(out, `verb "use"`) {
		t.Fatalf("a ServiceAccount without use on %s asked for access: want a webhook refusal naming the verb use, got err=%v:\n%s", orgName, err, out)
	}
	t.Logf("refused: %s", firstLine(out))

	s.kubectl("--as="+deployer, "create", "-f", request)
	if out, err := s.kubectlErr("--as="+deployer, "-n", ns, "wait", "--for=condition=Ready", "salesforceaccesstoken/"+name, "--timeout=2m"); err != nil {
		out2, _ := s.kubectlErr("-n", ns, "get", "sfaccess", "-o", "wide")
		t.Fatalf("waiting for %s: %v\n%s\n%s", name, err, out, out2)
	}
	t.Logf("kubectl get sfaccess:\n%s", s.kubectl("--as="+deployer, "-n", ns, "get", "sfaccess"))

	var handOut corev1.Secret
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &handOut); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	var auth corev1.Secret
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: orgName + "-auth"}, &auth); err != nil {
		t.Fatal(testkit.APIError(err))
	}
	refresh := refreshToken(string(auth.Data[sfv1.DefaultAuthSecretKey]))
	if refresh == "" {
		t.Fatalf("%s-auth holds no auth URL", orgName)
	}
	keys := make([]string, 0, len(handOut.Data))
	for k, v := range handOut.Data {
		keys = append(keys, k)
		if strings.Contains(string(v), refresh) || s.fake.RefreshTokenLive(string(v)) {
			t.Errorf("the hand-out Secret's key %s holds a refresh token", k) // never its value
		}
	}
	token := string(handOut.Data[sfv1.AccessTokenKey])
	if !s.fake.AccessTokenLive(token) {
		t.Fatal("the hand-out Secret's SF_ACCESS_TOKEN opens no session")
	}
	if out, err := s.kubectlErr("--as="+deployer, "-n", ns, "auth", "can-i", "get", "secret/"+orgName+"-auth"); err == nil || strings.TrimSpace(out) != "no" {
		t.Errorf("the pipeline's ServiceAccount may read %s-auth (can-i: %s)", orgName, strings.TrimSpace(out))
	}

	resources, calls := s.fake.Calls("resources"), s.fake.CallsFor(s.orgs[orgName])
	s.kubectlErr("-n", ns, "delete", "job", name, "--ignore-not-found", "--wait")
	s.apply(fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  backoffLimit: 0
  template:
    spec:
      serviceAccountName: deployer
      automountServiceAccountToken: false
      enableServiceLinks: false
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: deploy
        image: %[3]s
        imagePullPolicy: Never
        # What "sf project deploy start" does with SF_TARGET_ORG and SF_ORG_INSTANCE_URL from the
        # environment: the org's REST API at the instance URL with the access token.
        args: [get, -ca, %[4]s, -bearer-env, %[5]s, -env-names, "$(%[6]s)/services/data/v65.0"]
        envFrom: [{secretRef: {name: %[1]s}}]
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: fake-ca, mountPath: %[7]s, readOnly: true}]
      volumes: [{name: fake-ca, configMap: {name: e2e-fake-ca}}]
`, name, ns, s.env.probe, caFile, sfv1.AccessTokenKey, sfv1.AccessInstanceURLKey, filepath.Dir(caFile)))
	_, werr := s.kubectlErr("-n", ns, "wait", "--for=condition=Complete", "job/"+name, "--timeout=2m")
	logs, _ := s.kubectlErr("-n", ns, "logs", "job/"+name)
	if werr != nil {
		pods, _ := s.kubectlErr("-n", ns, "describe", "pods", "-l", "job-name="+name)
		t.Fatalf("the Job did not complete: %v\nlogs:\n%s\n%s", werr, logs, pods)
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) < 2 || !strings.Contains(lines[1], " 200 OK") {
		t.Fatalf("the Job's call to the org: want 200 OK, got:\n%s", logs)
	}
	t.Logf("the Job: %.200s", lines[1])
	if s.fake.Calls("resources") == resources || s.fake.CallsFor(s.orgs[orgName]) == calls {
		t.Errorf("the fake saw no call of %s's from the Job", orgName)
	}
	env, ok := strings.CutPrefix(lines[0], "env: ")
	if !ok {
		t.Fatalf("the Job printed no env line:\n%s", logs)
	}
	for _, n := range strings.Fields(env) {
		// The image's PATH and SSL_CERT_FILE, the runtime's HOSTNAME and HOME, the kubernetes
		// Service's KUBERNETES_*; everything else is the Secret's.
		if !slices.Contains(keys, n) && !slices.Contains([]string{"PATH", "SSL_CERT_FILE", "HOSTNAME", "HOME"}, n) && !strings.HasPrefix(n, "KUBERNETES_") {
			t.Errorf("the Job's Pod sees %s, which is not a key of the hand-out Secret", n)
		}
	}
	for _, k := range keys {
		if !strings.Contains(" "+env+" ", " "+k+" ") {
			t.Errorf("the Job's Pod does not see the hand-out Secret's %s", k)
		}
	}

	s.kubectl("--as="+deployer, "-n", ns, "delete", "salesforceaccesstoken", name, "--timeout=1m")
	testkit.Eventually(t, time.Minute, "the hand-out Secret deleted and its token revoked", func() string {
		err := s.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
		switch {
		case !apierrors.IsNotFound(err):
			return fmt.Sprintf("the Secret is still there (%s)", testkit.APIError(err))
		case s.fake.AccessTokenLive(token):
			return "the token still opens a session"
		}
		return ""
	})
	s.kubectl("-n", ns, "delete", "job", name, "--wait=false")
}
