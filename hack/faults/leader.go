package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Leader election under faults: the API server frozen under the leader, and the leader stopped
// gracefully while a standby runs. Judged from outside like the rest: the manager process, the
// Lease, and whether a "Test connection" request is handled.

// leaseName is the manager's LeaderElectionID.
const leaseName = "salesforce-operator.sfops.io"

const (
	leaderTimeout = 60 * time.Second // a manager's start until it holds a free lease
	afterFault    = 30 * time.Second // the fault's end until the operator checks orgs again
	handoverLimit = 20 * time.Second // SIGTERM to the leader until the standby handled a check
	leaseLostLog  = "leader election lost"
)

// leaseSettings are one set of the manager's leader-election flags.
type leaseSettings struct {
	Name        string   // in the table
	Slug        string   // in the namespace
	Args        []string // none: the manager's defaults
	MustSurvive bool     // an API-server outage of the configured length must not stop the manager
}

var outageSettings = []leaseSettings{
	{Name: "60s / 45s / 5s (shipped defaults)", Slug: "shipped", MustSurvive: true},
	{Name: "15s / 10s / 2s (controller-runtime's old defaults)", Slug: "old", Args: []string{
		"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"}},
}

// apiServer is the kube-apiserver process the harness started, found by its binary and port.
type apiServer struct{ binary, port string }

// findAPIServer names the control plane's kube-apiserver binary and the port of host, its URL.
func findAPIServer(env *envtest.Environment, host string) (apiServer, error) {
	u, err := url.Parse(host)
	if err != nil || u.Port() == "" {
		return apiServer{}, fmt.Errorf("no port in the API server's address %q", host)
	}
	binary := filepath.Join(env.BinaryAssetsDirectory, "kube-apiserver")
	if env.ControlPlane.APIServer != nil && env.ControlPlane.APIServer.Path != "" {
		binary = env.ControlPlane.APIServer.Path
	}
	return apiServer{binary: binary, port: u.Port()}, nil
}

// leaderElectionCases runs the outage with each setting (when cfg.Outage > 0) and the hand-over.
func (h *harness) leaderElectionCases(ctx context.Context) ([]OutageResult, *HandoverResult, error) {
	var outages []OutageResult
	if h.cfg.Outage > 0 {
		for _, s := range outageSettings {
			r, err := h.outage(ctx, s)
			if err != nil {
				return outages, nil, fmt.Errorf("API-server outage, %s: %w", s.Name, err)
			}
			outages = append(outages, r)
		}
	}
	r, err := h.handover(ctx)
	if err != nil {
		return outages, nil, fmt.Errorf("lease hand-over: %w", err)
	}
	return outages, &r, nil
}

func leaderArgs(ns string, extra ...string) []string {
	return append([]string{"--leader-elect", "--leader-election-namespace=" + ns}, extra...)
}

// outage starts a leading manager with settings s, freezes the API server for cfg.Outage (less
// when the manager exits meanwhile), and then asks whether the manager still runs, still holds
// the lease and still checks orgs.
func (h *harness) outage(ctx context.Context, s leaseSettings) (OutageResult, error) {
	r, began := OutageResult{Settings: s}, time.Now()
	ns := "outage-" + s.Slug
	m, orgs, holder, err := h.startLeader(ctx, ns, s.Args...)
	if m != nil {
		defer func() { m.stop(syscall.SIGKILL, killExit) }() // on the error paths
	}
	if err != nil {
		return r, err
	}

	frozen, err := h.freezeAPIServer(ctx, h.cfg.Outage, m)
	if err != nil {
		return r, err
	}
	resumed := time.Now()
	r.Frozen = resumed.Sub(frozen)
	if !m.exited() {
		marker, err := h.requestChecks(ctx, orgs)
		if err != nil {
			return r, err
		}
		verdicts, err := h.settle(ctx, orgs, marker, afterFault)
		if err != nil {
			return r, err
		}
		r.Handled = time.Since(resumed)
		switch v := verdicts[orgs[0]]; {
		case m.exited():
		case v != ok:
			r.Problem = "running, but the check requested after the resume: " + v
		default:
			// Renewed since the resume: it still leads, not merely a stale record of it.
			renewedSince := func(l *coordinationv1.Lease) bool {
				return holderOf(l) == holder && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(resumed)
			}
			if _, err := h.waitLease(ctx, ns, m, afterFault, renewedSince); err != nil {
				r.Problem = "running and checking, but " + err.Error()
			}
		}
	}
	if m.exited() {
		r.Exited, r.ExitedAfter, r.ExitReason = true, m.exitedAt.Sub(frozen), exitReason(m)
	}
	h.progress("API server frozen %s under a leader with %s: %s (the case took %s)",
		seconds(r.Frozen), s.Name, r.Outcome(), time.Since(began).Round(time.Second))
	m.stop(syscall.SIGTERM, gracefulExit)
	return r, h.deleteOrgs(ctx, orgs)
}

