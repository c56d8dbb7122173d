package loadgen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/shares"
)

// DepositConfig describes a run of key deposits (POST /v1/escrow/keys).
type DepositConfig struct {
	URL      string        // the mediator
	Token    string        // bearer token with the depositor role
	Duration time.Duration // how long to deposit (default 10 s)
	Max      int           // stop after this many deposits; 0 = only Duration limits
	Workers  int           // concurrent depositors (default 32)
	RunID    string        // prefix of conversation ids; random when empty
	// Conversations is how many conversations the keys are spread over
	// (default 1000): 1 puts every key under RunID-0, as a depositor
	// flooding one conversation does.
	Conversations int
	// AgentURL, if set, is a gateway agent the raw keys go to
	// (`{"conversation_id","key_id","key"}`, no token), which splits,
	// seals and pseudonymises them itself; Token and CustodianSet are then
	// unused.
	AgentURL string
	// CustodianSet is the digest of the custodian set to seal to; empty
	// takes the set the mediator serves (the generator trusts the server
	// it measures).
	CustodianSet string
}

// DepositReport is what a deposit run measured.
type DepositReport struct {
	Deposits, Errors int64
	Elapsed          time.Duration
	PerSec           float64
	P50, P99         time.Duration // request sent to response read
}

// String formats r as the final report.
func (r DepositReport) String() string {
	return fmt.Sprintf("deposits: %d, %d errors, %.1fs\nthroughput: %.0f deposits/s\nlatency: p50 %s, p99 %s\n",
		r.Deposits, r.Errors, r.Elapsed.Seconds(), r.PerSec, r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond))
}

// Deposits escrows fresh random 32-byte keys, each under a new key id,
// until Duration or Max is reached, as a gateway does: each key is split
// and sealed to the custodians here (client.DepositTo), and every
// custodian's receipt checked. Only 201 answers count as deposits.
func Deposits(ctx context.Context, cfg DepositConfig) (DepositReport, error) {
	if cfg.AgentURL == "" && (cfg.URL == "" || cfg.Token == "") {
		return DepositReport{}, errors.New("loadgen: URL and depositor token are required")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.RunID == "" {
		cfg.RunID = "deposit-" + strings.ToLower(rand.Text()[:10])
	}
	if cfg.Conversations <= 0 {
		cfg.Conversations = 1000
	}
	// Key ids are new in every run, so that runs under one RunID add keys.
	nonce := strings.ToLower(rand.Text()[:6])
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}}
	var deposit func(ctx context.Context, conversation, keyID string, key []byte) error
	if cfg.AgentURL != "" {
		agent, err := client.NewLocal(cfg.AgentURL, hc)
		if err != nil {
			return DepositReport{}, err
		}
		deposit = func(ctx context.Context, conversation, keyID string, key []byte) error {
			d, err := agent.DepositRawKey(ctx, conversation, keyID, key)
			if err == nil && !d.Created {
				err = errors.New("the agent answered 200 (an existing escrow) for a new key id")
			}
			return err
		}
	} else {
		c, err := client.New(cfg.URL, cfg.Token, hc)
		if err != nil {
			return DepositReport{}, err
		}
		// Conversation ids go as pseudonyms, as a client with a warm cache
		// sends them.
		c.UsePseudonyms(syntheticPseudonyms{})
		set, digest, err := c.FetchCustodianSet(ctx)
		if err != nil {
			return DepositReport{}, err
		}
		if cfg.CustodianSet != "" {
			if err := set.CheckPinned(cfg.CustodianSet); err != nil {
				return DepositReport{}, err
			}
		}
		sp, err := shares.NewSplitter(set)
		if err != nil {
			return DepositReport{}, err
		}
		deposit = func(ctx context.Context, conversation, keyID string, key []byte) error {
			d, err := c.DepositTo(ctx, sp, digest, conversation, keyID, key)
			if err == nil && !d.Created {
				err = errors.New("the mediator answered 200 (an existing escrow) for a new key id")
			}
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		next, ok, errs atomic.Int64
		mu             sync.Mutex
		latencies      []time.Duration
		lastErr        error
	)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			key := make([]byte, 32)
			for ctx.Err() == nil {
				n := next.Add(1)
				if cfg.Max > 0 && n > int64(cfg.Max) {
					return
				}
				rand.Read(key)
				t0 := time.Now()
				err := deposit(ctx, cfg.RunID+"-"+strconv.FormatInt(n%int64(cfg.Conversations), 10),
					"k"+strconv.FormatInt(n, 10)+"-"+nonce, key)
				lat := time.Since(t0)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						mu.Lock()
						lastErr = err
						mu.Unlock()
					}
					continue
				}
				ok.Add(1)
				mu.Lock()
				latencies = append(latencies, lat)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rep := DepositReport{Deposits: ok.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}
	rep.PerSec = float64(rep.Deposits) / rep.Elapsed.Seconds()
	if len(latencies) > 0 {
		slices.Sort(latencies)
		rep.P50 = latencies[len(latencies)/2]
		rep.P99 = latencies[min(len(latencies)-1, len(latencies)*99/100)]
	}
	if rep.Errors > 0 {
		return rep, fmt.Errorf("loadgen: %d deposits failed; last: %w", rep.Errors, lastErr)
	}
	return rep, nil
}

// syntheticPseudonyms pseudonymises as pseudonym.Synthetic: what a
// gateway's client sends once its cache is warm, without a pseudonym
// service in the measurement.
type syntheticPseudonyms struct{}

func (syntheticPseudonyms) Pseudonyms(_ context.Context, k pseudonym.Kind, values []string) ([]string, error) {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = pseudonym.Synthetic(string(k) + "\n" + v)
	}
	return out, nil
}
