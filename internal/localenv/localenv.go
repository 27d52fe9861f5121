// Package localenv starts a real local control plane (kube-apiserver and etcd, built by
// hack/envtest) with this project's CRDs and admission webhooks installed. The tests and the
// local launcher of `make run` share it; it is never used in a deployed operator.
package localenv

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// New returns an environment for the repository at root, not yet started. The binaries come
// from $KUBEBUILDER_ASSETS, else <root>/bin/k8s (`make envtest` builds them there).
func New(root string, webhooks bool) (*envtest.Environment, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		return nil, fmt.Errorf("no kube-apiserver in %s: run `make envtest` first (it builds the control-plane binaries), or point KUBEBUILDER_ASSETS at a directory that has them", assets)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
		}
	}
	return env, nil
}
