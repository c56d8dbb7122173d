package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/loadgen"
)

// loadgenSettings is loadgen's table of settings: the mediator it loads,
// its tokens, where else to mint them, and the database to compare with.
func loadgenSettings(cfg *loadgen.Config, stateDir, dsn *string) []setting {
	return []setting{
		{flag: "url", env: vars("MEDIATOR_ADDR"), value: mediatorURL(&cfg.URL, "http://127.0.0.1:8080"), usage: "the mediator to load (loopback only in tests)"},
		{flag: "agent", value: text(&cfg.AgentURL, ""),
			usage: "send through this gateway agent instead (http://127.0.0.1:PORT or unix:///path): raw identifiers and raw keys, no token; --url still names the mediator, for the checkpoint, proofs and memory"},
		{flag: "token", env: vars("MEDIATOR_INGEST_TOKEN"), value: text(&cfg.IngestToken, ""), secret: true,
			usage: "bearer token with the ingest role (with --deposits, the depositor role); default: minted from the dev state dir"},
		{flag: "auditor-token", env: vars("MEDIATOR_AUDITOR_TOKEN"), value: text(&cfg.AuditorToken, ""), secret: true,
			usage: "auditor token, to measure checkpoint lag; default: minted from the dev state dir"},
		{flag: "metrics-token", env: vars("MEDIATOR_METRICS_TOKEN"), value: text(&cfg.MetricsToken, ""), secret: true,
			usage: "token of the metrics role, to read the server's memory from /metrics; default: minted from the dev state dir"},
		devStateDirSetting(stateDir, "dev state dir to mint tokens from"),
		databaseURLSetting(dsn, "PostgreSQL URL for --copy-baseline"),
	}
}

