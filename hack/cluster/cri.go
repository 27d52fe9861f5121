package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criClient talks to the CRI of the cluster's containerd, as the kubelet does.
func (c *cluster) criClient() (runtimeapi.RuntimeServiceClient, func(), error) {
	conn, err := grpc.NewClient("unix://"+c.containerdSock(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }, nil
}

// criReady says whether containerd's CRI plugin answers and reports the runtime and the
// network (the CNI configuration) ready.
func (c *cluster) criReady(ctx context.Context) error {
	rt, done, err := c.criClient()
	if err != nil {
		return err
	}
	defer done()
	resp, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, cond := range resp.GetStatus().GetConditions() {
		if !cond.Status {
			return fmt.Errorf("CRI condition %s is false: %s %s", cond.Type, cond.Reason, cond.Message)
		}
	}
	return nil
}

// removePods stops and removes every pod sandbox, as the kubelet would: containerd then tears
// down each pod's network (CNI DEL: its veth, its address, its CNI-* chains) and unmounts its
// namespaces. What a failure leaves, the sweep after it (cgroups, mounts, chains) removes.
func (c *cluster) removePods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, done, err := c.criClient()
	if err != nil {
		return err
	}
	defer done()
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	if n := len(resp.Items); n > 0 {
		logf("removing %d pod sandboxes", n)
	}
	var first error
	for _, p := range resp.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil && first == nil {
			first = fmt.Errorf("stopping pod %s/%s: %w", p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil && first == nil {
			first = fmt.Errorf("removing pod %s/%s: %w", p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), err)
		}
	}
	return first
}
