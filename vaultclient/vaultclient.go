// Package vaultclient connects the mediator to HashiCorp Vault with the
// credentials an operator configured: a token, or an AppRole role id and
// secret id whose token is renewed in the background and obtained again by a
// fresh login when it can no longer be renewed.
package vaultclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/mediatorhq/mediator/job"
	"github.com/mediatorhq/mediator/secretfile"
)

// Config says where Vault is and how to authenticate: a token, or an
// AppRole role id and secret id, each given as a value or as a file that
// holds it (a value wins over its file).
type Config struct {
	Addr         string
	Token        string
	RoleID       string
	RoleIDFile   string
	SecretID     string
	SecretIDFile string
	// AppRoleMount is the AppRole auth mount; "approle" when empty.
	AppRoleMount string
	// TokenFile is where the token comes from (a Vault Agent sink, say):
	// read when Token is empty, and followed either way: the client
	// re-reads it and switches to a new token when the file changes, until
	// ctx ends.
	TokenFile string
	// Metrics, if set, times every call to this Vault.
	Metrics *Metrics

	tokenFileEvery time.Duration // tests; tokenFileInterval when zero
}

// maxIdleConns is how many idle connections to Vault the client keeps: about
// the number of Vault calls in flight under load.
const maxIdleConns = 64

// requestTimeout bounds every Vault call made through the client, so a hung
// Vault turns into an error (and a 503) rather than a stuck request.
const requestTimeout = 10 * time.Second

// Connect returns an authenticated client. With AppRole it logs in now and
// keeps the token renewed until ctx ends.
func Connect(ctx context.Context, log *slog.Logger, cfg Config) (*vaultapi.Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("vaultclient: Vault address is required (--vault-addr or MEDIATOR_VAULT_ADDR)")
	}
	for _, f := range []struct {
		value *string
		file  string
	}{{&cfg.Token, cfg.TokenFile}, {&cfg.RoleID, cfg.RoleIDFile}, {&cfg.SecretID, cfg.SecretIDFile}} {
		if *f.value != "" || f.file == "" {
			continue
		}
		v, err := secretfile.Read(f.file)
		if err != nil {
			return nil, fmt.Errorf("vaultclient: %w", err)
		}
		*f.value = v
	}
	useToken := cfg.Token != ""
	useRole := cfg.RoleID != "" || cfg.SecretID != ""
	switch {
	case useToken && useRole:
		return nil, errors.New("vaultclient: configure either a Vault token or an AppRole, not both")
	case !useToken && !useRole:
		return nil, errors.New("vaultclient: no Vault credentials: set a token or an AppRole role id and secret id")
	case useRole && (cfg.RoleID == "" || cfg.SecretID == ""):
		return nil, errors.New("vaultclient: AppRole needs both a role id and a secret id")
	}
	vc := vaultapi.DefaultConfig()
	vc.Address = cfg.Addr
	vc.Timeout = requestTimeout
	// The API client's own retries would hold a request for many seconds
	// while Vault is down; we prefer a prompt 503.
	vc.MaxRetries = 1
	// The default keeps GOMAXPROCS+1 idle connections; concurrent deposits
	// and ingest would otherwise open and close connections all the time.
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = maxIdleConns
	}
	if cfg.Metrics != nil {
		vc.HttpClient.Transport = instrumented{base: vc.HttpClient.Transport, m: cfg.Metrics}
	}
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vaultclient: %w", err)
	}
	// NewClient reads VAULT_TOKEN from the environment; only configured
	// credentials count.
	client.ClearToken()
	if useToken {
		client.SetToken(cfg.Token)
		if cfg.TokenFile != "" {
			every := cfg.tokenFileEvery
			if every <= 0 {
				every = tokenFileInterval
			}
			go followTokenFile(ctx, log, client, cfg.TokenFile, cfg.Token, every)
		}
		return client, nil
	}
	mount := cfg.AppRoleMount
	if mount == "" {
		mount = "approle"
	}
	secret, err := login(ctx, client, mount, cfg.RoleID, cfg.SecretID)
	if err != nil {
		return nil, err
	}
	go keepRenewed(ctx, log, client, secret, mount, cfg.RoleID, cfg.SecretID)
	return client, nil
}

func login(ctx context.Context, client *vaultapi.Client, mount, roleID, secretID string) (*vaultapi.Secret, error) {
	secret, err := client.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
		"role_id":   roleID,
		"secret_id": secretID,
	})
	if err != nil {
		// The error from Vault names the path and status, never the secret id.
		return nil, fmt.Errorf("vaultclient: approle login: %w", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, errors.New("vaultclient: approle login returned no token")
	}
	client.SetToken(secret.Auth.ClientToken)
	return secret, nil
}

// keepRenewed renews the AppRole token while it can and logs in again when
// it cannot, until ctx ends.
func keepRenewed(ctx context.Context, log *slog.Logger, client *vaultapi.Client, secret *vaultapi.Secret, mount, roleID, secretID string) {
	const retryDelay = 5 * time.Second
	for {
		w, err := client.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			log.Error("vault: token watcher", "err", err)
			return
		}
		go w.Start()
		select {
		case <-ctx.Done():
			w.Stop()
			return
		case err := <-w.DoneCh():
			if err != nil {
				log.Warn("vault: token renewal stopped; logging in again", "err", err)
			}
		}
		w.Stop()
		for {
			s, err := login(ctx, client, mount, roleID, secretID)
			if err == nil {
				secret = s
				break
			}
			log.Error("vault: approle login failed; will retry", "err", err, "retry_in", retryDelay.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryDelay):
			}
		}
	}
}

// tokenFileInterval is how often a token file is re-read: well inside any
// token's lifetime, so a renewed token from a Vault Agent is picked up
// before the old one expires.
const tokenFileInterval = 10 * time.Second

// followTokenFile switches client to the token in path whenever it
// changes, until ctx ends. A missing or empty file keeps the current token.
func followTokenFile(ctx context.Context, log *slog.Logger, client *vaultapi.Client, path, current string, every time.Duration) {
	job.Every(ctx, every, func() {
		b, err := os.ReadFile(path)
		if err != nil {
			log.Warn("vault: token file unreadable; keeping the current token", "path", path, "err", err)
			return
		}
		tok := strings.TrimSpace(string(b))
		if tok != "" && tok != current {
			client.SetToken(tok)
			current = tok
			log.Info("vault: token file changed; using the new token", "path", path)
		}
	})
}

// Ready reports nil when Vault is initialized, unsealed and answering.
func Ready(ctx context.Context, client *vaultapi.Client) error {
	h, err := client.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	if !h.Initialized {
		return errors.New("vault: not initialized")
	}
	if h.Sealed {
		return errors.New("vault: sealed")
	}
	return nil
}
