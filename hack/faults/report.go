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
	SlowExits    int            // stopped managers that had to be killed after gracefulExit
	Why          map[string]int // loss reason → count
}

// RevertResult is the outcome of one revert case: "" when the credential was kept, else why not.
type RevertResult struct {
	AcrossRestart bool
	Verdict       string
}

// Report is what a run found.
type Report struct {
	Config Config
	Cells  []Cell
	Revert []RevertResult
	// LeakingLogs names the manager logs that hold a token the fake issued (never which).
	LeakingLogs []string
}

// Failed says whether a credential was lost or leaked into a manager's log.
func (r *Report) Failed() bool { return r.Losses() > 0 || len(r.LeakingLogs) > 0 }

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

// Markdown is the table, the reasons for any loss, and the revert cases.
func (r *Report) Markdown() string {
	var b strings.Builder
	cfg := r.Config
	fmt.Fprintf(&b, "The manager as its own process, the fake Salesforce rotating on every refresh, %d orgs per trial, "+
		"the manager stopped at a random moment 0–%d ms after its first token request (seed %d):\n\n",
		cfg.Orgs, cfg.StopMax.Milliseconds(), cfg.Seed)
	b.WriteString("| stop | Salesforce check answers in | trials losing a credential | org credentials lost |\n")
	b.WriteString("|---|---|---|---|\n")
	for _, c := range r.Cells {
		stop := signalName(c.Signal)
		if c.Signal == syscall.SIGTERM {
			stop += " (graceful)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d of %d | %d of %d |\n", stop, delayLabel(c.Delay), c.TrialsLosing, c.Trials, c.Lost, c.Orgs)
	}
	var notes []string
	for _, c := range r.Cells {
		if c.Lost > 0 {
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
	if len(r.Revert) > 0 {
		b.WriteString("\n| old auth URL written back to the Secret | credential |\n|---|---|\n")
		for _, rv := range r.Revert {
			fmt.Fprintf(&b, "| %s | %s |\n", revertName(rv.AcrossRestart), orElse(rv.Verdict, "kept"))
		}
	}
	if len(r.LeakingLogs) > 0 {
		fmt.Fprintf(&b, "\nA token the fake issued appears in these manager logs: %s\n", strings.Join(r.LeakingLogs, ", "))
	}
	return b.String()
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
