package custodian

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// movingWrapper is a Wrapper after a rotation: everything it rewraps moves.
type movingWrapper struct{ Wrapper }

func (movingWrapper) Rewrap(_ context.Context, _, wrapped []byte) ([]byte, bool, error) {
	return append([]byte("v2:"), wrapped...), true, nil
}

// rewrapVault is a custodian's KV store holding its identity, one HPKE
// key made since (hpke-keys/1) and the deposit entries given (each escrow
// id to a record), where writing an entry named in fail answers 500, and
// listing the entries answers listStatus.
func rewrapVault(t *testing.T, entries map[string][]string, fail map[string]bool, listStatus int) *store {
	t.Helper()
	const data, meta = "/v1/kv/data/custodian-1/", "/v1/kv/metadata/custodian-1/"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		name, isData := strings.CutPrefix(r.URL.Path, data)
		switch {
		case r.URL.Path == meta+"deposits" && (r.Method == "LIST" || r.URL.Query().Get("list") == "true"):
			w.WriteHeader(listStatus)
			keys := []string{}
			for e := range entries {
				keys = append(keys, e)
			}
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"keys": keys}})
		case r.URL.Path == meta+"hpke-keys" && (r.Method == "LIST" || r.URL.Query().Get("list") == "true"):
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"keys": []string{"1"}}})
		case strings.HasPrefix(r.URL.Path, "/v1/kv/destroy/"):
			w.WriteHeader(http.StatusNoContent)
		case strings.HasPrefix(r.URL.Path, meta) && r.Method == http.MethodGet:
			// A rewritten record's versions: the one read, and the new one.
			fmt.Fprint(w, `{"data":{"current_version":2,"versions":{"1":{"destroyed":false},"2":{"destroyed":false}}}}`)
		case isData && r.Method == http.MethodGet:
			fields := map[string]any{"hpke_wrapped": "w1", "ed25519_wrapped": "w2"}
			if name == "hpke-keys/1" {
				fields = map[string]any{"hpke_wrapped": "w3"}
			}
			if ids, ok := entries[strings.TrimPrefix(name, "deposits/")]; ok && name != "identity" && name != "hpke-keys/1" {
				fields = map[string]any{}
				for _, id := range ids {
					b, _ := json.Marshal(record{EscrowID: id, ConversationID: "conv-a", KeyID: "e1", Wrapped: "w"})
					fields[id] = string(b)
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"data": fields, "metadata": map[string]any{"version": 1}}})
		case isData && fail[strings.TrimPrefix(name, "deposits/")]:
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"errors":["storage down"]}`)
		case isData:
			fmt.Fprint(w, `{"data":{"version":2}}`)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	return storeAt(t, srv)
}

// TestRewrapAnswersOneOrTheOther: an entry whose rewrite fails is named
// in Failed and its shares counted nowhere else, while the other entries
// count; a listing that fails is an error with no answer.
func TestRewrapAnswersOneOrTheOther(t *testing.T) {
	ctx := context.Background()
	entries := map[string][]string{"a": {"s1", "s2"}, "b": {"s3"}}
	c := &Custodian{cfg: Config{Name: "custodian-1"}, log: slog.New(slog.DiscardHandler), wrapper: movingWrapper{},
		store: rewrapVault(t, entries, map[string]bool{"a": true}, http.StatusOK)}
	ans, err := c.Rewrap(ctx)
	// The identity, the HPKE key made since and entry b's share moved;
	// entry a's two did not.
	if err != nil || ans.Rewrapped != 3 || ans.Unchanged != 0 || len(ans.Failed) != 1 || !strings.HasPrefix(ans.Failed[0], "deposits/a: ") {
		t.Errorf("rewrap with entry a failing: %+v %v", ans, err)
	}

	c.store = rewrapVault(t, entries, nil, http.StatusInternalServerError)
	ans, err = c.Rewrap(ctx)
	if err == nil || ans.Rewrapped != 0 || ans.Unchanged != 0 || ans.Failed != nil {
		t.Errorf("rewrap with the listing failing: %+v %v", ans, err)
	}
}
