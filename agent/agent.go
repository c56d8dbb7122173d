// Package agent is the gateway agent (`mediator agent`): a small service
// that runs beside a messaging gateway, written in any language, and does
// on the gateway's host what the Go client does for a Go gateway. It takes
// events and raw conversation keys with raw identifiers (phone numbers,
// conversation ids) from local callers, pseudonymises every identifier
// through the pseudonym service the verified roster names, splits and
// seals each key to the custodians of that roster and checks their
// receipts, and forwards to the mediator only what the mediator may see.
//
// It listens only on a unix socket (mode 0600) or a loopback address and
// asks its callers for no token: whoever can reach it acts as the
// gateway. It authenticates to the mediator and to the pseudonym service
// with tokens of its own. The roster chain is verified from the pinned
// genesis at start and every Config.RosterRefresh, never per deposit, and
// the newest version verified is kept in a state file, so that a
// restarted agent still refuses an older chain.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/job"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
)

// Timeouts and bounds of the agent, each with its reason.
const (
	// mediatorTimeout bounds one call to the mediator: far above a
	// healthy mediator's answer to a deposit or a full ingest request.
	mediatorTimeout = 2 * time.Minute
	// requestTimeout bounds the work of one caller's request, the
	// pseudonym service's evaluations and the mediator's answer
	// together, so that a hung dependency does not hold callers forever.
	requestTimeout = 90 * time.Second
	// shutdownTimeout is how long a stopping agent waits for requests in
	// flight, whose answers say whether the mediator kept anything.
	shutdownTimeout = 30 * time.Second
	// idleConnsPerHost keeps connections to the mediator open for
	// concurrent callers, rather than opening one per deposit. A gateway
	// may have a hundred deposits in flight, and the custodians take the
	// shares of concurrent deposits in one call, so concurrency is
	// throughput: 64 held 128 depositors to 285 deposits/s, 256 let them
	// reach 335 (docs/performance.md).
	idleConnsPerHost = 256
	// minMismatchRefresh is the least time between two verifications of
	// the chain that set-mismatch answers cause: a mediator answering
	// every deposit so makes one verification a second, not one each.
	minMismatchRefresh = time.Second
)

// Agent is the gateway agent: an http.Handler for its local callers, with
// the custodian set of the roster version in force verified and cached.
// It is safe for concurrent use. Make one with New; Serve runs it.
type Agent struct {
	log            *slog.Logger
	genesis        string
	stateFile      string
	refreshEvery   time.Duration
	pseudonymToken string
	cacheSize      int

	mediator *client.Client
	names    *pseudonyms
	custody  atomic.Pointer[custody]
	mux      *http.ServeMux

	// refreshMu serialises verifications of the chain: the ticker's and
	// those a set mismatch causes. It guards refreshedAt and saved.
	refreshMu   sync.Mutex
	refreshedAt time.Time
	saved       State // the memory last written to the state file
}

// custody is what deposits are sealed for: the custodian set of the roster
// version in force, verified from the genesis, with its keys parsed once.
type custody struct {
	splitter *shares.Splitter
	pinned   string // the set's digest, which the mediator checks deposits against
	version  uint64 // the roster version it is the set of
}

