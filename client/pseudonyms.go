package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/wire"
)

// ErrNoPseudonymService: the roster in force names no pseudonym service.
var ErrNoPseudonymService = errors.New("client: the roster in force names no pseudonym service")

// ErrNoPseudonymizer: an identifier has to be pseudonymised before it
// leaves, and the client was given no pseudonym service (UsePseudonyms).
var ErrNoPseudonymizer = errors.New("client: identifiers are pseudonymised before they leave, and this client has no pseudonym service (UsePseudonyms)")

// PseudonymClient returns a pseudonym client for the service the roster
// in force names: it reaches the service at the roster's URL with the
// caller's token, and trusts only the key in force there, taken from the
// chain verified from genesis (never from the service, nor from the
// mediator's word). cacheSize is as for pseudonym.NewClient.
func (c *Client) PseudonymClient(ctx context.Context, genesis, token string, cacheSize int) (*pseudonym.Client, error) {
	_, versions, err := c.VerifiedChain(ctx, genesis)
	if err != nil {
		return nil, err
	}
	entry := versions[len(versions)-1].Pseudonym
	if entry == nil {
		return nil, ErrNoPseudonymService
	}
	keys, err := entry.Keys()
	if err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("client: the roster's pseudonym key: %v", err)
	}
	return pseudonym.NewClient(keys[0], pseudonym.HTTPEvaluate(entry.URL, token, nil), cacheSize), nil
}

// Pseudonymizer turns identifiers of one kind into pseudonyms, in order
// (*pseudonym.Client, which verifies every evaluation).
type Pseudonymizer interface {
	Pseudonyms(ctx context.Context, k pseudonym.Kind, values []string) ([]string, error)
}

// UsePseudonyms makes the client pseudonymise, through p, every
// identifier it sends: the sender, recipients and conversation id of
// events (SendRawEvents), the conversation id of deposits and of request
// scopes. Call it before the client is shared.
func (c *Client) UsePseudonyms(p Pseudonymizer) { c.pseudonyms = p }

// IdentifierInput is the kind and value under which a sender or
// recipient is pseudonymised: a number written as E.164 (after NFKC, with
// separators) is KindPhone of its normalised form, so "+1 415-555-0100"
// and "+14155550100" are one pseudonym; anything else is KindID as given.
func IdentifierInput(id string) (pseudonym.Kind, string) {
	if n, ok := redact.NormalizeE164(redact.Normalize(id)); ok {
		return pseudonym.KindPhone, n
	}
	return pseudonym.KindID, id
}

// ConversationPseudonyms returns the pseudonym of each conversation id, in
// order. An id that already is a well-formed pseudonym is taken as one.
func (c *Client) ConversationPseudonyms(ctx context.Context, ids []string) ([]string, error) {
	out := slices.Clone(ids)
	var raw []string
	var at []int
	for i, id := range ids {
		if !pseudonym.Valid(id) {
			raw, at = append(raw, id), append(at, i)
		}
	}
	if len(raw) == 0 {
		return out, nil
	}
	if c.pseudonyms == nil {
		return nil, ErrNoPseudonymizer
	}
	ps, err := c.pseudonyms.Pseudonyms(ctx, pseudonym.KindConversation, raw)
	if err != nil {
		return nil, fmt.Errorf("client: pseudonymise conversation ids: %w", err)
	}
	for j, i := range at {
		out[i] = ps[j]
	}
	return out, nil
}

// conversationPseudonym is ConversationPseudonyms of one id.
func (c *Client) conversationPseudonym(ctx context.Context, id string) (string, error) {
	ps, err := c.ConversationPseudonyms(ctx, []string{id})
	if err != nil {
		return "", err
	}
	return ps[0], nil
}

// maxEvents is the most events a request may carry (ingest.MaxEvents).
const maxEvents = 10000

// maxIdentifierLen bounds an identifier as the mediator bounds opaque ids.
const maxIdentifierLen = 128

