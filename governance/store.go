package governance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/roster"
)

// PGStore keeps the roster's proposals, signatures, adopted versions and
// check-ins in PostgreSQL; every write but a check-in appends its audit
// entry in the same transaction. It implements ChainStore, ProposalStore
// and CheckinStore.
type PGStore struct {
	pool *pgxpool.Pool
	rec  audit.Recorder
}

// NewPGStore returns the roster's store in pool, logging through log.
func NewPGStore(pool *pgxpool.Pool, log audit.TxAppender) *PGStore {
	return &PGStore{pool: pool, rec: audit.Recorder{Pool: pool, Log: log, Unavailable: ErrUnavailable}}
}

// errConflict: a row with that key exists.
var errConflict = errors.New("governance: conflict")

// InsertRosterProposal implements ProposalStore.
func (s *PGStore) InsertRosterProposal(ctx context.Context, p Proposal, record any) (Proposal, error) {
	if existing, err := s.RosterProposal(ctx, p.Digest); err == nil {
		return existing, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Proposal{}, err
	}
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: KindRosterProposal, Record: record}, func(tx pgx.Tx, seq int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO roster_proposals (digest, version, canonical, proposed_by, audit_seq) VALUES ($1, $2, $3, $4, $5)`,
			p.Digest, int64(p.Roster.Version), p.Canonical, p.ProposedBy, seq)
		if err != nil {
			return s.rec.Conflict(err, errConflict)
		}
		return nil
	})
	if errors.Is(err, errConflict) {
		return s.RosterProposal(ctx, p.Digest)
	}
	if err != nil {
		return Proposal{}, err
	}
	p.AuditSeq, p.ProposedAt = seq, time.Now().UTC()
	return p, nil
}

// InsertRosterSignature implements ProposalStore.
func (s *PGStore) InsertRosterSignature(ctx context.Context, digest string, sig roster.Signature) error {
	rec := map[string]any{"kind": KindRosterSignature, "digest": digest, "approver_id": sig.ApproverID, "key_id": sig.KeyID,
		"signature": sig.Signature}
	_, err := s.rec.Record(ctx, audit.Entry{Kind: KindRosterSignature, Record: rec}, func(tx pgx.Tx, seq int64) error {
		if _, err := tx.Exec(ctx, `INSERT INTO roster_signatures (digest, approver_id, key_id, signature, audit_seq) VALUES ($1, $2, $3, $4, $5)`,
			digest, sig.ApproverID, sig.KeyID, sig.Signature, seq); err != nil {
			return s.rec.Conflict(err, errConflict)
		}
		return nil
	})
	if errors.Is(err, errConflict) {
		return nil // signed before: no change, and no second log entry
	}
	return err
}

// AdoptRoster implements ChainStore.
func (s *PGStore) AdoptRoster(ctx context.Context, genesis string, version uint64, digest string, record any) (int64, error) {
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: KindRosterVersion, Record: record}, func(tx pgx.Tx, seq int64) error {
		if _, err := tx.Exec(ctx, `INSERT INTO roster_versions (genesis, version, digest, audit_seq) VALUES ($1, $2, $3, $4)`, genesis, int64(version), digest, seq); err != nil {
			return s.rec.Conflict(err, ErrStaleProposal)
		}
		return nil
	})
	return seq, err
}

// RosterProposal implements ProposalStore.
func (s *PGStore) RosterProposal(ctx context.Context, digest string) (Proposal, error) {
	ps, err := s.rosterProposals(ctx, `WHERE digest = $1`, digest)
	if err != nil {
		return Proposal{}, err
	}
	if len(ps) == 0 {
		return Proposal{}, ErrNotFound
	}
	return ps[0], nil
}

// RosterProposals implements ProposalStore.
func (s *PGStore) RosterProposals(ctx context.Context, limit int) ([]Proposal, error) {
	return s.rosterProposals(ctx, `ORDER BY proposed_at DESC, audit_seq DESC LIMIT $1`, limit)
}

func (s *PGStore) rosterProposals(ctx context.Context, where string, args ...any) ([]Proposal, error) {
	rows, err := s.pool.Query(ctx, `SELECT digest, canonical, proposed_by, proposed_at, audit_seq FROM roster_proposals `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: roster proposals: %v", ErrUnavailable, err)
	}
	ps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Proposal, error) {
		var p Proposal
		err := row.Scan(&p.Digest, &p.Canonical, &p.ProposedBy, &p.ProposedAt, &p.AuditSeq)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: roster proposals: %v", ErrUnavailable, err)
	}
	out := ps[:0]
	for _, p := range ps {
		// A row whose bytes are not the roster its digest names was not
		// written by this service: it is skipped, and reported.
		r, err := roster.Parse(p.Canonical)
		if err != nil || roster.Digest(p.Canonical) != p.Digest {
			continue
		}
		p.Roster = r
		if p.Signatures, err = s.rosterSignatures(ctx, p.Digest); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *PGStore) rosterSignatures(ctx context.Context, digest string) ([]roster.Signature, error) {
	rows, err := s.pool.Query(ctx, `SELECT approver_id, key_id, signature FROM roster_signatures WHERE digest = $1 ORDER BY audit_seq`, digest)
	if err != nil {
		return nil, fmt.Errorf("%w: roster signatures: %v", ErrUnavailable, err)
	}
	sigs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (roster.Signature, error) {
		var sg roster.Signature
		err := row.Scan(&sg.ApproverID, &sg.KeyID, &sg.Signature)
		return sg, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: roster signatures: %v", ErrUnavailable, err)
	}
	return sigs, nil
}

// RosterChain implements ChainStore.
func (s *PGStore) RosterChain(ctx context.Context, genesis string) ([]roster.Signed, error) {
	rows, err := s.pool.Query(ctx, `SELECT p.digest, p.canonical FROM roster_versions v JOIN roster_proposals p USING (digest) WHERE v.genesis = $1 ORDER BY v.version`, genesis)
	if err != nil {
		return nil, fmt.Errorf("%w: roster chain: %v", ErrUnavailable, err)
	}
	type row struct {
		digest    string
		canonical []byte
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var v row
		err := r.Scan(&v.digest, &v.canonical)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: roster chain: %v", ErrUnavailable, err)
	}
	out := make([]roster.Signed, 0, len(vs))
	for _, v := range vs {
		sigs, err := s.rosterSignatures(ctx, v.digest)
		if err != nil {
			return nil, err
		}
		out = append(out, roster.Signed{Roster: v.canonical, Signatures: sigs})
	}
	return out, nil
}

// RosterVersion implements ChainStore.
func (s *PGStore) RosterVersion(ctx context.Context, genesis string) (uint64, string, error) {
	var n int64
	var digest string
	err := s.pool.QueryRow(ctx, `SELECT version, digest FROM roster_versions WHERE genesis = $1 ORDER BY version DESC LIMIT 1`, genesis).Scan(&n, &digest)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("%w: roster version: %v", ErrUnavailable, err)
	}
	return uint64(n), digest, nil
}

// InsertCheckin implements CheckinStore.
func (s *PGStore) InsertCheckin(ctx context.Context, c Checkin) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO approver_checkins (approver_id, key_id, checked_in_at, signature) VALUES ($1, $2, $3, $4)`,
		c.ApproverID, c.KeyID, c.At, c.Signature); err != nil {
		return fmt.Errorf("%w: check-in: %v", ErrUnavailable, err)
	}
	return nil
}

// LastCheckins implements CheckinStore.
func (s *PGStore) LastCheckins(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT approver_id, max(checked_in_at) FROM approver_checkins GROUP BY approver_id`)
	if err != nil {
		return nil, fmt.Errorf("%w: check-ins: %v", ErrUnavailable, err)
	}
	out := map[string]time.Time{}
	var id string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = at; return nil })
	if err != nil {
		return nil, fmt.Errorf("%w: check-ins: %v", ErrUnavailable, err)
	}
	return out, nil
}
