package main

import (
	"fmt"
	"strings"
	"syscall"
	"time"
)

// Cell is the outcome of the trials of one stop signal and one check delay.
type Cell struct {
	Signal       syscall.Signal
	Delay        time.Duration
	Trials       int
	TrialsLosing int
	Orgs         int
	Lost         int
	// InWindow counts the SIGKILL losses inside the write window: the kill came after Salesforce
	// issued a rotated token and before one API write could store it, or while the token request
	// was in flight (issued just after the kill). No process can avoid them.
	InWindow  int
	SlowExits int            // stopped managers that had to be killed after gracefulExit
	Why       map[string]int // loss reason → count
}

// RevertResult is the outcome of one revert case: "" when the credential was kept, else why not.
type RevertResult struct {
	AcrossRestart bool
	Verdict       string
}

// OutageResult is what a leading manager did when the API server froze under it.
type OutageResult struct {
	Settings    leaseSettings
	Frozen      time.Duration // how long the API server was stopped
	Exited      bool
	ExitedAfter time.Duration // from the freeze's start
	ExitReason  string        // exit status, and "leader election lost" when logged
	Handled     time.Duration // from the resume until a check requested then was handled
	Problem     string        // running, but not leading or not checking
}

// Survived says whether the manager still runs, leads and checks orgs.
func (o OutageResult) Survived() bool { return !o.Exited && o.Problem == "" }

func (o OutageResult) Outcome() string {
	switch {
	case o.Exited:
		return fmt.Sprintf("exited %s after the freeze began (%s)", seconds(o.ExitedAfter), o.ExitReason)
	case o.Problem != "":
		return o.Problem
	}
	return fmt.Sprintf("survived: still leads, checked an org %s after the resume", seconds(o.Handled))
}

// HandoverResult times a standby's taking over from a leader stopped with SIGTERM, from the
// signal.
type HandoverResult struct {
	LeaderExited, Acquired, Handled time.Duration
	Limit                           time.Duration // Handled beyond it fails the run
	Problem                         string
}

func (h HandoverResult) Failed() bool { return h.Problem != "" || h.Handled > h.Limit }

func (h HandoverResult) Outcome() string {
	if h.Problem != "" {
		return h.Problem
	}
	return fmt.Sprintf("the leader exited after %s, the standby held the lease after %s and handled a check after %s",
		seconds(h.LeaderExited), seconds(h.Acquired), seconds(h.Handled))
}

// Report is what a run found.
type Report struct {
	Config Config
	Cells  []Cell
	Revert []RevertResult
	// LeakingLogs names the manager logs that hold a token the fake issued (never which).
	LeakingLogs []string
	Outages     []OutageResult
	Handover    *HandoverResult
}

// Empty says whether the run got as far as a result.
func (r *Report) Empty() bool {
	return len(r.Cells)+len(r.Revert)+len(r.Outages) == 0 && r.Handover == nil
}

// Failed says whether a credential was lost or leaked into a manager's log, or leader election
// failed where it must not.
func (r *Report) Failed() bool { return len(r.Problems()) > 0 }

// Problems says in a line each why the run failed.
func (r *Report) Problems() []string {
	var out []string
	if n := r.Losses(); n > 0 {
		out = append(out, fmt.Sprintf("%d org credentials lost", n))
	}
	if len(r.LeakingLogs) > 0 {
		out = append(out, fmt.Sprintf("%d manager logs holding a token", len(r.LeakingLogs)))
	}
	for _, o := range r.Outages {
		if o.Settings.MustSurvive && !o.Survived() {
			out = append(out, fmt.Sprintf("API server frozen %s, %s: %s", seconds(o.Frozen), o.Settings.Name, o.Outcome()))
		}
	}
	if h := r.Handover; h != nil && h.Failed() {
		out = append(out, fmt.Sprintf("lease hand-over (limit %s): %s", seconds(h.Limit), h.Outcome()))
	}
	return out
}

// Losses counts lost credentials, the revert cases included.
func (r *Report) Losses() int {
	n := 0
	for _, c := range r.Cells {
		n += c.Lost
	}
	for _, rv := range r.Revert {
		if rv.Verdict != ok {
			n++
		}
	}
	return n
}

