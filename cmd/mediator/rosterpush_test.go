package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/roster"
)

// TestPushChainReportsEachCustodian: a push writes what each custodian
// acknowledged, and a custodian that refuses, answers another version or
// cannot be reached is a WARNING, never a failure; each URL is pushed to
// once, whichever versions list it.
func TestPushChainReportsEachCustodian(t *testing.T) {
	f := newFakeMediator(t, nil)
	digest := roster.Digest(f.chain[0].Roster)
	answer := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/v1/roster" || r.Header.Get("Authorization") != "" {
				t.Errorf("push: %s %s with Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ok := answer(200, `{"custodian":"custodian-1","version":1,"digest":"`+digest+`"}`)
	newer := answer(409, `{"error":{"code":"roster_rollback","message":"it holds version 2","details":[]}}`)
	other := answer(200, `{"custodian":"custodian-3","version":1,"digest":"sha256:00"}`)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	old := roster.Roster{Custodians: []roster.Custodian{{Name: "custodian-1", URL: ok}, {Name: "custodian-2", URL: newer}}}
	next := roster.Roster{Custodians: []roster.Custodian{{Name: "custodian-1", URL: ok}, {Name: "custodian-3", URL: other}, {Name: "custodian-4", URL: down.URL}}}
	targets := pushTargets(&old, &next)
	if len(targets) != 4 {
		t.Fatalf("targets %+v, want each URL once", targets)
	}
	var stdout, stderr bytes.Buffer
	if failed := pushChain(context.Background(), &stdout, &stderr, f.chain, targets); failed != 3 {
		t.Errorf("%d failed, want 3", failed)
	}
	for _, want := range []string{"custodian custodian-1 (" + ok + ") holds roster version 1 (" + digest + ")"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, want := range []string{
		"WARNING: custodian custodian-2 (" + newer + ") refused roster version 1: it holds a version this chain does not",
		"WARNING: custodian custodian-3 (" + other + ") answers that it holds roster version 1 (sha256:00)",
		"WARNING: custodian custodian-4 (" + down.URL + "): roster version 1 not pushed",
		"WARNING: 3 of 4 custodians do not acknowledge roster version 1",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}
