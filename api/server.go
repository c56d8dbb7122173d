package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server timeouts. Each bounds what one slow or hostile client can hold.
const (
	// readHeaderTimeout stops slowloris-style clients that trickle headers.
	readHeaderTimeout = 5 * time.Second
	// readTimeout covers the largest body we accept (8 MiB) on a slow link.
	readTimeout = 60 * time.Second
	// writeTimeout bounds a response, including the commit it waits for.
	writeTimeout = 60 * time.Second
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes is ample for a bearer token and ordinary headers.
	maxHeaderBytes = 64 << 10
)

// NewServer returns an http.Server for h with the timeouts above.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves on ln until ctx ends, then stops accepting, waits up to
// drain for in-flight requests to finish, and returns. A request that was
// acknowledged was fully handled: Shutdown never cuts a handler short.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "drain_timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	log.Info("shut down cleanly")
	return nil
}