// loadgenCmd sends realistic events to a running mediator and reports what
// it measured. Without tokens it mints them from the dev instance's issuer.
func loadgenCmd(ctx context.Context, c *call, args []string) error {
	var cfg loadgen.Config
	var stateDir, dsn string
	fs := c.newFlags(loadgenSettings(&cfg, &stateDir, &dsn)...)
	fs.Float64Var(&cfg.Rate, "rate", 0, "events per second; 0 sends as fast as the server answers")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send (at most 1h)")
	fs.Int64Var(&cfg.Segment, "segment", 0, "report the rate of every segment of this many acknowledged events, and the last against the first (e.g. 1000000)")
	fs.IntVar(&cfg.MaxEvents, "events", 0, "stop after this many events (0: only the duration limits)")
	fs.IntVar(&cfg.Batch, "batch", 1000, "events per request (at most 10000)")
	fs.IntVar(&cfg.Workers, "workers", 0, "concurrent requests (0: 4 for events, 32 for deposits and maximal requests)")
	fs.BoolVar(&cfg.Cover, "cover", false, "event n names identifier n of each pool rather than one at random: the first 10,000 events name every identifier the generator uses, which warms an agent's cache")
	fs.IntVar(&cfg.Proofs, "proofs", 0, "afterwards, time this many inclusion proofs against the latest checkpoint, one at a time, with nothing else of loadgen running")
	fs.StringVar(&cfg.MirrorURL, "mirror", "", "a mirror's copy of the log, <mirror URL>/<origin hash> (public reads, as `mediator dev --mirror` runs it): also measure mirror lag, acknowledgement to the mirror's cosigned checkpoint")
	fs.IntVar(&cfg.Tiles, "tiles", 0, "afterwards, time this many random full C2SP tiles (level 0) from /v1/audit/tlog/; with --copy-baseline, against a COPY TO of the same hashes")
	fs.Float64Var(&cfg.TileRate, "tile-rate", 0, "with --tile-readers: tiles a second each reader fetches during the run (0: as fast as answered)")
	fs.IntVar(&cfg.TileReaders, "tile-readers", 0, "readers fetching random full tiles throughout the run (what serving tiles costs ingest), and for --tiles afterwards")
	baseline := fs.Bool("copy-baseline", false, "afterwards, time a single raw PostgreSQL COPY of the same rows (needs DATABASE_URL of a role that may create tables)")
	maximal := fs.Bool("maximal", false, "send maximal 8 MiB requests from --workers gateways at once, retrying on 429 and 503, and report the answers and the server's peak memory")
	requests := fs.Int("requests", 2, "with --maximal: maximal requests per worker")
	deposits := fs.Bool("deposits", false, "escrow random keys (POST /v1/escrow/keys) instead of sending events; --token is then a depositor token")
	conversations := fs.Int("conversations", 1000, "with --deposits: how many conversations the keys are spread over (1: all under RUN-0)")
	runID := fs.String("run-id", "", "with --deposits: the prefix of the conversation ids (RUN-0, RUN-1, …); random when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *deposits {
		return depositLoad(ctx, loadgen.DepositConfig{Conversations: *conversations, RunID: *runID, AgentURL: cfg.AgentURL}, cfg, stateDir, c.stdout)
	}
	if cfg.Duration > time.Hour {
		return errors.New("loadgen: --duration is at most 1h")
	}
	if cfg.Batch < 1 || cfg.Batch > 10000 {
		return errors.New("loadgen: --batch must be 1..10000")
	}
	if cfg.IngestToken == "" || cfg.AuditorToken == "" || cfg.MetricsToken == "" {
		iss, err := dev.LoadIssuer(stateDir)
		if err != nil {
			return fmt.Errorf("loadgen: give --token (and --auditor-token), or run `mediator dev` so tokens can be minted: %w", err)
		}
		if cfg.IngestToken == "" {
			if cfg.IngestToken, err = iss.Issue("loadgen", []string{"ingest"}, time.Hour); err != nil {
				return err
			}
		}
		if cfg.AuditorToken == "" {
			if cfg.AuditorToken, err = iss.Issue("loadgen-auditor", []string{"auditor"}, time.Hour); err != nil {
				return err
			}
		}
		if cfg.MetricsToken == "" {
			if cfg.MetricsToken, err = iss.Issue("loadgen-metrics", []string{"metrics"}, time.Hour); err != nil {
				return err
			}
		}
	}
	// The generator shares the machine with the server it measures: keep
	// its own garbage collection cheap too.
	setGCPercent(newLogger(io.Discard, "info", nil))
	if *maximal {
		rep, err := loadgen.RunMaximal(ctx, loadgen.MaximalConfig{URL: cfg.URL, IngestToken: cfg.IngestToken,
			MetricsToken: cfg.MetricsToken, Workers: cfg.Workers, Requests: *requests})
		fmt.Fprint(c.stdout, rep.String())
		return err
	}
	rep, err := loadgen.Run(ctx, cfg, c.stderr)
	if err != nil {
		return err
	}
	fmt.Fprint(c.stdout, rep.String())
	if *baseline {
		if dsn == "" {
			return errors.New("loadgen: --copy-baseline needs --database-url or DATABASE_URL")
		}
		rate, err := loadgen.CopyBaseline(ctx, dsn, int(rep.Events))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "a single raw COPY of the same %d rows: %.0f rows/s; ingest reached %.2f of it\n", rep.Events, rate, rep.EventsPerSec/rate)
		if rep.TileTreeSize > 0 {
			hashRate, err := loadgen.HashCopyBaseline(ctx, dsn, rep.TileTreeSize)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "a binary COPY TO of the leaf hashes of %d entries: %.1f MB/s; tiles reached %.2f of it\n", rep.TileTreeSize, hashRate/1e6, rep.TileBytesPerSec/hashRate)
		}
	}
	if rep.Errors > 0 {
		return exitCode(1)
	}
	return nil
}

// depositLoad runs `mediator loadgen --deposits`: key deposits as fast as
// the server answers, with cfg.Workers depositors (default 32).
func depositLoad(ctx context.Context, dc loadgen.DepositConfig, cfg loadgen.Config, stateDir string, stdout io.Writer) error {
	if cfg.Duration > 10*time.Minute {
		return errors.New("loadgen: --duration is at most 10m")
	}
	dc.URL, dc.Token, dc.Duration, dc.Max, dc.Workers = cfg.URL, cfg.IngestToken, cfg.Duration, cfg.MaxEvents, cfg.Workers
	if dc.Token == "" && dc.AgentURL == "" {
		iss, err := dev.LoadIssuer(stateDir)
		if err != nil {
			return fmt.Errorf("loadgen: give --token, or run `mediator dev` so tokens can be minted: %w", err)
		}
		if dc.Token, err = iss.Issue("loadgen-depositor", []string{"depositor"}, time.Hour); err != nil {
			return err
		}
	}
	setGCPercent(newLogger(io.Discard, "info", nil))
	rep, err := loadgen.Deposits(ctx, dc)
	fmt.Fprint(stdout, rep.String())
	if err != nil {
		return err
	}
	return nil
}