// New makes an agent of cfg: it loads the roster memory from the state
// file (a file for another genesis is ErrOtherGenesis), verifies the
// roster chain from the genesis (an older chain than the memory is
// client.ErrRosterRollback), connects the pseudonym service the roster
// names, trusting only the key it names, caches the roster's custodian
// set and writes the memory back. It fails if any of that fails: an agent
// that cannot pseudonymise or seal does not start.
//
// Cost: two GETs of the roster chain and their verification.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		return nil, errors.New("agent: no logger")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = idleConnsPerHost
	if cfg.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	}
	mediator, err := client.New(cfg.MediatorURL, cfg.token, &http.Client{Timeout: mediatorTimeout, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	refreshEvery := cfg.RosterRefresh
	if refreshEvery <= 0 {
		refreshEvery = DefaultRosterRefresh
	}
	a := &Agent{log: log, genesis: cfg.RosterGenesis, stateFile: cfg.StateFile, refreshEvery: refreshEvery,
		pseudonymToken: cfg.pseudonymToken, cacheSize: cfg.CacheSize, mediator: mediator, names: &pseudonyms{}}
	st, ok, err := LoadState(cfg.StateFile, cfg.RosterGenesis)
	if err != nil {
		return nil, err
	}
	if ok {
		mediator.RememberRoster(st.Genesis, st.Version, st.Digest)
		a.saved = st
	}
	mediator.UsePseudonyms(a.names)
	if _, err := a.refresh(ctx, nil); err != nil {
		return nil, err
	}
	a.mux = a.routes()
	return a, nil
}

// RosterVersion is the roster version whose custodian set deposits are
// sealed for.
func (a *Agent) RosterVersion() uint64 { return a.custody.Load().version }

// ServeHTTP answers a local caller.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Serve answers callers on ln, which must be a unix socket or loopback
// (Listen), and verifies the roster chain again every Config.RosterRefresh,
// until ctx ends; it then stops accepting, waits up to 30s for the
// requests in flight, and returns nil. It logs one line as it starts,
// with the address and the roster version in force.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	if !isLocal(ln.Addr()) {
		return fmt.Errorf("agent: serve on %s: %w", ln.Addr(), ErrNotLocal)
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: requestTimeout + 30*time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	a.log.Info("agent serving", "listen", ln.Addr().String(), "roster_version", a.RosterVersion())
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.keepRosterFresh(refreshCtx) })
	defer wg.Wait()
	defer stopRefresh()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("agent: shutdown: %w", err)
	}
	a.log.Info("agent stopped")
	return nil
}

// keepRosterFresh verifies the chain every refreshEvery until ctx ends. A
// failure keeps the set verified before and is logged; a rollback is
// logged as an error, as it is the mediator's lie or its operator's.
func (a *Agent) keepRosterFresh(ctx context.Context) {
	job.Every(ctx, a.refreshEvery, func() {
		before := a.RosterVersion()
		cu, err := a.refresh(ctx, nil)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, client.ErrRosterRollback):
			a.log.Error("agent: the mediator serves a roster chain older than one verified before; deposits stay sealed for the version verified",
				"version", before, "err", err)
		case err != nil:
			a.log.Warn("agent: roster refresh failed; deposits stay sealed for the version verified before", "version", before, "err", err)
		case cu.version != before:
			a.log.Info("agent: roster version in force changed", "from", before, "to", cu.version)
		}
	})
}

// refresh verifies the roster chain from the genesis, follows the
// pseudonym service it names, caches its custodian set and writes the
// roster memory to the state file. With stale not nil (a deposit was
// refused for stale's set), it returns the set in force without a
// verification if another already replaced stale or ran within
// minMismatchRefresh.
func (a *Agent) refresh(ctx context.Context, stale *custody) (*custody, error) {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	if cur := a.custody.Load(); stale != nil && (cur != stale || time.Since(a.refreshedAt) < minMismatchRefresh) {
		return cur, nil
	}
	_, versions, err := a.mediator.VerifiedChain(ctx, a.genesis)
	if err != nil {
		return nil, &rosterError{err}
	}
	r := versions[len(versions)-1]
	if err := a.followPseudonymService(ctx, r.Pseudonym); err != nil {
		return nil, err
	}
	cu := a.custody.Load()
	if cu == nil || cu.version != r.Version {
		// The chain extends the version verified before, so a version
		// number seen again is the same roster.
		if cu, err = custodyOf(r); err != nil {
			return nil, err
		}
		a.custody.Store(cu)
	}
	a.refreshedAt = time.Now()
	return cu, a.saveMemory()
}

