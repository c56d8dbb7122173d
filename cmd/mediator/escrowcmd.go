package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/migrations"
)

// escrowDeposit splits and seals a key on this machine, to the custodians
// of the roster in force as verified from the pinned genesis, and escrows
// it.
func escrowDeposit(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis, pseudonymToken string
	fs := c.newFlags(append(clientSettings(&cl), setting{flag: "roster-genesis", env: vars("MEDIATOR_ROSTER_GENESIS"), value: rosterDigest(&genesis),
		usage: "the digest of the roster genesis you trust; the key is sealed to the custodians of the roster version in force, verified from it"},
		pseudonymTokenSetting(&pseudonymToken))...)
	conversation := fs.String("conversation", "", "the conversation id, as the platform gives it (sent as its pseudonym, computed here)")
	keyID := fs.String("key-id", "", "the key's id within the conversation (an epoch, a session)")
	keyFile := fs.String("key-file", "", "file holding the raw key bytes (16–64)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("escrow deposit: --roster-genesis (or MEDIATOR_ROSTER_GENESIS) is required: the key is sealed only to custodians of a roster that verifies from a genesis you pinned")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	if err := usePseudonyms(ctx, "escrow deposit", cli, genesis, pseudonymToken, *conversation); err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("escrow deposit: --key-file: %w", err)
	}
	defer clear(key)
	d, err := cli.DepositByRoster(ctx, genesis, *conversation, *keyID, key)
	if errors.Is(err, client.ErrReceipt) {
		return fmt.Errorf("escrow deposit: %w; do not count %s/%s as escrowed", err, *conversation, *keyID)
	}
	if err != nil {
		return err
	}
	verb := "escrowed"
	if !d.Created {
		verb = "already escrowed"
	}
	fmt.Fprintf(c.stdout, "%s %s/%s as escrow %s: %d of %d custodians (%v), commitment %s, audit seq %d; the conversation's pseudonym is %s\n",
		verb, *conversation, *keyID, d.EscrowID, d.Threshold, d.Shares, d.Custodians, d.KeyCommitment, d.AuditSeq, d.Conversation)
	return nil
}

// escrowCustodians prints the custodian set the mediator serves and its
// digest.
func escrowCustodians(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	if err := c.newFlags(clientSettings(&cl)...).Parse(args); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	set, digest, err := cli.FetchCustodianSet(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "threshold %d of %d\n", set.Threshold, len(set.Custodians))
	for i, cu := range set.Custodians {
		fmt.Fprintf(c.stdout, "%d %s hpke %s\n", i+1, cu.Name, cu.HPKEKey.Fingerprint())
	}
	fmt.Fprintf(c.stdout, "digest %s\n", digest)
	fmt.Fprintln(c.stderr, "Compare the digest with the one your custodians' operators publish before pinning it (MEDIATOR_CUSTODIAN_SET).")
	return nil
}

// escrowOperatorSettings are what the operator verbs (destroy, hold,
// release-hold) use of serve's configuration: the database and the
// custodians.
func escrowOperatorSettings(cfg *serveConfig) []setting {
	return []setting{
		databaseURLSetting(&cfg.DatabaseURL, "PostgreSQL URL"),
		databaseURLFileSetting(&cfg.DatabaseURLFile),
		custodiansSetting(&cfg.Custodians),
		logLevelSetting(&cfg.LogLevel),
	}
}

// bySetting is who acts on a legal hold: by default the login name.
func bySetting(dst *string) setting {
	return setting{flag: "by", env: vars("USER"), value: text(dst, ""), usage: "who acts"}
}

// openEscrowOperator connects an operator verb to the database and the
// custodians of cfg; the caller calls the returned close.
func openEscrowOperator(ctx context.Context, c *call, cfg serveConfig) (*escrow.Service, func(), error) {
	url, err := readDatabaseURL(cfg.DatabaseURL, cfg.DatabaseURLFile)
	if err != nil {
		return nil, nil, fmt.Errorf("escrow: %w", err)
	}
	if url == "" {
		return nil, nil, errors.New("escrow: --database-url (or DATABASE_URL) is required")
	}
	cfg.DatabaseURL = url
	log := newLogger(c.stderr, cfg.LogLevel, cfg.secrets())
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("escrow: database: %w", err)
	}
	if err := migrations.CheckPool(ctx, pool, schemaCheckTimeout); err != nil {
		pool.Close()
		return nil, nil, err
	}
	svc, err := newEscrowService(cfg, pool, audit.NewTxAppender(), log, nil)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return svc, pool.Close, nil
}

