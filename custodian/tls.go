package custodian

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// loadClientCAs reads client_ca_file, the PEM bundle of the authorities
// whose client certificates the custodian accepts.
func loadClientCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("custodian: client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("custodian: client_ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Server returns the HTTP server of the custodian's Handler, with its
// timeouts. With client_ca_file, its TLS asks every caller for a client
// certificate and verifies one that is given against that bundle, failing
// the handshake if it does not verify; a caller may give none, as the
// public routes need none, and the routes that need a token refuse it
// (bearer).
func (c *Custodian) Server() *http.Server {
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	if c.cfg.TLSCertFile != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.clientCAs != nil {
			srv.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
			srv.TLSConfig.ClientCAs = c.clientCAs
		}
	}
	return srv
}

// Serve serves srv (from Server) on ln until it is closed: HTTPS when the
// configuration names a certificate, else plain HTTP.
func (c *Custodian) Serve(srv *http.Server, ln net.Listener) error {
	if c.cfg.TLSCertFile != "" {
		return srv.ServeTLS(ln, c.cfg.TLSCertFile, c.cfg.TLSKeyFile)
	}
	return srv.Serve(ln)
}

// clientCertified reports whether r may proceed as far as client
// certificates go: always without client_ca_file; with it, only over TLS
// with a client certificate that verified against the bundle.
func (c *Custodian) clientCertified(r *http.Request) bool {
	return c.clientCAs == nil || r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}
