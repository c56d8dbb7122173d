package custodian

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestAccessLogDurationInMilliseconds: the custodian logs a call's time as
// duration_ms, a number of milliseconds, as the mediator does, not as
// nanoseconds under another name.
func TestAccessLogDurationInMilliseconds(t *testing.T) {
	var logs bytes.Buffer
	c := &Custodian{cfg: Config{Name: "custodian-1"}, log: slog.New(slog.NewJSONHandler(&logs, nil)), metrics: NewMetrics()}
	r := chi.NewRouter()
	r.Use(c.accessLog)
	r.Get("/v1/custodian", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/custodian", nil))
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", logs.String(), err)
	}
	ms, ok := line["duration_ms"].(float64)
	if line["msg"] != "request" || !ok || ms < 0 || ms > 10_000 {
		t.Fatalf("request log line without duration_ms in milliseconds: %v", line)
	}
	if _, ok := line["duration"]; ok {
		t.Fatalf("request log line still has duration: %v", line)
	}
}
