// Package notify delivers workflow events to webhooks, so that approvers
// and officers do not have to poll: a request filed or waiting for
// approvals, an approval, a release or a denial, a roster proposal waiting
// for signatures, a quorum of approvers no longer live.
//
// Events carry ids, counts and states only (wire.Event). Each delivery
// is an HTTP POST of the event as JSON, signed with HMAC-SHA256 under the
// webhook's own secret (SignatureHeader, Verify). Deliveries are queued
// per webhook and retried with exponential backoff; Notify never blocks
// the workflow, and a receiver that is down delays nothing but its own
// deliveries.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/wire"
)

// SignatureHeader carries a delivery's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
const SignatureHeader = "Mediator-Signature"

// EventIDHeader carries the delivery's event id, the same on every retry,
// so a receiver can drop a repeat.
const EventIDHeader = "Mediator-Event-Id"

// MinSecretLen is the least length of a webhook secret, in bytes.
const MinSecretLen = 32

// Hook is one configured webhook.
type Hook struct {
	URL string `json:"url"`
	// SecretFile holds the HMAC secret shared with the receiver.
	SecretFile string `json:"secret_file"`
}

// ParseFile reads a webhooks file: {"webhooks":[{"url":..,"secret_file":..}]}.
func ParseFile(path string) ([]Hook, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	var f struct {
		Webhooks []Hook `json:"webhooks"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("notify: %s: %w", path, err)
	}
	return f.Webhooks, nil
}

// Config configures a Notifier.
type Config struct {
	Hooks []Hook
	Log   *slog.Logger
	// Registerer, if set, gets mediator_webhook_deliveries_total and
	// mediator_webhook_queue_dropped_total.
	Registerer prometheus.Registerer
	// Client makes the deliveries; a client with a 10 s timeout when nil.
	Client *http.Client
	// Attempts bounds the tries of one delivery (default 8); FirstRetry
	// is the wait after the first failure (default 1 s), doubled each
	// time up to MaxRetry (default 5 min).
	Attempts             int
	FirstRetry, MaxRetry time.Duration
	// Queue bounds the deliveries waiting per webhook (default 1000);
	// when full, new events for that webhook are dropped and counted.
	Queue int
}

// Notifier delivers events to webhooks. It implements access.Notifier and governance.Notifier.
type Notifier struct {
	cfg     Config
	hooks   []*hook
	log     *slog.Logger
	results *prometheus.CounterVec
	dropped prometheus.Counter
	wg      sync.WaitGroup
}

type hook struct {
	url    string
	secret []byte
	queue  chan delivery
}

type delivery struct {
	id   string
	body []byte
}

// New reads each webhook's secret and returns a Notifier; Run delivers.
func New(cfg Config) (*Notifier, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 8
	}
	if cfg.FirstRetry <= 0 {
		cfg.FirstRetry = time.Second
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 5 * time.Minute
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	n := &Notifier{cfg: cfg, log: cfg.Log,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: delivered, retried (failed, will try again), abandoned (failed every attempt).",
		}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_webhook_queue_dropped_total",
			Help: "Events not queued because a webhook's queue was full (its receiver has been down a long time).",
		})}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(n.results, n.dropped)
	}
	for _, h := range cfg.Hooks {
		if !strings.HasPrefix(h.URL, "https://") && !strings.HasPrefix(h.URL, "http://") {
			return nil, fmt.Errorf("notify: webhook url %q must be http(s)", h.URL)
		}
		secret, err := secretfile.Read(h.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook secret: %w", err)
		}
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("notify: the secret of webhook %s is shorter than %d bytes", h.URL, MinSecretLen)
		}
		n.hooks = append(n.hooks, &hook{url: h.URL, secret: []byte(secret), queue: make(chan delivery, cfg.Queue)})
	}
	return n, nil
}

// Notify queues e for every webhook and returns at once.
func (n *Notifier) Notify(_ context.Context, e wire.Event) {
	if n == nil || len(n.hooks) == 0 {
		return
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return
	}
	body, err := json.Marshal(struct {
		ID string `json:"id"`
		wire.Event
	}{id.String(), e})
	if err != nil {
		return
	}
	for _, h := range n.hooks {
		select {
		case h.queue <- delivery{id: id.String(), body: body}:
		default:
			n.dropped.Inc()
			n.log.Warn("webhook queue full; event dropped", "webhook", h.url, "event_type", e.Type)
		}
	}
}

// Run delivers queued events until ctx ends; each webhook has its own
// worker, so one receiver that is down never delays another.
func (n *Notifier) Run(ctx context.Context) {
	for _, h := range n.hooks {
		n.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-h.queue:
					n.deliver(ctx, h, d)
				}
			}
		})
	}
	n.wg.Wait()
}

// deliver tries d until it is delivered, attempts run out or ctx ends.
func (n *Notifier) deliver(ctx context.Context, h *hook, d delivery) {
	wait := n.cfg.FirstRetry
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, h, d)
		if err == nil {
			n.results.WithLabelValues("delivered").Inc()
			return
		}
		if attempt >= n.cfg.Attempts || ctx.Err() != nil {
			n.results.WithLabelValues("abandoned").Inc()
			n.log.Warn("webhook delivery abandoned", "webhook", h.url, "event_id", d.id, "attempts", attempt, "err", err)
			return
		}
		n.results.WithLabelValues("retried").Inc()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, n.cfg.MaxRetry)
	}
}

func (n *Notifier) post(ctx context.Context, h *hook, d delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(EventIDHeader, d.id)
	req.Header.Set(SignatureHeader, Sign(h.secret, time.Now(), d.body))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// ErrSignature: a delivery's signature header is missing, malformed, too
// old or does not match.
var ErrSignature = errors.New("notify: the delivery's signature does not verify")

// Verify checks a delivery as a receiver should: the header's HMAC over
// its time and the exact body, compared in constant time, and the time
// within tolerance of now (against replays).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	got, herr := hex.DecodeString(sig)
	if err != nil || herr != nil {
		return ErrSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, now %s", ErrSignature, time.Unix(sec, 0).UTC(), now.UTC())
	}
	if !hmac.Equal(got, mac(secret, ts, body)) {
		return ErrSignature
	}
	return nil
}
