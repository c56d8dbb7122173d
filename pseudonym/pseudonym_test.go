package pseudonym

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func newKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// counting is an Evaluate that counts calls and elements, and keeps the
// last request as sent.
type counting struct {
	ev       *Evaluator
	calls    int
	elements int
	last     []byte
}

func (c *counting) evaluate(_ context.Context, req EvaluateRequest) (Evaluation, error) {
	c.calls++
	c.elements += len(req.Elements)
	c.last, _ = json.Marshal(req)
	return c.ev.Evaluate(req)
}

// TestSamePseudonymWhateverTheBlind: two clients with their own random
// blinds get the same well-formed pseudonym for the same identifier, and
// different ones for another identifier or another kind of the same
// string; what leaves the client holds neither identifier.
func TestSamePseudonymWhateverTheBlind(t *testing.T) {
	ctx := context.Background()
	key := newKey(t)
	svc := &counting{ev: NewEvaluator(key)}
	a := NewClient(key.Public(), svc.evaluate, -1)
	b := NewClient(key.Public(), Local(NewEvaluator(key)), -1)
	const phone, convo = "+14155550100", "14155550100@s.whatsapp.net"
	pa, err := a.Pseudonyms(ctx, KindPhone, []string{phone, "+14155550101"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(svc.last, []byte(phone)) || bytes.Contains(svc.last, []byte("4155550100")) {
		t.Fatal("the evaluation request carries the phone number")
	}
	pb, err := b.Pseudonyms(ctx, KindPhone, []string{phone})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := b.Pseudonyms(ctx, KindConversation, []string{phone, convo})
	if err != nil {
		t.Fatal(err)
	}
	if pa[0] != pb[0] || pa[0] == pa[1] || pc[0] == pa[0] || !Valid(pa[0]) || !Valid(pc[1]) {
		t.Fatalf("pseudonyms: %v %v %v", pa, pb, pc)
	}
	if strings.Contains(pc[1], "4155550100") || len(pa[0]) != 47 {
		t.Fatalf("pseudonym %q", pc[1])
	}
	// Another key, another pseudonym: nothing computed under one key
	// links to another's.
	other := newKey(t)
	po, err := NewClient(other.Public(), Local(NewEvaluator(other)), -1).Pseudonyms(ctx, KindPhone, []string{phone})
	if err != nil || po[0] == pa[0] {
		t.Fatalf("another key: %v %v", po, err)
	}
}

// TestEvaluationUnderAnotherKeyIsRefused: a client that trusts the
// roster's key refuses an evaluation made with another key, whether the
// answer names that key or claims the trusted one; a wrong count or a
// tampered element is refused too. Nothing refused is remembered.
func TestEvaluationUnderAnotherKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	trusted, rogue := newKey(t), newKey(t)
	honest := NewEvaluator(trusted)
	for name, evaluate := range map[string]Evaluate{
		"another key, named": Local(NewEvaluator(rogue)),
		"another key, claiming the trusted one": func(ctx context.Context, req EvaluateRequest) (Evaluation, error) {
			ev, err := NewEvaluator(rogue).Evaluate(req)
			ev.KeyID = trusted.Public().ID()
			return ev, err
		},
		"one element short": func(ctx context.Context, req EvaluateRequest) (Evaluation, error) {
			ev, err := honest.Evaluate(req)
			ev.Evaluated = ev.Evaluated[:len(ev.Evaluated)-1]
			return ev, err
		},
		"elements swapped": func(ctx context.Context, req EvaluateRequest) (Evaluation, error) {
			ev, err := honest.Evaluate(req)
			ev.Evaluated[0], ev.Evaluated[1] = ev.Evaluated[1], ev.Evaluated[0]
			return ev, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := NewClient(trusted.Public(), evaluate, 10)
			_, err := c.Pseudonyms(ctx, KindPhone, []string{"+14155550100", "+14155550101"})
			if !errors.Is(err, ErrUnverified) {
				t.Fatalf("err = %v, want ErrUnverified", err)
			}
			if c.Cached() != 0 {
				t.Fatalf("%d pseudonyms remembered from an evaluation refused", c.Cached())
			}
			if strings.Contains(err.Error(), "4155550100") {
				t.Fatalf("the error names the identifier: %v", err)
			}
		})
	}
}