// custodyOf is the custody of roster version r.
func custodyOf(r roster.Roster) (*custody, error) {
	set := r.Set()
	pinned, err := set.Digest()
	if err != nil {
		return nil, &rosterError{err}
	}
	sp, err := shares.NewSplitter(set)
	if err != nil {
		return nil, &rosterError{fmt.Errorf("the custodian set of roster version %d: %w", r.Version, err)}
	}
	return &custody{splitter: sp, pinned: pinned, version: r.Version}, nil
}

// followPseudonymService makes the agent's pseudonyms come from the
// service entry names, with the key in force there: a new client when
// the URL or the key changed (a rotation), else the one in use, whose
// cache is kept. Called under refreshMu.
func (a *Agent) followPseudonymService(ctx context.Context, entry *roster.PseudonymService) error {
	if entry == nil {
		a.names.use(nil, roster.PseudonymService{})
		return &pseudonymError{client.ErrNoPseudonymService}
	}
	if a.names.current() != nil && sameKeyInForce(a.names.entry, *entry) {
		return nil
	}
	pc, err := a.mediator.PseudonymClient(ctx, a.genesis, a.pseudonymToken, a.cacheSize)
	if err != nil {
		return &rosterError{err}
	}
	first := a.names.current() == nil
	a.names.use(pc, *entry)
	if !first {
		a.log.Info("agent: the roster names another pseudonym service or key; pseudonyms now come from it")
	}
	return nil
}

// sameKeyInForce reports whether a and b name one service URL and one
// key in force (the first): a second key listed for a rotation's overlap
// changes nothing for a client, which trusts only the first.
func sameKeyInForce(a, b roster.PseudonymService) bool {
	return a.URL == b.URL && len(a.PublicKeys) > 0 && len(b.PublicKeys) > 0 && a.PublicKeys[0] == b.PublicKeys[0]
}

// saveMemory writes the client's roster memory to the state file if it
// changed since it was last written. Called under refreshMu.
func (a *Agent) saveMemory() error {
	version, digest, ok := a.mediator.RosterMemory(a.genesis)
	st := State{Genesis: a.genesis, Version: version, Digest: digest}
	if !ok || st == a.saved {
		return nil
	}
	if err := SaveState(a.stateFile, st); err != nil {
		return err
	}
	a.saved = st
	return nil
}

// pseudonyms is the agent's client.Pseudonymizer: the pseudonym client of
// the service the roster in force names. It marks its failures as the
// pseudonym service's (pseudonymError), so that callers are told which
// dependency failed.
type pseudonyms struct {
	cur   atomic.Pointer[pseudonym.Client]
	entry roster.PseudonymService // what cur was made for; under Agent.refreshMu
}

func (p *pseudonyms) current() *pseudonym.Client { return p.cur.Load() }

func (p *pseudonyms) use(c *pseudonym.Client, entry roster.PseudonymService) {
	p.entry = entry
	p.cur.Store(c)
}

// Pseudonyms is (*pseudonym.Client).Pseudonyms of the client in force.
func (p *pseudonyms) Pseudonyms(ctx context.Context, k pseudonym.Kind, values []string) ([]string, error) {
	c := p.cur.Load()
	if c == nil {
		return nil, &pseudonymError{client.ErrNoPseudonymService}
	}
	out, err := c.Pseudonyms(ctx, k, values)
	if err != nil {
		return nil, &pseudonymError{err}
	}
	return out, nil
}

// pseudonymError is a failure of the pseudonym service, or of its
// evaluation's proof (pseudonym.ErrUnverified in its chain).
type pseudonymError struct{ err error }

func (e *pseudonymError) Error() string { return "agent: pseudonym service: " + e.err.Error() }
func (e *pseudonymError) Unwrap() error { return e.err }

// rosterError is a failure to verify the roster chain, or to use what it
// names.
type rosterError struct{ err error }

func (e *rosterError) Error() string { return "agent: roster: " + e.err.Error() }
func (e *rosterError) Unwrap() error { return e.err }
