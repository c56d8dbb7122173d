package governance

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Checkin is an approver's signed statement that they still hold their key
// and can act.
type Checkin struct {
	ApproverID string
	KeyID      string
	At         time.Time
	Signature  []byte
}

// CheckinStore keeps check-ins.
type CheckinStore interface {
	// InsertCheckin keeps an approver's verified check-in.
	InsertCheckin(ctx context.Context, c Checkin) error
	// LastCheckins returns each approver's newest check-in time.
	LastCheckins(ctx context.Context) (map[string]time.Time, error)
}

// maxCheckinSkew is how far a check-in's time may be from the service's
// clock: a signature made long ago, or for the future, proves nothing
// about now.
const maxCheckinSkew = 5 * time.Minute

// Checkin records approverID's check-in: their signature over
// roster.CheckinMessage(approverID, at) with their key in the roster in
// force, made within five minutes of now.
func (s *Service) Checkin(ctx context.Context, approverID string, at time.Time, sig []byte) (Checkin, error) {
	cur, err := s.Current(ctx)
	if err != nil {
		return Checkin{}, err
	}
	if cur == nil {
		return Checkin{}, ErrUnknownApprover
	}
	a, ok := cur.Approver(approverID)
	if !ok {
		return Checkin{}, ErrUnknownApprover
	}
	at = at.UTC().Truncate(time.Second)
	if d := s.now().Sub(at); d > maxCheckinSkew || d < -maxCheckinSkew {
		return Checkin{}, invalid.Input("at", "must be within 5 minutes of the service's clock")
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(a.PublicKey, roster.CheckinMessage(approverID, at), sig) {
		return Checkin{}, ErrBadSignature
	}
	c := Checkin{ApproverID: approverID, KeyID: a.KeyID(), At: at, Signature: slices.Clone(sig)}
	if err := s.checkins.InsertCheckin(ctx, c); err != nil {
		return Checkin{}, err
	}
	s.log.Info("approver checked in", "approver_id", approverID, "key_id", c.KeyID)
	return c, nil
}

// ReleaseRule is what the release policy asks of approvers: how many
// distinct ones and which roles between them (policy.Reloader).
type ReleaseRule interface {
	ReleaseRule() (minApprovals int, requiredRoles []string)
}

// CustodianSet is the custodian set the mediator forwards deposits to and
// its digest (escrow.Service).
type CustodianSet interface {
	Set() (shares.Set, string, error)
}

// Liveness is who could act now: the approvers of the roster in force who
// checked in within the window, and whether they can still meet the
// release rule and the roster rule.
type Liveness struct {
	RosterVersion uint64
	// LivePerRole counts live approvers holding each role of the roster.
	LivePerRole map[string]int
	Live        []string
	// ReleaseLive and RosterLive: live approvers alone can meet the
	// release policy's rule, and the roster's rule for its next version.
	ReleaseLive, RosterLive bool
	// OldestProposal is how long the oldest proposal still waiting for
	// signatures has waited; zero when none waits.
	OldestProposal time.Duration
	// CustodiansMatch: the custodian set the mediator forwards deposits
	// to (its --custodians file) is the roster's; when it is not, deposits
	// sealed for the roster's set are refused.
	CustodiansMatch bool
}

// QuorumLive reports whether both rules can still be met.
func (l Liveness) QuorumLive() bool { return l.ReleaseLive && l.RosterLive }

// String describes l for logs.
func (l Liveness) String() string {
	return fmt.Sprintf("roster v%d: %d live, release rule live %t, roster rule live %t", l.RosterVersion, len(l.Live), l.ReleaseLive, l.RosterLive)
}

// Liveness computes who could act now, counting a check-in within window.
func (s *Service) Liveness(ctx context.Context, window time.Duration) (Liveness, error) {
	cur, err := s.Current(ctx)
	if err != nil {
		return Liveness{}, err
	}
	l := Liveness{LivePerRole: map[string]int{}}
	props, err := s.RosterProposals(ctx)
	if err != nil {
		return Liveness{}, err
	}
	now := s.now()
	for _, p := range props {
		if !p.Adopted && !p.Stale {
			l.OldestProposal = max(l.OldestProposal, now.Sub(p.ProposedAt))
		}
	}
	if cur == nil {
		return l, nil
	}
	l.RosterVersion = cur.Version
	last, err := s.checkins.LastCheckins(ctx)
	if err != nil {
		return Liveness{}, err
	}
	var live []roster.Approver
	for _, a := range cur.Approvers {
		for _, role := range a.Roles {
			l.LivePerRole[role] += 0
		}
		if at, ok := last[a.ID]; ok && now.Sub(at) <= window {
			live = append(live, a)
			l.Live = append(l.Live, a.ID)
			for _, role := range a.Roles {
				l.LivePerRole[role]++
			}
		}
	}
	l.RosterLive, _ = cur.Rule.Satisfied(live)
	l.CustodiansMatch = s.custodiansMatch(cur)
	l.ReleaseLive = true
	if s.rule != nil {
		n, roles := s.rule.ReleaseRule()
		l.ReleaseLive, _ = roster.Rule{MinSigners: n, RequiredRoles: roles}.Satisfied(live)
	}
	return l, nil
}

// custodiansMatch reports whether the mediator's custodian set is cur's;
// true when the service has none to compare or it cannot be read.
func (s *Service) custodiansMatch(cur *roster.Roster) bool {
	if s.custodians == nil {
		return true
	}
	_, have, err := s.custodians.Set()
	if err != nil {
		return true
	}
	want, err := cur.Set().Digest()
	return err == nil && want == have
}

// LivenessWatch configures WatchLiveness.
type LivenessWatch struct {
	// Interval is how often liveness is computed.
	Interval time.Duration
	// Window is how recent a check-in must be to count.
	Window time.Duration
	// ProposalWait is how long a proposal may wait for signatures before
	// it is notified.
	ProposalWait time.Duration
}

// WatchLiveness computes Liveness now and every w.Interval until ctx ends,
// keeps the liveness metrics, and notifies when the quorum stops being
// live and when a proposal has waited longer than w.ProposalWait. Run it
// as a job (job.Start).
func (s *Service) WatchLiveness(ctx context.Context, w LivenessWatch) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	wasLive, warned := true, false
	for {
		if l, err := s.Liveness(ctx, w.Window); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("approver liveness not computed", "err", err)
			}
		} else {
			wasLive, warned = s.reportLiveness(ctx, l, wasLive, warned, w.ProposalWait)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reportLiveness records l in the metrics and notifies what changed since
// the last round: the quorum stopping being live, a proposal starting to
// wait too long. It returns the state the next round compares with.
func (s *Service) reportLiveness(ctx context.Context, l Liveness, wasLive, warned bool, proposalWait time.Duration) (bool, bool) {
	s.metrics.liveness(l)
	if l.RosterVersion > 0 {
		if wasLive && !l.QuorumLive() {
			s.log.Warn("the approvers who checked in recently can no longer meet the release or roster rule",
				"live_approvers", len(l.Live), "release_live", l.ReleaseLive, "roster_live", l.RosterLive)
			s.notify(ctx, wire.Event{Type: wire.EventQuorumNotLive, RosterVersion: l.RosterVersion, Status: "not_live"})
		}
		wasLive = l.QuorumLive()
		if !l.CustodiansMatch {
			s.log.Warn("the mediator's custodians file differs from the roster in force; deposits sealed for the roster's custodians are refused",
				"roster_version", l.RosterVersion)
		}
	}
	if l.OldestProposal > proposalWait && !warned {
		s.notify(ctx, wire.Event{Type: wire.EventRosterProposal, RosterVersion: l.RosterVersion + 1, Status: "waiting_too_long"})
	}
	return wasLive, l.OldestProposal > proposalWait
}