// PseudonymizeEvents replaces, in place, the conversation id, sender and
// recipients of every non-nil event with their pseudonyms through p. An
// identifier that cannot be one (not printable, over 128 bytes) is a
// problem of its event, which is then set to nil and sent nowhere; an
// empty one is left for the mediator to call missing. Values that already
// are pseudonyms are kept.
func PseudonymizeEvents(ctx context.Context, p Pseudonymizer, events []*redact.Event) ([]redact.Problem, error) {
	type slot struct {
		field *string
		kind  pseudonym.Kind
	}
	var problems []redact.Problem
	byKind := map[pseudonym.Kind][]string{}
	var slots []slot
	for i, ev := range events {
		if ev == nil {
			continue
		}
		var mine []slot
		var bad []redact.Problem
		add := func(path string, field *string, conversation bool) {
			v := *field
			switch {
			case v == "" || pseudonym.Valid(v):
				return
			case len(v) > maxIdentifierLen:
				bad = append(bad, redact.Problem{Index: i, Path: path, Code: redact.CodeInvalidField, Message: "longer than 128 bytes"})
				return
			case !redact.Printable(v):
				bad = append(bad, redact.Problem{Index: i, Path: path, Code: redact.CodeInvalidField, Message: "must be printable text without control characters"})
				return
			}
			kind := pseudonym.KindConversation
			if !conversation {
				kind, *field = IdentifierInput(v)
			}
			mine = append(mine, slot{field, kind})
		}
		add("$.conversation_id", &ev.ConversationID, true)
		add("$.sender", &ev.Sender, false)
		for j := range ev.Recipients {
			add("$.recipients["+strconv.Itoa(j)+"]", &ev.Recipients[j], false)
		}
		if bad != nil {
			problems = append(problems, bad...)
			events[i] = nil
			continue
		}
		for _, s := range mine {
			byKind[s.kind] = append(byKind[s.kind], *s.field)
		}
		slots = append(slots, mine...)
	}
	if len(slots) == 0 {
		return problems, nil
	}
	if p == nil {
		return nil, ErrNoPseudonymizer
	}
	results := map[pseudonym.Kind][]string{}
	for kind, values := range byKind {
		ps, err := p.Pseudonyms(ctx, kind, values)
		if err != nil {
			return nil, fmt.Errorf("client: pseudonymise %s identifiers: %w", kind, err)
		}
		results[kind] = ps
	}
	next := map[pseudonym.Kind]int{}
	for _, s := range slots {
		*s.field = results[s.kind][next[s.kind]]
		next[s.kind]++
	}
	return problems, nil
}

// SendRawEvents is SendEvents for a body whose identifiers are raw, as a
// gateway has them: it decodes the body with the mediator's own strict
// rules (so content never leaves this machine), pseudonymises every
// identifier, sends the events that can be sent and answers for all of
// them, with problems indexed as in the body the caller gave. An event
// refused here counts as rejected; if none is left, or the request is
// atomic and one is refused, nothing is sent and the error is the
// mediator's kind of refusal (422).
func (c *Client) SendRawEvents(ctx context.Context, body []byte, ndjson, atomic bool) (wire.IngestResponse, error) {
	events, problems, bodyProblem := redact.DecodeBatch(body, ndjson, maxEvents)
	if bodyProblem == nil {
		// Refused before any pseudonym is evaluated: each recipient costs
		// an evaluation at the pseudonym service, and the mediator refuses
		// a request over its cap (by default this one) anyway.
		bodyProblem = redact.CountRecipients(events, redact.DefaultProfile().MaxRecipientsPerRequest)
	}
	if bodyProblem != nil {
		return wire.IngestResponse{}, refusal([]redact.Problem{*bodyProblem}, bodyProblem.Message)
	}
	if c.pseudonyms == nil {
		return wire.IngestResponse{}, ErrNoPseudonymizer
	}
	more, err := PseudonymizeEvents(ctx, c.pseudonyms, events)
	if err != nil {
		return wire.IngestResponse{}, err
	}
	problems = append(problems, more...)
	slices.SortStableFunc(problems, func(a, b redact.Problem) int { return cmp.Compare(a.Index, b.Index) })
	send := make([]*redact.Event, 0, len(events))
	index := make([]int, 0, len(events)) // the body's index of send[i]
	for i, ev := range events {
		if ev != nil {
			send, index = append(send, ev), append(index, i)
		}
	}
	if len(problems) > 0 && (atomic || len(send) == 0) {
		msg := "no event was accepted"
		if atomic {
			msg = "atomic request refused: at least one event is invalid; nothing was written"
		}
		return wire.IngestResponse{}, refusal(problems, msg)
	}
	out, err := json.Marshal(struct {
		Events []*redact.Event `json:"events"`
	}{send})
	if err != nil {
		return wire.IngestResponse{}, fmt.Errorf("client: encode events: %w", err)
	}
	res, err := c.SendEvents(ctx, out, false, atomic)
	remap := func(p *wire.Problem) {
		if p.Index >= 0 && p.Index < len(index) {
			p.Index = index[p.Index]
		}
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		for i, d := range apiErr.Details {
			var p wire.Problem
			if json.Unmarshal(d, &p) == nil && p.Code != "" && p.Path != "" {
				remap(&p)
				apiErr.Details[i], _ = json.Marshal(p)
			}
		}
		return res, err
	}
	if err != nil {
		return res, err
	}
	for i := range res.Problems {
		remap(&res.Problems[i])
	}
	for _, p := range problems {
		res.Problems = append(res.Problems, wire.Problem{Index: p.Index, Path: p.Path, Code: p.Code, Message: p.Message})
	}
	slices.SortStableFunc(res.Problems, func(a, b wire.Problem) int { return cmp.Compare(a.Index, b.Index) })
	res.Rejected += redact.CountEvents(problems)
	return res, nil
}

// refusal is the mediator's 422 for problems (redact.RefusalCode).
func refusal(problems []redact.Problem, msg string) *Error {
	e := &Error{Status: http.StatusUnprocessableEntity, Code: redact.RefusalCode(problems), Message: msg}
	for _, p := range problems {
		raw, _ := json.Marshal(wire.Problem{Index: p.Index, Path: p.Path, Code: p.Code, Message: p.Message})
		e.Details = append(e.Details, raw)
	}
	return e
}
