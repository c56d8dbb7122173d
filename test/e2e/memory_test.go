package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/pseudonym"
)

// maxResidentMiB is the bound of issue 15: with 32 concurrent maximal
// requests the service stays under it.
const maxResidentMiB = 512

// TestIngestMemoryIsBounded: 32 gateways at once each send the review's
// amplifying request (536 events of 100 recipients, over the 50,000 cap), then a
// maximal request that is valid (8 MiB of events, as many recipients as a
// request may carry). The service's peak resident memory stays under
// 512 MiB; every answer is 200, 422 for the amplifier, or 429/503 with
// Retry-After (the gateway retries); and every event acknowledged is in
// the log.
func TestIngestMemoryIsBounded(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	const workers = 32

	amplifier := amplifyingBody(t)
	var mu sync.Mutex
	acked := 0
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		tok, _ := in.issuer.Issue(fmt.Sprintf("gw-mem-%d", w), []string{"ingest"}, time.Hour)
		var b bytes.Buffer
		n := loadgen.WriteMaximalBatch(&b, fmt.Sprintf("mem-%d", w))
		valid := b.Bytes()
		wg.Go(func() {
			for round, body := range [][]byte{amplifier, valid} {
				deadline := time.Now().Add(90 * time.Second)
				for {
					code, retry, answer := postRaw(t, in.base+"/v1/events", tok, body)
					mu.Lock()
					statuses[code]++
					mu.Unlock()
					if (code == 429 || code == 503) && time.Now().Before(deadline) {
						if retry == "" {
							t.Errorf("%d without Retry-After", code)
							return
						}
						s, _ := strconv.Atoi(retry)
						time.Sleep(time.Duration(s) * time.Second)
						continue
					}
					if round == 0 {
						if e, _ := answer["error"].(map[string]any); code != 422 || e["code"] != "too_many_recipients" {
							t.Errorf("the amplifying request: %d %v, want 422 too_many_recipients", code, e)
						}
					}
					if code == 200 && round == 1 {
						if answer["accepted"] != float64(n) {
							t.Errorf("a valid maximal request: %v of %d accepted", answer["accepted"], n)
						}
						mu.Lock()
						acked += n
						mu.Unlock()
					}
					break
				}
			}
		})
	}
	wg.Wait()
	peak := peakResidentMiB(t, in.proc)
	t.Logf("memory: %d gateways, answers %v, %d events acknowledged, server peak RSS %d MiB", workers, statuses, acked, peak)
	if peak >= maxResidentMiB {
		t.Errorf("peak resident memory %d MiB, want < %d MiB", peak, maxResidentMiB)
	}
	for code := range statuses {
		if code != 200 && code != 422 && code != 429 && code != 503 {
			t.Errorf("answered %d", code)
		}
	}
	if statuses[200] == 0 {
		t.Fatal("no maximal request was accepted; the test proves nothing")
	}
	db, err := pgx.Connect(context.Background(), in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var stored int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit_entries WHERE kind = 'downgrade'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != acked {
		t.Errorf("%d events acknowledged, %d in the log", acked, stored)
	}
}

// amplifyingBody is the review's request in pseudonyms: 536 events of
// 100 recipients, 53,600 in all, in 2.8 MB. (The review's 536 × 1,024
// raw numbers fit in 8 MiB; as pseudonyms they no longer do.)
func amplifyingBody(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := range 536 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"event_id":"amp-%d","kind":"message","conversation_id":"%s","message_hash":"sha256:%064x",`+
			`"sender":"%s","transport":"rcs-e2ee","status":"delivered","occurred_at":"%s","recipients":[`,
			i, conv("conv-amp"), i, pseudonym.Synthetic("+14155550100"), time.Now().UTC().Add(-time.Minute).Format(time.RFC3339))
		for r := range 100 {
			if r > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%s"`, pseudonym.Synthetic(fmt.Sprintf("+1%010d", 2000000000+i*1024+r)))
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// postRaw posts an ingest body and returns the status, Retry-After and the
// decoded answer.
func postRaw(t *testing.T, url, token string, body []byte) (int, string, map[string]any) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header.Get("Retry-After"), m
}

// peakResidentMiB is the process's peak resident set (VmHWM), in MiB.
func peakResidentMiB(t *testing.T, p *process) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}
