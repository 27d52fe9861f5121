package main

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
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
	InWindow int
	// Spent counts the spent refresh tokens presented for the cell's orgs (Salesforce revokes
	// the whole chain for one), but those of SpentInWindow: it must be 0.
	Spent int
	// SpentInWindow counts the spent tokens presented for the orgs lost inside the write window:
	// the killed process took the rotated token with it, so the Secret still held the token that
	// rotation spent, and the next manager could only present it.
	SpentInWindow int
	// ClaimsLeft counts the Secrets that still held the stopped manager's exchange claim: the
	// next manager waits until it ends (up to claimWait) before it exchanges that token.
	ClaimsLeft int
	SlowExits  int            // stopped managers that had to be killed after gracefulExit
	Why        map[string]int // loss reason → count
}

// RevertResult is the outcome of one revert case: "" when the credential was kept, else why not.
type RevertResult struct {
	AcrossRestart bool
	Verdict       string
	Spent         int // spent refresh tokens presented: must be 0
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
	HandOvers   *HandOverResults // the hand-over cases during rotation
	// SpentTotal is the fake's count of spent refresh tokens presented over the whole run, every
	// case included, read when the run ends.
	SpentTotal int
}

// Empty says whether the run got as far as a result.
func (r *Report) Empty() bool {
	return len(r.Cells)+len(r.Revert)+len(r.Outages) == 0 && r.Handover == nil && r.HandOvers == nil
}

// Failed says whether a credential was lost or leaked into a manager's log, a spent refresh token
// was presented (outside a SIGKILL's write window), a hand-over case failed, or leader election
// failed where it must not.
func (r *Report) Failed() bool { return len(r.Problems()) > 0 }