// handover starts a leader and then a standby with the shipped settings, stops the leader with
// SIGTERM, and times the standby's taking over: the lease, then a handled check.
func (h *harness) handover(ctx context.Context) (HandoverResult, error) {
	r, began := HandoverResult{Limit: handoverLimit}, time.Now()
	ns := "handover"
	leader, orgs, holder, err := h.startLeader(ctx, ns)
	if leader != nil {
		defer func() { leader.stop(syscall.SIGKILL, killExit) }() // on the error paths
	}
	if err != nil {
		return r, err
	}
	standby, err := h.managers.start(leaderArgs(ns)...)
	if err != nil {
		return r, err
	}
	defer func() { standby.stop(syscall.SIGKILL, killExit) }() // on the error paths
	if err := waitLog(ctx, standby, "attempting to acquire leader lease", leaderTimeout); err != nil {
		return r, fmt.Errorf("the standby: %w", err)
	}
	if _, err := h.waitLease(ctx, ns, standby, 0, func(l *coordinationv1.Lease) bool { return holderOf(l) == holder }); err != nil {
		return r, fmt.Errorf("the leader's lease, with the standby running: %w", err)
	}

	stopped := time.Now()
	if !leader.stop(syscall.SIGTERM, gracefulExit) {
		return r, fmt.Errorf("the leader did not exit within %s of SIGTERM; its log: %s", gracefulExit, leader.log)
	}
	r.LeaderExited = leader.exitedAt.Sub(stopped)
	marker, err := h.requestChecks(ctx, orgs)
	if err != nil {
		return r, err
	}
	taken := func(l *coordinationv1.Lease) bool { return holderOf(l) != "" && holderOf(l) != holder }
	if _, err := h.waitLease(ctx, ns, standby, afterFault, taken); err != nil {
		r.Problem = "the standby " + err.Error()
	} else {
		r.Acquired = time.Since(stopped)
		verdicts, err := h.settle(ctx, orgs, marker, afterFault)
		if err != nil {
			return r, err
		}
		r.Handled = time.Since(stopped)
		if v := verdicts[orgs[0]]; v != ok {
			r.Problem = "the new leader, on the check requested after the hand-over: " + v
		}
	}
	h.progress("lease hand-over on SIGTERM: %s (the case took %s)", r.Outcome(), time.Since(began).Round(time.Second))
	standby.stop(syscall.SIGTERM, gracefulExit)
	return r, h.deleteOrgs(ctx, orgs)
}

// startLeader creates ns and one org in it, starts a manager electing its leader in ns, and
// returns once the manager holds the lease and has checked the org. The manager is returned also
// with an error, for the caller to stop.
func (h *harness) startLeader(ctx context.Context, ns string, extra ...string) (*manager, []*org, string, error) {
	if err := h.createNamespace(ctx, ns); err != nil {
		return nil, nil, "", err
	}
	marker := h.newMarker()
	o, err := h.createOrg(ctx, ns, "org", marker)
	if err != nil {
		return nil, nil, "", err
	}
	orgs := []*org{o}
	m, err := h.managers.start(leaderArgs(ns, extra...)...)
	if err != nil {
		return nil, orgs, "", err
	}
	l, err := h.waitLease(ctx, ns, m, leaderTimeout, func(l *coordinationv1.Lease) bool { return holderOf(l) != "" })
	if err != nil {
		return m, orgs, "", fmt.Errorf("the first manager never led: %w", err)
	}
	verdicts, err := h.settle(ctx, orgs, marker, h.cfg.Settle)
	if err == nil && verdicts[o] != ok {
		err = fmt.Errorf("the leader did not connect the org: %s; its log: %s", verdicts[o], m.log)
	}
	return m, orgs, holderOf(l), err
}

// freezeAPIServer stops the kube-apiserver with SIGSTOP and resumes it with SIGCONT after d, or
// as soon as m exits or ctx ends. It never returns with the API server stopped, panics included.
// It returns when the freeze began.
func (h *harness) freezeAPIServer(ctx context.Context, d time.Duration, m *manager) (time.Time, error) {
	pid, err := apiServerPID(h.apiServer.binary, h.apiServer.port)
	if err != nil {
		return time.Time{}, err
	}
	frozen := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return frozen, fmt.Errorf("SIGSTOP to the API server: %w", err)
	}
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }() // whatever happens below
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-m.done:
	case <-ctx.Done():
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return frozen, fmt.Errorf("SIGCONT to the API server (pid %d; it may still be stopped): %w", pid, err)
	}
	return frozen, ctx.Err()
}

// waitLease polls the leader-election Lease in ns until done says yes, and returns it; it fails
// when m exits first or after timeout (0: one look).
func (h *harness) waitLease(ctx context.Context, ns string, m *manager, timeout time.Duration, done func(*coordinationv1.Lease) bool) (*coordinationv1.Lease, error) {
	deadline := time.Now().Add(timeout)
	for {
		l := &coordinationv1.Lease{}
		err := h.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaseName}, l)
		switch {
		case err == nil && done(l):
			return l, nil
		case err != nil && !apierrors.IsNotFound(err):
			return nil, err
		case m.exited():
			return nil, fmt.Errorf("exited; its log: %s", m.log)
		case !time.Now().Before(deadline):
			return nil, fmt.Errorf("the lease was not as awaited within %s (holder %q); its log: %s", timeout, holderOf(l), m.log)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func holderOf(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitLog waits until m's log holds line, in any case (a fixed message, never a credential).
func waitLog(ctx context.Context, m *manager, line string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(m.log)
		switch {
		case err != nil:
			return err
		case logHolds(b, line):
			return nil
		case m.exited():
			return fmt.Errorf("exited before logging %q; its log: %s", line, m.log)
		case time.Now().After(deadline):
			return fmt.Errorf("did not log %q within %s; its log: %s", line, timeout, m.log)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// exitReason says how an exited manager ended: its exit status, and "leader election lost" when
// its log says so.
func exitReason(m *manager) string {
	reason := m.cmd.ProcessState.String()
	if b, err := os.ReadFile(m.log); err == nil && logHolds(b, leaseLostLog) {
		reason += ", " + leaseLostLog
	}
	return reason
}

func logHolds(log []byte, line string) bool {
	return bytes.Contains(bytes.ToLower(log), bytes.ToLower([]byte(line)))
}
