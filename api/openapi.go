package api

import (
	_ "embed"
	"net/http"
	"slices"
)

// openAPI is api/openapi.yaml, the OpenAPI 3.1 description of every route.
//
//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 description the service serves at
// GET /openapi.yaml.
func OpenAPI() []byte { return slices.Clone(openAPI) }

// openAPISpec is GET /openapi.yaml (public).
func (s *server) openAPISpec(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPI)
}
