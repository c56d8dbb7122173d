package custodian_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/wire"
)

// TestErrorAnswersAreTheEnvelope: every error a custodian answers is the
// one envelope (wire.Error), chi's 404 and 405 included, and a bad
// request's reason reaches the caller as it was written, with no prefix.
func TestErrorAnswersAreTheEnvelope(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	c := f.set.Custodians[0]
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, message      string
		allow              string
	}{
		{"POST", "/v1/releases", `{}`, 422, "validation_failed", "a release asks for at least one share", ""},
		{"POST", "/v1/shares", `{"shares":[]}`, 422, "validation_failed", "a store call carries 1–1024 shares", ""},
		{"POST", "/v1/holds", `{"hold_id":"../x"}`, 422, "validation_failed", "a hold needs a hold id (a UUID) and a conversation id", ""},
		{"POST", "/v1/releases", `{"nope":1}`, 400, "bad_request", "body is not the expected JSON object", ""},
		{"GET", "/v1/nowhere", ``, 404, "not_found", "no such endpoint", ""},
		{"GET", "/v1/releases", ``, 405, "method_not_allowed", "method not allowed on this endpoint", "POST"},
		{"POST", "/v1/custodian", ``, 405, "method_not_allowed", "method not allowed on this endpoint", "GET"},
	} {
		req, _ := http.NewRequest(tc.method, c.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+c.MediatorToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env wire.Error
		derr := json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != tc.status || derr != nil || env.Error.Code != tc.code || env.Error.Message != tc.message ||
			env.Error.Details == nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %+v (%v), want %d %s %q", tc.method, tc.path, resp.StatusCode, env, derr, tc.status, tc.code, tc.message)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}
