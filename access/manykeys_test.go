package access

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/shares"
)

// depositMany escrows n fresh keys under convo, concurrently as many
// depositors' gateways would, and returns them by key id.
func (w *world) depositMany(tb testing.TB, convo string, n int) map[string][]byte {
	tb.Helper()
	convo = ps(convo)
	const depositors = 16
	set := w.custodians.SharesSet()
	keys := make(map[string][]byte, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	errs := make(chan error, depositors)
	next := make(chan int)
	for range depositors {
		wg.Go(func() {
			for i := range next {
				keyID := fmt.Sprintf("key-%06d", i)
				key := make([]byte, 32)
				rand.Read(key)
				commitment, sealed, err := shares.Split(set, convo, keyID, key)
				if err == nil {
					_, _, err = w.escrow.Deposit(context.Background(), escrow.DepositRequest{ConversationID: convo, KeyID: keyID,
						Commitment: commitment, CustodianSet: w.custodians.Digest, Threshold: set.Threshold, Shares: sealed, Depositor: "gw"})
				}
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("deposit %s: %w", keyID, err))
					mu.Unlock()
					errs <- err
					return
				}
				mu.Lock()
				keys[keyID] = key
				mu.Unlock()
			}
		})
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-errs:
				return
			}
		}
	}()
	wg.Wait()
	if len(keys) != n {
		tb.Fatalf("%d of %d keys escrowed: %v", len(keys), n, first)
	}
	return keys
}

// BenchmarkRelease10001 is the release of issue 21: one conversation
// under which one depositor escrowed 10,001 keys, more than a custodian
// answers in one call, released in chunks of escrow.DefaultReleaseChunk
// by five custodians (K=3), then checked, opened and combined by the
// officer's client (client.Open). MEDIATOR_BENCH_RELEASE_KEYS sets another
// number of keys. Escrowing, filing and approving are not timed; run it
// with -benchtime 1x. It reports release-s (the mediator's release: every
// custodian's checks and sealing, the shares kept and logged) and open-s
// (the client) apart, and answer-MB, the size of the officer's answer in
// all its pages (the pages after the first count as release time).
func BenchmarkRelease10001(b *testing.B) {
	n := 10001
	if v := os.Getenv("MEDIATOR_BENCH_RELEASE_KEYS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("MEDIATOR_BENCH_RELEASE_KEYS=%q: want a positive number", v)
		}
	}
	w := newWorld(b)
	ctx := context.Background()
	t0 := time.Now()
	w.depositMany(b, "conv-many", n)
	b.Logf("%d keys escrowed in %v", n, time.Since(t0).Round(time.Millisecond))
	var releaseTime, openTime time.Duration
	var answerBytes int // the officer's answer, as JSON
	for b.Loop() {
		b.StopTimer()
		r, recipient := w.approved(b, "conv-many")
		b.StartTimer()
		t0 := time.Now()
		// Released in calls of at most DefaultReleaseBudget each, as the
		// officer's client asks again while it answers in progress.
		rel, err := w.svc.Release(ctx, "olga", r.ID)
		for calls := 1; ; calls++ {
			var ip *InProgressError
			if !errors.As(err, &ip) {
				b.Logf("released in %d calls", calls)
				break
			}
			rel, err = w.svc.Release(ctx, "olga", r.ID)
		}
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		// The officer opens the answer page by page (AnswerPage keys),
		// fetching each after the first as the client does.
		var opened int
		var fetch time.Duration
		answerBytes = 0
		for page := rel; ; {
			opened += len(w.openVerified(b, recipient, r, page))
			b.StopTimer()
			answer, err := json.Marshal(page.Answer())
			if err != nil {
				b.Fatal(err)
			}
			answerBytes += len(answer)
			b.StartTimer()
			if page.NextAfter == "" {
				break
			}
			tf := time.Now()
			if page, err = w.svc.Released(ctx, "olga", r.ID, page.NextAfter, 0); err != nil {
				b.Fatal(err)
			}
			fetch += time.Since(tf)
		}
		if opened != n {
			b.Fatalf("%d keys recovered, want %d", opened, n)
		}
		releaseTime += t1.Sub(t0) + fetch
		openTime += time.Since(t1) - fetch
	}
	b.ReportMetric(releaseTime.Seconds()/float64(b.N), "release-s")
	b.ReportMetric(openTime.Seconds()/float64(b.N), "open-s")
	b.ReportMetric(float64(answerBytes)/1e6, "answer-MB")
}
