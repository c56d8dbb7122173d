package access

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
)

// Checkin is an approver's signed statement that they still hold their key
// and can act.
type Checkin struct {
	ApproverID string
	KeyID      string
	At         time.Time
	Signature  []byte
}

// maxCheckinSkew is how far a check-in's time may be from the service's
// clock: a signature made long ago, or for the future, proves nothing
// about now.
const maxCheckinSkew = 5 * time.Minute

// Checkin records approverID's check-in: their signature over
// roster.CheckinMessage(approverID, at) with their key in the roster in force,
// made within five minutes of now.
func (s *Service) Checkin(ctx context.Context, approverID string, at time.Time, sig []byte) (Checkin, error) {
	cur, err := s.current(ctx)
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
		return Checkin{}, invalid("at", "must be within 5 minutes of the service's clock")
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(a.PublicKey, roster.CheckinMessage(approverID, at), sig) {
		return Checkin{}, ErrBadSignature
	}
	c := Checkin{ApproverID: approverID, KeyID: a.KeyID(), At: at, Signature: slices.Clone(sig)}
	if err := s.store.InsertCheckin(ctx, c); err != nil {
		return Checkin{}, err
	}
	s.log.Info("approver checked in", "approver_id", approverID, "key_id", c.KeyID)
	return c, nil
}

// ReleaseRule is what the release policy asks of approvers: how many
// distinct ones and which roles between them (policy.Engine.ReleaseRule).
type ReleaseRule interface {
	ReleaseRule() (minApprovals int, requiredRoles []string)
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

// custodianSet is what the liveness watch asks of the escrow: the set it
// forwards to (escrow.Service).
type custodianSet interface {
	Set() (shares.Set, string, error)
}

// QuorumLive reports whether both rules can still be met.
func (l Liveness) QuorumLive() bool { return l.ReleaseLive && l.RosterLive }

// Liveness computes who could act now, counting a check-in within window.
func (s *Service) Liveness(ctx context.Context, window time.Duration) (Liveness, error) {
	cur, err := s.current(ctx)
	if err != nil {
		return Liveness{}, err
	}
	var l Liveness
	l.LivePerRole = map[string]int{}
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
	last, err := s.store.LastCheckins(ctx)
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
	l.CustodiansMatch = true
	if es, ok := s.escrow.(custodianSet); ok {
		if _, have, err := es.Set(); err == nil {
			want, err := cur.Set().Digest()
			l.CustodiansMatch = err == nil && want == have
		}
	}
	l.ReleaseLive = true
	if rr, ok := s.decider.(ReleaseRule); ok {
		n, roles := rr.ReleaseRule()
		l.ReleaseLive, _ = roster.Rule{MinSigners: n, RequiredRoles: roles}.Satisfied(live)
	}
	return l, nil
}

// WatchLiveness computes Liveness every interval until ctx ends, keeps the
// liveness metrics, and notifies when the quorum stops being live and when
// a proposal has waited longer than proposalWait.
func (s *Service) WatchLiveness(ctx context.Context, interval, window, proposalWait time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	wasLive := true
	warned := false
	for {
		l, err := s.Liveness(ctx, window)
		switch {
		case err != nil:
			s.log.Warn("approver liveness not computed", "err", err)
		default:
			s.metrics.liveness(l)
			if l.RosterVersion > 0 && wasLive && !l.QuorumLive() {
				s.log.Warn("the approvers who checked in recently can no longer meet the release or roster rule",
					"live_approvers", len(l.Live), "release_live", l.ReleaseLive, "roster_live", l.RosterLive)
				s.notify(ctx, Event{Type: EventQuorumNotLive, RosterVersion: l.RosterVersion, Status: "not_live"})
			}
			if l.RosterVersion > 0 {
				wasLive = l.QuorumLive()
			}
			if !l.CustodiansMatch && l.RosterVersion > 0 {
				s.log.Warn("the mediator's custodians file differs from the roster in force; deposits sealed for the roster's custodians are refused",
					"roster_version", l.RosterVersion)
			}
			if l.OldestProposal > proposalWait && !warned {
				s.notify(ctx, Event{Type: EventRosterProposal, RosterVersion: l.RosterVersion + 1, Status: "waiting_too_long"})
			}
			warned = l.OldestProposal > proposalWait
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// String describes l for logs.
func (l Liveness) String() string {
	return fmt.Sprintf("roster v%d: %d live, release rule live %t, roster rule live %t", l.RosterVersion, len(l.Live), l.ReleaseLive, l.RosterLive)
}
