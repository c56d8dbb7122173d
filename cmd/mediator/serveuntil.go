package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// serveUntilStopped serves srv on ln (with TLS when certFile is set) until
// it fails, ctx ends or the process gets SIGTERM, then shuts it down,
// giving requests in flight up to 30 s.
func serveUntilStopped(ctx context.Context, srv *http.Server, ln net.Listener, certFile, keyFile string) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	defer signal.Stop(stop)
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	case <-stop:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