// TestCacheSpareCallsAndStaysBounded: a remembered identifier costs no
// evaluation; repeats in one call are evaluated once; the cache keeps at
// most its size, dropping the least recently used.
func TestCacheSpareCallsAndStaysBounded(t *testing.T) {
	ctx := context.Background()
	key := newKey(t)
	svc := &counting{ev: NewEvaluator(key)}
	c := NewClient(key.Public(), svc.evaluate, 3)
	first, err := c.Pseudonyms(ctx, KindConversation, []string{"a", "b", "a"})
	if err != nil || first[0] != first[2] || svc.elements != 2 {
		t.Fatalf("first call: %v %v, %d elements evaluated (want 2)", first, err, svc.elements)
	}
	again, err := c.Pseudonyms(ctx, KindConversation, []string{"b", "a"})
	if err != nil || svc.calls != 1 || again[0] != first[1] || again[1] != first[0] {
		t.Fatalf("remembered: %v %v after %d calls", again, err, svc.calls)
	}
	if _, err := c.Pseudonyms(ctx, KindConversation, []string{"c", "d"}); err != nil {
		t.Fatal(err)
	}
	if c.Cached() != 3 {
		t.Fatalf("%d remembered, want 3", c.Cached())
	}
	// "b" was used least recently: asking for it evaluates again.
	calls := svc.calls
	if _, err := c.Pseudonyms(ctx, KindConversation, []string{"b"}); err != nil || svc.calls != calls+1 {
		t.Fatalf("an evicted identifier: %d calls, want %d", svc.calls, calls+1)
	}
}

// TestBatchesAreBounded: more identifiers than MaxBatch go in several
// evaluations; the evaluator refuses an empty, oversized or malformed
// request.
func TestBatchesAreBounded(t *testing.T) {
	ctx := context.Background()
	key := newKey(t)
	svc := &counting{ev: NewEvaluator(key)}
	values := make([]string, MaxBatch+1)
	for i := range values {
		values[i] = fmt.Sprint("evt-", i)
	}
	if _, err := NewClient(key.Public(), svc.evaluate, -1).Pseudonyms(ctx, KindID, values); err != nil || svc.calls != 2 {
		t.Fatalf("%d calls for %d ids: %v", svc.calls, len(values), err)
	}
	ev := NewEvaluator(key)
	for name, req := range map[string]EvaluateRequest{
		"empty":       {},
		"too many":    {Elements: make([][]byte, MaxBatch+1)},
		"not a point": {Elements: [][]byte{bytes.Repeat([]byte{0xff}, 32)}},
		"identity":    {Elements: [][]byte{make([]byte, 32)}},
	} {
		if _, err := ev.Evaluate(req); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", name, err)
		}
	}
}

// TestKeysRoundTripAndStayQuiet: keys and public keys survive their text
// forms; a bad key's error does not repeat it.
func TestKeysRoundTripAndStayQuiet(t *testing.T) {
	key := newKey(t)
	text, err := key.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKey(text)
	if err != nil || back.Public().String() != key.Public().String() {
		t.Fatalf("round trip: %v", err)
	}
	pub, err := ParsePublicKey(key.Public().String())
	if err != nil || pub.ID() != key.Public().ID() || !strings.HasPrefix(pub.ID(), "sha256:") {
		t.Fatalf("public round trip: %v", err)
	}
	bad := append([]byte(nil), text...)
	bad[len(bad)-3] = '!'
	if _, err := ParseKey(bad); err == nil || strings.Contains(err.Error(), string(text[len(keyPrefix):len(keyPrefix)+8])) {
		t.Fatalf("a bad key: %v", err)
	}
	for _, s := range []string{"", "ps1_", Prefix + strings.Repeat("A", 42), Prefix + strings.Repeat("A", 44), "ps2_" + strings.Repeat("A", 43)} {
		if Valid(s) {
			t.Errorf("Valid(%q)", s)
		}
	}
}

// BenchmarkEvaluate is the service's cost per element, in batches of 100.
func BenchmarkEvaluate(b *testing.B) {
	key := newKey(b)
	c := NewClient(key.Public(), nil, -1)
	_, req, _ := c.verifier.Blind(func() [][]byte {
		in := make([][]byte, 100)
		for i := range in {
			in[i] = Input(KindPhone, fmt.Sprint("+1415555", i))
		}
		return in
	}())
	wireReq := EvaluateRequest{}
	for _, el := range req.Elements {
		bb, _ := el.MarshalBinaryCompress()
		wireReq.Elements = append(wireReq.Elements, bb)
	}
	ev := NewEvaluator(key)
	for b.Loop() {
		if _, err := ev.Evaluate(wireReq); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/element")
}

// BenchmarkFirstSeen is a client's cost for one identifier it has not
// seen: blind, evaluate in process, verify, unblind.
func BenchmarkFirstSeen(b *testing.B) {
	ctx := context.Background()
	key := newKey(b)
	c := NewClient(key.Public(), Local(NewEvaluator(key)), -1)
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Pseudonyms(ctx, KindPhone, []string{fmt.Sprint("+1415", i)}); err != nil {
			b.Fatal(err)
		}
	}
}
