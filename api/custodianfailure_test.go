package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/apispec"
	"github.com/mediatorhq/mediator/wire"
)

// noEscrows is DepositRows that holds no escrow: every deposit is new,
// and none is ever recorded (the deposits here fail at the custodians).
type noEscrows struct{ escrow.DepositRows }

func (noEscrows) ByKeyID(context.Context, string, string, string) (escrow.Escrow, error) {
	return escrow.Escrow{}, escrow.ErrNotFound
}

// fakeCustodian stores every share it is given, or answers every call
// with status and a message, as refuse says; it counts the aborts asked.
type fakeCustodian struct {
	status  int // 0: store
	code    string
	message string
	mu      sync.Mutex
	aborts  int
}

func (c *fakeCustodian) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/shares/abort":
		var refs wire.ShareRefs
		json.NewDecoder(r.Body).Decode(&refs)
		c.mu.Lock()
		c.aborts += len(refs.Shares)
		c.mu.Unlock()
		var ans wire.RefAnswer
		for _, ref := range refs.Shares {
			ans.Results = append(ans.Results, wire.RefResult{EscrowID: ref.EscrowID, Outcome: "aborted"})
		}
		wire.WriteJSON(w, 200, ans)
	case c.status != 0:
		wire.WriteError(w, c.status, c.code, c.message)
	case r.URL.Path == "/v1/shares":
		var in wire.StoreShares
		json.NewDecoder(r.Body).Decode(&in)
		var ans wire.StoreAnswer
		for _, sh := range in.Shares {
			ans.Results = append(ans.Results, wire.StoreResult{Stored: &wire.StoredShare{Locator: "deposits/" + sh.EscrowID,
				SealedSHA256: shares.SealedHash(sh.Sealed), StoredAt: "2026-12-03T10:00:00.000000Z"}})
		}
		wire.WriteJSON(w, 200, ans)
	default:
		http.NotFound(w, r)
	}
}

// TestDepositNamesTheCustodianThatFailed: a deposit that a custodian
// refuses (403), or one that cannot be reached, answers 503
// dependency_unavailable, as the description says, naming that custodian
// in the message and in details {"dependency":"custodian","custodian",
// "reason","custodians"}, and the log line names it too; neither holds
// the mediator's token to the custodians, a sealed share, nor the
// unreachable custodian's address.
func TestDepositNamesTheCustodianThatFailed(t *testing.T) {
	ctx := context.Background()
	spec, err := apispec.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := identity.NewFileKeys(dev.JWKSPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := identity.NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	token, err := iss.Issue("gateway-1", []string{"depositor"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A custodian's address that nothing listens on: closed at once.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	for _, tc := range []struct {
		name, custodian, reason string
		custodians              []*fakeCustodian
		urls                    []string // "" for the fake's own
	}{
		{name: "refused", custodian: "custodian-2", reason: "refused: 403 forbidden: the mediator's token is not one this custodian takes",
			custodians: []*fakeCustodian{{}, {status: 403, code: "forbidden", message: "the mediator's token is not one this custodian takes"}, {}},
			urls:       []string{"", "", ""}},
		{name: "unreachable", custodian: "custodian-3", reason: "could not be reached",
			custodians: []*fakeCustodian{{}, {}, {}}, urls: []string{"", "", gone.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := shares.Set{Threshold: 2}
			var remotes []*escrow.Remote
			for i, fc := range tc.custodians {
				name := []string{"custodian-1", "custodian-2", "custodian-3"}[i]
				_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
				if err != nil {
					t.Fatal(err)
				}
				pub, _, _ := ed25519.GenerateKey(nil)
				set.Custodians = append(set.Custodians, shares.Custodian{Name: name, HPKEKey: hpkeKey, SigningKey: pub})
				url := tc.urls[i]
				if url == "" {
					srv := httptest.NewServer(fc)
					t.Cleanup(srv.Close)
					url = srv.URL
				}
				remotes = append(remotes, escrow.NewRemote(name, url, "secret-mediator-token", nil))
			}
			svc, err := escrow.New(escrow.Config{Set: set, Remotes: remotes, Deposits: noEscrows{}})
			if err != nil {
				t.Fatal(err)
			}
			digest, _ := set.Digest()
			var logs bytes.Buffer
			srv := httptest.NewServer(api.NewRouter(api.Deps{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Authn: verifier, Authz: engine,
				Metrics: api.NewMetrics("test"), Escrow: svc}))
			t.Cleanup(srv.Close)

			sealed := []byte("SEALED-SHARE-BYTES")
			body := wire.DepositRequest{ConversationID: pseudonym.Synthetic("conv-a"), KeyID: "epoch-1", Commitment: "sha256:" + strings.Repeat("ab", 32),
				CustodianSet: digest, Threshold: 2}
			for i, c := range set.Custodians {
				body.Shares = append(body.Shares, wire.DepositShare{Custodian: c.Name, Index: i + 1, Sealed: sealed})
			}
			raw, _ := json.Marshal(body)
			req, _ := http.NewRequest("POST", srv.URL+"/v1/escrow/keys", bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := spec.ValidateResponse(ctx, req, resp.StatusCode, resp.Header, answer); err != nil {
				t.Error(err)
			}
			var env struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
					Details []struct {
						Dependency string   `json:"dependency"`
						Custodian  string   `json:"custodian"`
						Reason     string   `json:"reason"`
						Custodians []string `json:"custodians"`
					} `json:"details"`
				} `json:"error"`
			}
			json.Unmarshal(answer, &env)
			e := env.Error
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.Code != "dependency_unavailable" || len(e.Details) != 1 ||
				e.Details[0].Dependency != "custodian" || e.Details[0].Custodian != tc.custodian || e.Details[0].Reason != tc.reason ||
				strings.Join(e.Details[0].Custodians, ",") != tc.custodian {
				t.Errorf("the answer: %d %s", resp.StatusCode, answer)
			}
			if want := "custodian " + tc.custodian + " " + tc.reason + "; nothing was kept"; e.Message != want {
				t.Errorf("message %q, want %q", e.Message, want)
			}
			for _, secret := range []string{"secret-mediator-token", "SEALED-SHARE-BYTES", "U0VBTEVE", strings.TrimPrefix(gone.URL, "http://")} {
				if strings.Contains(string(answer), secret) {
					t.Errorf("the answer holds %q: %s", secret, answer)
				}
			}
			if !strings.Contains(logs.String(), `"custodian":"`+tc.custodian+`"`) || strings.Contains(logs.String(), "secret-mediator-token") {
				t.Errorf("the log line does not name %s, or holds the token:\n%s", tc.custodian, logs.String())
			}
			// The custodians that stored their share were asked to
			// drop it: nothing was kept.
			for i, fc := range tc.custodians {
				if fc.status == 0 && tc.urls[i] == "" && fc.aborts != 1 {
					t.Errorf("custodian-%d was asked to abort %d shares, want 1", i+1, fc.aborts)
				}
			}

		})
	}
}
