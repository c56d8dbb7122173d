package pseudonym

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
)

// MaxBatch is the most elements one evaluation takes: a client's batch
// of identifiers, bounded so that one call costs the service a bounded
// amount of work.
const MaxBatch = 1000

// EvaluateRequest is what a client sends the service: blinded elements,
// each a ristretto255 element in its 32-byte encoding. They say nothing
// of the identifiers behind them.
type EvaluateRequest struct {
	Elements [][]byte `json:"elements"`
	// KeyID, if set, is the key the client trusts: a service that holds
	// two keys during a rotation's overlap evaluates with that one.
	KeyID string `json:"key_id,omitempty"`
}

// Evaluation is the service's answer: the evaluated elements, in order,
// one batched DLEQ proof that they were made with the key KeyID names,
// and that key's id.
type Evaluation struct {
	KeyID     string   `json:"key_id"`
	Evaluated [][]byte `json:"evaluated"`
	Proof     []byte   `json:"proof"`
}

// ErrBadRequest: an evaluation request that is empty, larger than
// MaxBatch, or holds a byte string that is not a valid element.
var ErrBadRequest = errors.New("pseudonym: bad evaluation request")

// Evaluator evaluates blinded elements with the service's key: the
// pseudonym service's side of the protocol. It is safe for concurrent
// use.
type Evaluator struct {
	server oprf.VerifiableServer
	keyID  string
}

// KeyID is the id of the key e evaluates with.
func (e *Evaluator) KeyID() string { return e.keyID }

// NewEvaluator returns an Evaluator for key.
func NewEvaluator(key *Key) *Evaluator {
	return &Evaluator{server: oprf.NewVerifiableServer(suite, key.priv), keyID: key.Public().ID()}
}

// Evaluate evaluates req's elements and proves it used its key. A request
// it refuses is ErrBadRequest.
func (e *Evaluator) Evaluate(req EvaluateRequest) (Evaluation, error) {
	if len(req.Elements) == 0 || len(req.Elements) > MaxBatch {
		return Evaluation{}, fmt.Errorf("%w: between 1 and %d elements", ErrBadRequest, MaxBatch)
	}
	g := suite.Group()
	in := &oprf.EvaluationRequest{Elements: make([]oprf.Blinded, len(req.Elements))}
	for i, b := range req.Elements {
		el := g.NewElement()
		if err := el.UnmarshalBinary(b); err != nil || el.IsIdentity() {
			return Evaluation{}, fmt.Errorf("%w: element %d is not a ristretto255 element", ErrBadRequest, i)
		}
		in.Elements[i] = el
	}
	ev, err := e.server.Evaluate(in)
	if err != nil {
		return Evaluation{}, fmt.Errorf("pseudonym: evaluate: %w", err)
	}
	out := Evaluation{KeyID: e.keyID, Evaluated: make([][]byte, len(ev.Elements))}
	for i, el := range ev.Elements {
		if out.Evaluated[i], err = el.MarshalBinaryCompress(); err != nil {
			return Evaluation{}, fmt.Errorf("pseudonym: encode: %w", err)
		}
	}
	if out.Proof, err = ev.Proof.MarshalBinary(); err != nil {
		return Evaluation{}, fmt.Errorf("pseudonym: encode proof: %w", err)
	}
	return out, nil
}

// Evaluate is how a Client reaches the service: over HTTP
// (HTTPEvaluator), or in process in tests and in `mediator dev`.
type Evaluate func(ctx context.Context, req EvaluateRequest) (Evaluation, error)

// Local is an Evaluate that calls e in process.
func Local(e *Evaluator) Evaluate {
	return func(_ context.Context, req EvaluateRequest) (Evaluation, error) { return e.Evaluate(req) }
}

// ErrUnverified: an evaluation that is not of the request's elements
// under the public key the client trusts (another key, a wrong count, a
// proof that does not verify). Nothing of it is used.
var ErrUnverified = errors.New("pseudonym: the evaluation does not verify against the trusted public key")

// decode turns an Evaluation into circl's form, checking its shape.
func decode(ev Evaluation, n int) (*oprf.Evaluation, error) {
	if len(ev.Evaluated) != n || len(ev.Proof) == 0 {
		return nil, fmt.Errorf("%w: %d elements for %d asked", ErrUnverified, len(ev.Evaluated), n)
	}
	g := suite.Group()
	out := &oprf.Evaluation{Elements: make([]oprf.Evaluated, n), Proof: new(dleq.Proof)}
	for i, b := range ev.Evaluated {
		el := g.NewElement()
		if err := el.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("%w: element %d does not decode", ErrUnverified, i)
		}
		out.Elements[i] = el
	}
	if err := out.Proof.UnmarshalBinary(g, ev.Proof); err != nil {
		return nil, fmt.Errorf("%w: the proof does not decode", ErrUnverified)
	}
	return out, nil
}
