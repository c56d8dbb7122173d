package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/migrations"
)

// devFormationDatabase is the mediator's database in the dev formation.
const devFormationDatabase = "mediator_dev"

// startDevFormation runs the mediator's database as the high-availability
// topology of docs/operations.md: a pg_auto_failover monitor, a primary and
// its synchronous standby on loopback ports (pg_auto_failover installed
// from Debian's packages if missing), migrated. It returns the URL to write
// through (read-write, both nodes), the URL to read through
// (prefer-standby), and the function that stops the formation. While it
// runs, SIGUSR1 loses the primary's node (SIGKILL to its keeper and
// postmaster) and, once the standby is promoted, brings the lost node
// back as the new standby: a failover to measure.
func startDevFormation(ctx context.Context, log *slog.Logger) (write, read string, stop func(), err error) {
	f, err := servers.StartFormation(ctx, log)
	if err != nil {
		return "", "", nil, fmt.Errorf("dev: --ha: %w", err)
	}
	if err := f.CreateDatabase(ctx, devFormationDatabase); err != nil {
		f.Stop()
		return "", "", nil, err
	}
	write = f.URL(devFormationDatabase, "read-write")
	if err := migrations.Apply(ctx, write, log); err != nil {
		f.Stop()
		return "", "", nil, fmt.Errorf("dev: --ha: migrate: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-fctx.Done():
				return
			case <-sig:
				devFailover(fctx, f, log)
			}
		}
	}()
	stop = func() {
		signal.Stop(sig)
		cancel()
		<-done
		f.Stop()
	}
	log.Info("dev: the mediator's database is a pg_auto_failover formation; kill -USR1 this process for a failover",
		"pid", os.Getpid(), "node1", f.Nodes[0].Port, "node2", f.Nodes[1].Port)
	return write, f.URL(devFormationDatabase, "prefer-standby"), stop, nil
}

// devFailover loses the primary's node, waits for the standby's promotion,
// and restarts the lost node as the new standby.
func devFailover(ctx context.Context, f *servers.Formation, log *slog.Logger) {
	primary, err := f.WaitSettled(ctx, time.Minute)
	if err != nil {
		log.Error("dev: failover: the formation is not settled", "err", err)
		return
	}
	start := time.Now()
	log.Info("dev: failover: losing the primary's node", "node", primary.Name)
	primary.Kill()
	next, err := f.WaitSettled(ctx, 2*time.Minute)
	if err != nil {
		log.Error("dev: failover: no new primary", "err", err)
		return
	}
	log.Info("dev: failover: a new primary accepts writes", "node", next.Name, "after_ms", time.Since(start).Milliseconds())
	if err := primary.Start(ctx); err != nil {
		log.Error("dev: failover: restart the lost node", "err", err)
		return
	}
	if _, err := f.WaitSettled(ctx, 2*time.Minute); err != nil {
		log.Error("dev: failover: the lost node did not rejoin", "err", err)
		return
	}
	log.Info("dev: failover: the lost node is the new standby", "node", primary.Name, "after_ms", time.Since(start).Milliseconds())
}