// escrowOperator parses an operator verb's flags (settings and the plain
// flags declare adds), connects it to the database and the custodians,
// and runs it with the escrow service.
func escrowOperator(ctx context.Context, c *call, args []string, settings []setting, declare func(fs *flagSet),
	run func(svc *escrow.Service) error) error {
	var cfg serveConfig
	fs := c.newFlags(append(escrowOperatorSettings(&cfg), settings...)...)
	declare(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	svc, closeDB, err := openEscrowOperator(ctx, c, cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	return run(svc)
}

// escrowDestroy has every custodian destroy its shares of the keys
// deposited before --before, except under legal hold. It first shows what
// is due, read from the database without changing anything, and asks
// (--yes, --dry-run).
func escrowDestroy(ctx context.Context, c *call, args []string) error {
	var before *string
	var g guard
	declare := func(fs *flagSet) {
		before = fs.String("before", "", "destroy escrows deposited before this RFC 3339 time or YYYY-MM-DD date (at most now)")
		g = declareGuard(fs)
	}
	return escrowOperator(ctx, c, args, nil, declare, func(svc *escrow.Service) error {
		t, err := parseDate(*before)
		if err != nil {
			return err
		}
		out := g.out(c)
		// Only what is shown is destroyed: a cutoff in the future would
		// also take keys deposited after the question was answered.
		if now := time.Now(); t.After(now) {
			fmt.Fprintf(out, "WARNING: --before %s is in the future: every key deposited until now (%s) is due\n", fmtTime(t), fmtTime(now))
			t = now
		}
		plan, err := svc.PlanDestroy(ctx, t)
		if err != nil {
			return err
		}
		writeDestroyPlan(out, plan)
		if plan.Due == 0 || len(plan.Custodians) == 0 {
			fmt.Fprintln(c.stdout, "nothing to destroy")
			return nil
		}
		question := fmt.Sprintf("destroy %s at every custodian? This cannot be undone.", plural(plan.Due, "escrowed key"))
		if ok, err := c.proceed(g, "escrow destroy", question); !ok {
			return err
		}
		rep, err := svc.Destroy(ctx, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "destroyed %d, kept under legal hold %d, failed %d\n", len(rep.Destroyed), len(rep.Held), len(rep.Failed))
		for id, why := range rep.Failed {
			fmt.Fprintf(c.stdout, "FAIL %s: %s\n", id, why)
		}
		if len(rep.Failed) > 0 {
			return exitCode(1)
		}
		return nil
	})
}

// writeDestroyPlan writes what a destruction run will do.
func writeDestroyPlan(w io.Writer, p escrow.DestroyPlan) {
	fmt.Fprintf(w, "escrow destroy: keys deposited before %s, as the database holds them now\n", fmtTime(p.Before))
	if p.Due == 0 {
		fmt.Fprintf(w, "  due        none\n")
	} else {
		fmt.Fprintf(w, "  due        %s of %s, deposited %s to %s\n", plural(p.Due, "escrowed key"), plural(p.Conversations, "conversation"),
			fmtTime(p.Oldest), fmtTime(p.Newest))
	}
	if p.Held > 0 {
		fmt.Fprintf(w, "  held back  %s of %s under a legal hold: kept\n", plural(p.Held, "escrowed key"), plural(p.HeldConversations, "conversation"))
	} else {
		fmt.Fprintf(w, "  held back  none (no legal hold covers a key past the cutoff)\n")
	}
	if len(p.Custodians) == 0 {
		fmt.Fprintf(w, "  custodians none configured (--custodians): nothing can be destroyed\n")
		return
	}
	fmt.Fprintf(w, "  custodians %s: each destroys its share, unless its own minimum retention or a hold it holds keeps it\n",
		strings.Join(p.Custodians, ", "))
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// fmtTime is t in UTC to the second.
func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// escrowHold puts a conversation under a legal hold, at the mediator and
// at every custodian.
func escrowHold(ctx context.Context, c *call, args []string) error {
	var by string
	var conversation, reason *string
	declare := func(fs *flagSet) {
		conversation = fs.String("conversation", "", "the conversation to hold")
		reason = fs.String("reason", "", "why (case, order); kept in the audit log")
	}
	return escrowOperator(ctx, c, args, []setting{bySetting(&by)}, declare, func(svc *escrow.Service) error {
		id, err := svc.PlaceHold(ctx, *conversation, *reason, by)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "legal hold %s placed on conversation %q\n", id, *conversation)
		return nil
	})
}

// escrowReleaseHold records a legal hold's release at the mediator. The
// custodians keep the hold, and refuse to destroy the conversation's
// shares, until approvers who meet the roster's rule deliver a signed
// lift (escrow hold-sign, escrow hold-deliver). It first shows the hold
// and asks (--yes, --dry-run).
func escrowReleaseHold(ctx context.Context, c *call, args []string) error {
	var by string
	var holdID *string
	var g guard
	declare := func(fs *flagSet) {
		holdID = fs.String("id", "", "the hold id")
		g = declareGuard(fs)
	}
	return escrowOperator(ctx, c, args, []setting{bySetting(&by)}, declare, func(svc *escrow.Service) error {
		h, err := svc.HoldRecord(ctx, *holdID)
		if err != nil {
			return fmt.Errorf("escrow release-hold: %w", err)
		}
		if h.Released() {
			return fmt.Errorf("escrow release-hold: hold %s was released at the mediator already, by %s at %s", h.ID, h.ReleasedBy, fmtTime(h.ReleasedAt))
		}
		out := g.out(c)
		fmt.Fprintf(out, "legal hold %s\n  conversation %s\n  reason       %s\n  placed       by %s at %s\n",
			h.ID, h.ConversationID, h.Reason, h.PlacedBy, fmtTime(h.PlacedAt))
		if h.OtherActive > 0 {
			fmt.Fprintf(out, "  others       %s on the conversation still keep it held at the mediator\n", plural(h.OtherActive, "other active hold"))
		} else {
			fmt.Fprintf(out, "  others       none: once released, the mediator's destruction runs no longer skip the conversation\n")
		}
		fmt.Fprintf(out, "  custodians   keep the hold until approvers who meet the roster's rule sign its lift\n")
		question := fmt.Sprintf("release legal hold %s on conversation %s at the mediator, as %s?", h.ID, h.ConversationID, by)
		if ok, err := c.proceed(g, "escrow release-hold", question); !ok {
			return err
		}
		if err := svc.ReleaseHold(ctx, h.ID, by); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "legal hold %s released at the mediator only\n", h.ID)
		fmt.Fprintf(c.stderr, "NOTE: the custodians keep hold %s and destroy nothing of its conversation until approvers who meet the roster's rule sign its lift:\n"+
			"  each runs: mediator escrow hold-sign --hold-id %s --conversation %s --action lift --key FILE --as ID >> lift.sigs\n"+
			"  then:      mediator escrow hold-deliver --hold-id %s --conversation %s --action lift --signatures lift.sigs --genesis G\n",
			h.ID, h.ID, h.ConversationID, h.ID, h.ConversationID)
		return nil
	})
}

// newEscrowService builds the escrow service on the custodians file, or
// without custodians (deposits answer 503) when there is none.
func newEscrowService(cfg serveConfig, pool *pgxpool.Pool, log audit.TxAppender, logger *slog.Logger, metrics *escrow.Metrics) (*escrow.Service, error) {
	rows := escrow.NewPGRows(pool, log)
	c := escrow.Config{Deposits: rows, Lifecycle: rows, Log: logger, Metrics: metrics}
	if cfg.Custodians != "" {
		b, err := os.ReadFile(cfg.Custodians)
		if err != nil {
			return nil, fmt.Errorf("custodians: %w", err)
		}
		f, err := escrow.ParseCustodians(b)
		if err != nil {
			return nil, err
		}
		if c.Remotes, err = f.Remotes(); err != nil {
			return nil, err
		}
		c.Set = f.Set()
	}
	return escrow.New(c)
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("escrow destroy: --before must be an RFC 3339 time or a YYYY-MM-DD date")
}
