// Package mirror is a C2SP tlog-mirror of one log, in its own PostgreSQL.
//
// A mirror is a cosigner that keeps a copy. It takes the log's signed
// checkpoints as a witness does (add-checkpoint, checked and kept as
// pending checkpoints, never cosigned there), then the entries up to one of
// them in packages of at most 256 (add-entries), each authenticated by a
// subtree consistency proof against that checkpoint before it is stored.
// Only once every entry of a checkpoint is durably stored does the mirror
// cosign it, and its cosignature says exactly that: "I hold a copy of this
// tree". It serves the copy as C2SP tlog-tiles under
// <prefix>/<hex SHA-256 of the origin>/, with its cosigned checkpoint.
//
// The mirror trusts no client: a package that does not prove into a
// checkpoint the log signed is refused, and nothing a client sends can make
// it cosign a tree it does not hold. It never rewinds its checkpoint.
//
// The text followed is C2SP tlog-mirror at commit 0838f7b, with subtree
// proofs of draft-ietf-plants-merkle-tree-certs-02 (package subtree); the
// differences are listed in docs/audit.md, "A mirror a regulator runs".
package mirror

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/packedhash"
	"github.com/mediatorhq/mediator/witness"
)

//go:embed schema.sql
var schema string

// schemaLock serialises schema setup across mirror processes on one
// database ("mirrorsc" in ASCII).
const schemaLock int64 = 0x6d6972726f727363

// commitLock serialises commits of entries and checkpoints ("mirrorcm").
const commitLock int64 = 0x6d6972726f72636d

// The mirror's queries, each by primary key whatever the planner's
// statistics hold (TestPlansUseIndexes).
const (
	sqlNext          = "SELECT COALESCE((SELECT idx FROM mirror_entries ORDER BY idx DESC LIMIT 1) + 1, 0)"
	sqlLeafHashRange = "SELECT substring(hashes FROM 1 FOR 32) FROM mirror_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
	sqlEntryRange    = "SELECT leaf FROM mirror_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
	sqlReadHashes    = "SELECT idx, hashes FROM mirror_entries WHERE idx = ANY($1)"
	sqlPendingAt     = "SELECT root_hash, note FROM mirror_pending WHERE tree_size = $1"
	sqlLatestPending = "SELECT tree_size, root_hash, note FROM mirror_pending ORDER BY tree_size DESC LIMIT 1"
	sqlMirrored      = "SELECT tree_size, note FROM mirror_checkpoints ORDER BY tree_size DESC LIMIT 1"
)

// entryTable is the mirror's table of packed hashes.
var entryTable = packedhash.Table{ReadSQL: sqlReadHashes, What: "mirror"}

// Options configure a Mirror.
type Options struct {
	// Origin is the origin line of the log's checkpoints.
	Origin string
	// LogVerifiers check the log's signatures (its key, and earlier keys).
	LogVerifiers []note.Verifier
	// Signer makes the mirror's cosignatures (cosignature/v1,
	// witness.NewSigner).
	Signer note.Signer
	// ReadToken, if not empty, is the bearer token its readers send;
	// without one the copy is readable only if PublicReads.
	ReadToken string
	// PublicReads lets anyone read the copy (C2SP tlog-mirror's default).
	// The log's entries are redacted metadata, still not for everyone.
	PublicReads bool
	Log         *slog.Logger
	Metrics     *Metrics
}

// Mirror keeps and serves one log's copy. It is safe for concurrent use.
type Mirror struct {
	pool    *pgxpool.Pool
	opts    Options
	pending *witness.Witness
	prefix  string // the hex SHA-256 of the origin: the copy's URL path
}

// ErrOtherLog: the database already holds another log's copy.
var ErrOtherLog = errors.New("mirror: the database holds another log's copy")

// Open sets up the mirror's tables in pool's database (idempotent) and
// returns the mirror of opts.Origin. It refuses a database that mirrors
// another origin.
func Open(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Mirror, error) {
	if opts.Origin == "" || len(opts.LogVerifiers) == 0 || opts.Signer == nil {
		return nil, errors.New("mirror: an origin, the log's key and a cosigning key are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, schema); err != nil {
			return err
		}
		var origin string
		err := tx.QueryRow(ctx, "INSERT INTO mirror_log (origin) VALUES ($1) ON CONFLICT (only_row) DO UPDATE SET origin = mirror_log.origin RETURNING origin", opts.Origin).Scan(&origin)
		if err != nil {
			return err
		}
		if origin != opts.Origin {
			return fmt.Errorf("%w: %q, not %q", ErrOtherLog, origin, opts.Origin)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: set up its tables: %w", err)
	}
	m := &Mirror{pool: pool, opts: opts, prefix: OriginHash(opts.Origin)}
	m.pending = witness.NewRecorder(pendingStore{m}, witness.Log{Origin: opts.Origin, Verifiers: opts.LogVerifiers})
	return m, nil
}

// OriginHash is the path under which a mirror serves a log's copy: the
// lowercase hex SHA-256 of its origin (C2SP tlog-mirror).
func OriginHash(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}