// Markdown is the table, the reasons for any loss, the revert cases, and the
// leader-election tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	if len(r.Cells) > 0 {
		r.rotationMarkdown(&b)
	}
	r.revertMarkdown(&b)
	if len(r.Outages) > 0 {
		b.WriteString("\nThe API server frozen (SIGSTOP) under the leading manager, then resumed (SIGCONT); the lease's settings:\n\n")
		b.WriteString("| lease duration / renew deadline / retry period | API server frozen | manager | time |\n|---|---|---|---|\n")
		for _, o := range r.Outages {
			frozen := seconds(o.Frozen)
			if o.Exited && o.ExitedAfter <= o.Frozen {
				frozen += " (resumed when the manager exited)"
			}
			switch {
			case o.Exited:
				fmt.Fprintf(&b, "| %s | %s | exited: %s | %s after the freeze began |\n", o.Settings.Name, frozen, o.ExitReason, seconds(o.ExitedAfter))
			case o.Problem != "":
				fmt.Fprintf(&b, "| %s | %s | running: %s | |\n", o.Settings.Name, frozen, o.Problem)
			default:
				fmt.Fprintf(&b, "| %s | %s | survived: still leads | checked an org %s after the resume |\n", o.Settings.Name, frozen, seconds(o.Handled))
			}
		}
	}
	if h := r.Handover; h != nil {
		b.WriteString("\nTwo managers with the shipped settings; the leader stopped with SIGTERM (times from the signal):\n\n")
		b.WriteString("| leader exited | standby holds the lease | standby handled a check | limit |\n|---|---|---|---|\n")
		if h.Problem != "" {
			fmt.Fprintf(&b, "| %s | %s | | %s |\n", seconds(h.LeaderExited), h.Problem, seconds(h.Limit))
		} else {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", seconds(h.LeaderExited), seconds(h.Acquired), seconds(h.Handled), seconds(h.Limit))
		}
		b.WriteString("\n(The standby tries every 5–11 s: client-go stretches the retry period by a random 0–120 %.)\n")
	}
	if len(r.LeakingLogs) > 0 {
		fmt.Fprintf(&b, "\nA token the fake issued appears in these manager logs: %s\n", strings.Join(r.LeakingLogs, ", "))
	}
	return b.String()
}

// rotationMarkdown is the table and the reasons for any loss.
func (r *Report) rotationMarkdown(b *strings.Builder) {
	cfg := r.Config
	fmt.Fprintf(b, "The manager as its own process, the fake Salesforce rotating on every refresh, %d orgs per trial, "+
		"the manager stopped at a random moment 0–%d ms after its first token request (seed %d):\n\n",
		cfg.Orgs, cfg.StopMax.Milliseconds(), cfg.Seed)
	b.WriteString("| stop | Salesforce check answers in | trials losing a credential | org credentials lost | lost inside the write window (SIGKILL only) |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, c := range r.Cells {
		stop := signalName(c.Signal)
		if c.Signal == syscall.SIGTERM {
			stop += " (graceful)"
		}
		fmt.Fprintf(b, "| %s | %s | %d of %d | %d of %d | %d |\n", stop, delayLabel(c.Delay), c.TrialsLosing, c.Trials, c.Lost, c.Orgs, c.InWindow)
	}
	var notes []string
	for _, c := range r.Cells {
		if c.Lost > 0 || c.InWindow > 0 {
			notes = append(notes, fmt.Sprintf("- %s, %s: %s", signalName(c.Signal), delayLabel(c.Delay), whyCounts(c.Why)))
		}
		if c.SlowExits > 0 {
			notes = append(notes, fmt.Sprintf("- %s, %s: %d managers did not exit within %s and were killed",
				signalName(c.Signal), delayLabel(c.Delay), c.SlowExits, gracefulExit))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nLosses and slow exits:\n" + strings.Join(notes, "\n") + "\n")
	}
}

// revertMarkdown is the table of the revert cases.
func (r *Report) revertMarkdown(b *strings.Builder) {
	if len(r.Revert) > 0 {
		b.WriteString("\n| old auth URL written back to the Secret | credential |\n|---|---|\n")
		for _, rv := range r.Revert {
			fmt.Fprintf(b, "| %s | %s |\n", revertName(rv.AcrossRestart), orElse(rv.Verdict, "kept"))
		}
	}
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// seconds writes a duration as "1.2 s", or "40 ms" below a second.
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// delayLabel writes a check delay as the issue does: "~10 ms", "1 s".
func delayLabel(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("~%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%g s", d.Seconds())
}

func revertName(restart bool) string {
	if restart {
		return "across a restart"
	}
	return "while the manager runs"
}

func revertSlug(restart bool) string {
	if restart {
		return "restart"
	}
	return "running"
}

func orElse(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
