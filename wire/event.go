package wire

import "time"

// Event is a workflow event as webhooks receive it (with the delivery's
// id): ids, counts and states only. It never names a person (no
// requester, approver or subject) nor anything from the metadata (no
// conversation or case id), so a webhook receiver learns that something
// needs attention and fetches the rest with its own credentials.
type Event struct {
	Type string `json:"type"`
	// RequestID is a lawful-access request's random UUID.
	RequestID string `json:"request_id,omitempty"`
	// Status is the request's or the roster proposal's state.
	Status string `json:"status,omitempty"`
	// Approvals counts approvals recorded on the request so far.
	Approvals     int       `json:"approvals,omitempty"`
	RosterVersion uint64    `json:"roster_version,omitempty"`
	RosterDigest  string    `json:"roster_digest,omitempty"`
	OccurredAt    time.Time `json:"occurred_at"`
}

// The event types.
const (
	EventRequestFiled   = "access_request.filed"
	EventNeedsApprovals = "access_request.needs_approvals"
	EventApproval       = "access_request.approval"
	EventReleased       = "access_request.released"
	EventDenied         = "access_request.denied"
	EventRosterProposal = "roster.proposal_waiting"
	EventRosterAdopted  = "roster.adopted"
	EventQuorumNotLive  = "roster.quorum_not_live"
)