// Problems says in a line each why the run failed.
func (r *Report) Problems() []string {
	var out []string
	if n := r.Losses(); n > 0 {
		out = append(out, fmt.Sprintf("%d org credentials lost", n))
	}
	spent, excused := 0, 0
	for _, c := range r.Cells {
		spent, excused = spent+c.Spent, excused+c.SpentInWindow
	}
	if spent > 0 {
		out = append(out, fmt.Sprintf("%d spent refresh tokens presented when the manager was stopped mid-rotation (outside a SIGKILL's write window)", spent))
	}
	for _, rv := range r.Revert {
		spent += rv.Spent
		if rv.Spent > 0 {
			out = append(out, fmt.Sprintf("old auth URL written back %s: %d spent refresh tokens presented", revertName(rv.AcrossRestart), rv.Spent))
		}
	}
	if ho := r.HandOvers; ho != nil {
		out = append(out, ho.Problems()...)
		s, e := ho.spent()
		spent, excused = spent+s, excused+e
	}
	// Whatever the tables above do not show: the leader-election cases' orgs rotate too.
	if other := r.SpentTotal - spent - excused; other > 0 {
		out = append(out, fmt.Sprintf("%d spent refresh tokens presented outside the tables' cases (the leader-election cases)", other))
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

// Failures counts the reasons the run failed (Problems): main and the test fail on any.
func (r *Report) Failures() int { return len(r.Problems()) }

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

// spentInWindow counts the spent refresh tokens presented inside a SIGKILL's write window.
func (r *Report) spentInWindow() int {
	n := 0
	for _, c := range r.Cells {
		n += c.SpentInWindow
	}
	if r.HandOvers != nil {
		_, w := r.HandOvers.spent()
		n += w
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
	if r.HandOvers != nil {
		r.HandOvers.markdown(&b)
	}
	fmt.Fprintf(&b, "\nSpent refresh tokens presented over the whole run, every case included, as the fake counted them: %d (inside a SIGKILL's write window: %d).\n",
		r.SpentTotal, r.spentInWindow())
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
	b.WriteString("| stop | Salesforce check answers in | trials losing a credential | org credentials lost | lost inside the write window (SIGKILL only) | spent tokens presented | spent tokens presented inside the write window | exchange claims left by the stopped manager |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Cells {
		stop := signalName(c.Signal)
		if c.Signal == syscall.SIGTERM {
			stop += " (graceful)"
		}
		fmt.Fprintf(b, "| %s | %s | %d of %d | %d of %d | %d | %d | %d | %d |\n", stop, delayLabel(c.Delay), c.TrialsLosing, c.Trials, c.Lost, c.Orgs, c.InWindow,
			c.Spent, c.SpentInWindow, c.ClaimsLeft)
	}
	fmt.Fprintf(b, "\nA spent refresh token (one a successful refresh rotated away) presented to Salesforce revokes the whole "+
		"credential chain: there must be none. The one exception is a SIGKILL inside the write window: the killed process took "+
		"the rotated token with it, so the Secret still held the token that rotation spent, and the next manager could only "+
		"present it; those are counted apart, with the loss. An exchange claim the stopped manager left on a Secret holds the "+
		"next manager off that token for up to %s (the claim's %s plus %s of clock skew): after a SIGKILL, or when a claim was "+
		"left, the next manager has that much longer than --settle (%s) to decide.\n",
		seconds(claimWait), seconds(salesforce.ClaimTTL), seconds(claimSkew), seconds(cfg.Settle))
	var notes []string
	for _, c := range r.Cells {
		if c.Lost > 0 || c.InWindow > 0 || c.Spent > 0 {
			notes = append(notes, fmt.Sprintf("- %s, %s: %s", signalName(c.Signal), delayLabel(c.Delay), whyCounts(c.Why)))
		}
		if c.Signal == syscall.SIGTERM && c.ClaimsLeft > 0 {
			notes = append(notes, fmt.Sprintf("- SIGTERM, %s: the graceful stops left %d exchange claims behind (an exchange claimed, then abandoned on the way out): "+
				"the next manager could not check those orgs for up to %s. Safe, but slow.", delayLabel(c.Delay), c.ClaimsLeft, seconds(claimWait)))
		}
		if c.SlowExits > 0 {
			notes = append(notes, fmt.Sprintf("- %s, %s: %d managers did not exit within %s and were killed",
				signalName(c.Signal), delayLabel(c.Delay), c.SlowExits, gracefulExit))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nLosses, claims left by graceful stops, slow exits:\n" + strings.Join(notes, "\n") + "\n")
	}
}

// revertMarkdown is the table of the revert cases.
func (r *Report) revertMarkdown(b *strings.Builder) {
	if len(r.Revert) > 0 {
		b.WriteString("\n| old auth URL written back to the Secret | credential | spent tokens presented |\n|---|---|---|\n")
		for _, rv := range r.Revert {
			fmt.Fprintf(b, "| %s | %s | %d |\n", revertName(rv.AcrossRestart), orElse(rv.Verdict, "kept"), rv.Spent)
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

// Tally counts a hand-over case's orgs by their final verdict, and the refresh-token misuse the
// fake saw for them.
type Tally struct {
	Orgs, OK, Lost int
	// InWindow counts the orgs lost to a SIGKILL inside the write window (not a failure).
	InWindow int
	// Spent counts the spent refresh tokens presented, but those of SpentInWindow: it must be 0.
	Spent, SpentInWindow int
	// Refused counts the refreshes refused because another was refreshing the same token:
	// harmless (nothing is spent or revoked), reported.
	Refused int
	Why     map[string]int // verdict → orgs, for the orgs not ok
}

func (t Tally) problems() []string {
	var out []string
	if t.Lost > 0 {
		out = append(out, fmt.Sprintf("%d of %d orgs not Connected with a live refresh token in the Secret at the end (%s)", t.Lost, t.Orgs, whyCounts(t.Why)))
	}
	if t.Spent > 0 {
		out = append(out, fmt.Sprintf("%d spent refresh tokens presented outside a SIGKILL's write window (each revokes its chain at Salesforce): a token presented after its rotation, an operator bug", t.Spent))
	}
	return out
}

// LeaderHandOver is the leader stopped with Signal during rotation, a standby running. Times
// are from the signal.
type LeaderHandOver struct {
	Signal                          syscall.Signal
	LeaderExited, Acquired, Settled time.Duration
	ClaimsLeft                      int // Secrets holding the stopped leader's claim after its exit
	ByLeader, ByStandby             int // refreshes granted before the signal, after it
	ChurnRounds                     int
	Tally
	Problems []string
}

func (l LeaderHandOver) Outcome() string {
	s := fmt.Sprintf("the standby held the lease after %s, every org decided after %s, %d of %d Connected with a live Secret, %d spent tokens presented",
		seconds(l.Acquired), seconds(l.Settled), l.OK, l.Orgs, l.Spent)
	if l.InWindow > 0 {
		s += fmt.Sprintf(" (%d orgs lost and %d spent tokens inside the write window)", l.InWindow, l.SpentInWindow)
	}
	if len(l.Problems) > 0 {
		s += "; FAILED: " + strings.Join(l.Problems, "; ")
	}
	return s
}

// ShardHandOver is the orgs moved from shard1's manager to shard2's during rotation. Times are
// from the move.
type ShardHandOver struct {
	Moved, Settled     time.Duration // the relabelling took; every org decided
	ClaimsAtMove       int           // Secrets holding a claim right after the move
	ByShard1, ByShard2 int           // refreshes granted before the move, after it
	ChurnRounds        int
	Tally
	Problems []string
}

func (s ShardHandOver) Outcome() string {
	out := fmt.Sprintf("every org decided %s after the move, %d of %d Connected on %s with a live Secret, %d concurrent refreshes refused, %d spent tokens presented",
		seconds(s.Settled), s.OK, s.Orgs, shard2, s.Refused, s.Spent)
	if len(s.Problems) > 0 {
		out += "; FAILED: " + strings.Join(s.Problems, "; ")
	}
	return out
}

// SharedKeyCase is a newer org naming an older one's Secret key, admission bypassed.
type SharedKeyCase struct {
	Rounds         int // forced exchanges asked for
	Exchanges      int // refreshes granted meanwhile
	OlderConnected int // rounds after which the older org was Connected with a live Secret
	NewerRefused   int // rounds after which the newer one stalled with SecretKeyInUse, never checked
	Spent, Refused int
	Why            map[string]int
	Problems       []string
}

func (s *SharedKeyCase) why(v string) {
	if s.Why == nil {
		s.Why = map[string]int{}
	}
	s.Why[v]++
}

func (s SharedKeyCase) problems() []string {
	var out []string
	if s.OlderConnected < s.Rounds || s.NewerRefused < s.Rounds {
		out = append(out, fmt.Sprintf("the older org Connected after %d of %d forced exchanges, the newer stalled with %s in %d of them (%s)",
			s.OlderConnected, s.Rounds, sfv1.ReasonSecretKeyInUse, s.NewerRefused, whyCounts(s.Why)))
	}
	if s.Exchanges < s.Rounds {
		out = append(out, fmt.Sprintf("only %d refresh-token exchanges in %d rounds that each should force one: the case tested less than it should", s.Exchanges, s.Rounds))
	}
	if s.Spent > 0 {
		out = append(out, fmt.Sprintf("%d spent refresh tokens presented (each revokes the chain at Salesforce): the two orgs exchanged one token, an operator bug", s.Spent))
	}
	return out
}

func (s SharedKeyCase) Outcome() string {
	out := fmt.Sprintf("%d exchanges forced; the older org Connected after %d of %d, the newer stalled with %s after %d of %d; %d spent tokens presented",
		s.Exchanges, s.OlderConnected, s.Rounds, sfv1.ReasonSecretKeyInUse, s.NewerRefused, s.Rounds, s.Spent)
	if len(s.Problems) > 0 {
		out += "; FAILED: " + strings.Join(s.Problems, "; ")
	}
	return out
}

// HandOverResults are the hand-over cases during rotation.
type HandOverResults struct {
	Lease     string // the leader cases' lease settings
	Leader    []LeaderHandOver
	Shard     *ShardHandOver
	SharedKey *SharedKeyCase
}

// Problems says in a line each why a case failed.
func (r *HandOverResults) Problems() []string {
	var out []string
	for _, l := range r.Leader {
		for _, p := range l.Problems {
			out = append(out, fmt.Sprintf("leader hand-over during rotation, %s: %s", signalName(l.Signal), p))
		}
	}
	if s := r.Shard; s != nil {
		for _, p := range s.Problems {
			out = append(out, fmt.Sprintf("shard hand-over during rotation: %s", p))
		}
	}
	if s := r.SharedKey; s != nil {
		for _, p := range s.Problems {
			out = append(out, fmt.Sprintf("two orgs on one Secret key: %s", p))
		}
	}
	return out
}

// spent is the spent refresh tokens the cases counted: failures, and those inside a SIGKILL's
// write window.
func (r *HandOverResults) spent() (spent, inWindow int) {
	for _, l := range r.Leader {
		spent, inWindow = spent+l.Spent, inWindow+l.SpentInWindow
	}
	if r.Shard != nil {
		spent += r.Shard.Spent
	}
	if r.SharedKey != nil {
		spent += r.SharedKey.Spent
	}
	return spent, inWindow
}

func (r *HandOverResults) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "\nHand-overs during rotation: the fake rotating on every refresh, %d orgs per case, and every 200–500 ms every session "+
		"ended at the fake and a check of every org requested, so that each check exchanges the refresh token. A spent refresh "+
		"token presented (it revokes the chain at Salesforce) fails the run, but after a SIGKILL inside the write window "+
		"(the killed leader took the rotated token with it; counted apart, with the loss). A concurrent refresh refused spends "+
		"nothing and is only reported.\n", handOverOrgs)
	if len(r.Leader) > 0 {
		fmt.Fprintf(b, "\nTwo managers electing a leader (%s), the leader stopped 0–%d ms after one of its exchanges (times from the signal):\n\n",
			r.Lease, handOverStopWithin.Milliseconds())
		b.WriteString("| leader stopped with | standby holds the lease | every org decided | orgs Connected, Secret live | exchange claims left by the leader | refreshes granted (leader / standby) | concurrent refreshes refused | spent tokens presented | spent inside the write window |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, l := range r.Leader {
			stop := signalName(l.Signal)
			if l.Signal == syscall.SIGTERM {
				stop += " (graceful)"
			}
			acquired := seconds(l.Acquired)
			if l.Acquired == 0 {
				acquired = "never"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d of %d | %d | %d / %d | %d | %d | %d |\n", stop, acquired, seconds(l.Settled), l.OK, l.Orgs,
				l.ClaimsLeft, l.ByLeader, l.ByStandby, l.Refused, l.Spent, l.SpentInWindow)
		}
		var notes []string
		for _, l := range r.Leader {
			if len(l.Why) > 0 {
				notes = append(notes, fmt.Sprintf("- %s: orgs not Connected at the end: %s", signalName(l.Signal), whyCounts(l.Why)))
			}
			if l.Signal == syscall.SIGTERM && l.ClaimsLeft > 0 {
				notes = append(notes, fmt.Sprintf("- SIGTERM: the graceful stop left %d exchange claims behind (an exchange claimed, then abandoned on the way out): "+
					"the standby could not check those orgs until the claims ended (every org decided %s after the signal). Safe, but slow.", l.ClaimsLeft, seconds(l.Settled)))
			}
		}
		if len(notes) > 0 {
			b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
		}
	}
	if s := r.Shard; s != nil {
		fmt.Fprintf(b, "\nA manager per shard (--watch-label-selector %s=%s and =%s, each leading its own lease); the orgs relabelled from %s "+
			"to %s 0–%d ms after one of %s's exchanges (times from the move):\n\n", sfv1.ShardLabel, shard1, shard2, shard1, shard2,
			handOverStopWithin.Milliseconds(), shard1)
		b.WriteString("| every org decided | orgs Connected on shard2, Secret live | exchange claims held at the move | refreshes granted (shard1 / shard2) | concurrent refreshes refused | spent tokens presented |\n")
		b.WriteString("|---|---|---|---|---|---|\n")
		fmt.Fprintf(b, "| %s | %d of %d | %d | %d / %d | %d | %d |\n", seconds(s.Settled), s.OK, s.Orgs, s.ClaimsAtMove, s.ByShard1, s.ByShard2, s.Refused, s.Spent)
	}
	if s := r.SharedKey; s != nil {
		b.WriteString("\nTwo orgs naming one Secret key (webhooks off, so admission does not refuse the second); the older Connected first, " +
			"then its session ended at the fake before each of the checks requested of both:\n\n")
		b.WriteString("| exchanges forced (granted) | older org Connected, Secret live | newer org stalled with SecretKeyInUse, never checked | concurrent refreshes refused | spent tokens presented |\n")
		b.WriteString("|---|---|---|---|---|\n")
		fmt.Fprintf(b, "| %d (%d) | %d of %d | %d of %d | %d | %d |\n", s.Rounds, s.Exchanges, s.OlderConnected, s.Rounds, s.NewerRefused, s.Rounds, s.Refused, s.Spent)
	}
	if p := r.Problems(); len(p) > 0 {
		b.WriteString("\nFailed:\n- " + strings.Join(p, "\n- ") + "\n")
	}
}
