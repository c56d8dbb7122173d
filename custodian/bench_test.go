package custodian_test

import (
	"context"
	"crypto/rand"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness/custodians"
	"github.com/mediatorhq/mediator/wire"
)

// storeBatch is how many shares one store call carries: what the mediator
// merges at 128 concurrent depositors (docs/performance.md).
const storeBatch = 24

// BenchmarkStoreAndCommit is one custodian's side of a deposit, in calls
// of storeBatch shares: open (HPKE), check the index, wrap (one Transit
// call), write (one KV entry), then commit (one KV read and one write)
// and sign each receipt. It reports the custodian process's CPU per share
// (user and system, from getrusage; the Vault server is another process
// and not counted), which is its CPU per deposit. The HTTP handling of
// the custodian's API is not in it.
func BenchmarkStoreAndCommit(b *testing.B) {
	ctx := context.Background()
	set := custodians.Start(b, env, dev.CustodianOptions{})
	c := set.Running[0]
	sp, err := shares.NewSplitter(set.SharesSet())
	if err != nil {
		b.Fatal(err)
	}
	calls := (b.N + storeBatch - 1) / storeBatch
	batches := make([][]wire.ShareToStore, calls)
	key := make([]byte, 32)
	for i := range calls {
		for range storeBatch {
			rand.Read(key)
			keyID := uuid.NewString() // the index keeps one deposit of a key
			bd := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(time.Now())}
			commitment, sealed, err := sp.SplitBound("conv-bench", keyID, bd, key)
			if err != nil {
				b.Fatal(err)
			}
			batches[i] = append(batches[i], wire.ShareToStore{EscrowID: bd.EscrowID, ConversationID: "conv-bench",
				KeyID: keyID, Index: 1, Commitment: commitment, Sealed: sealed[0].Sealed, Depositor: "gw", DepositedAt: bd.DepositedAt})
		}
	}
	b.ResetTimer()
	start := cpu()
	for _, batch := range batches {
		res, err := c.StoreShares(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		refs := make([]wire.ShareRef, len(res))
		for j, r := range res {
			if r.Stored == nil {
				b.Fatalf("not stored: %+v", r.Error)
			}
			refs[j] = wire.ShareRef{EscrowID: batch[j].EscrowID, Locator: r.Stored.Locator}
		}
		com, err := c.CommitShares(ctx, refs)
		if err != nil || com[0].Receipt == nil {
			b.Fatalf("commit: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-start)/float64(time.Millisecond)/float64(calls*storeBatch), "cpu-ms/share")
}

// cpu is this process's CPU time so far, user and system.
func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
