// Package apispec checks real HTTP answers against api/openapi.yaml with
// kin-openapi, so the description cannot drift from what the service says.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/mediatorhq/mediator/api"
)

// Spec is the loaded, validated description with a router over it.
type Spec struct {
	Doc    *openapi3.T
	router routers.Router
}

// registerNDJSON teaches openapi3filter (whose decoders are package-wide)
// that NDJSON bodies are text.
var registerNDJSON sync.Once

// Load parses and validates api.OpenAPI() as OpenAPI 3.1.
func Load(ctx context.Context) (*Spec, error) {
	registerNDJSON.Do(func() { openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder) })
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("apispec: load: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("apispec: openapi is %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("apispec: invalid: %w", err)
	}
	// Match any host: tests run the service on random ports.
	routable := *doc
	routable.Servers = nil
	r, err := gorillamux.NewRouter(&routable)
	if err != nil {
		return nil, fmt.Errorf("apispec: router: %w", err)
	}
	return &Spec{Doc: doc, router: r}, nil
}

// Has reports whether the description has method on path (an OpenAPI path
// template such as /v1/audit/entries/{seq}).
func (s *Spec) Has(method, path string) bool {
	item := s.Doc.Paths.Value(path)
	return item != nil && item.GetOperation(method) != nil
}

// ErrNoOperation is returned for a request the description has no
// operation for (an unknown path, a wrong method).
var ErrNoOperation = errors.New("apispec: no operation in the description")

// ValidateResponse checks one answer: its status must be declared for the
// operation, and its headers and body must match the declared schema.
func (s *Spec) ValidateResponse(ctx context.Context, req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrNoOperation, req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  status,
		Header:  header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		msg := err.Error()
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("%s %s → %d does not match the description: %s\nbody: %.500s", req.Method, req.URL.Path, status, msg, strings.TrimSpace(string(body)))
	}
	return nil
}

// Transport is an http.RoundTripper that validates every answer to an
// operation of the description and reports mismatches to Fail. Requests
// for paths or methods the description does not have (tests of unknown
// routes) pass unchecked: the router and the description are held to each
// other by api.TestOpenAPIDescribesEveryRoute.
type Transport struct {
	Spec *Spec
	Base http.RoundTripper
	Fail func(error)
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if verr := t.Spec.ValidateResponse(req.Context(), req, resp.StatusCode, resp.Header, body); verr != nil && !errors.Is(verr, ErrNoOperation) {
		t.Fail(verr)
	}
	return resp, nil
}
