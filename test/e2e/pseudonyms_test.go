package e2e

import (
	"context"
	"net/http"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
)

// synthetic pseudonymises as conv does (pseudonym.Synthetic): the
// pseudonym service of the tests that exercise the mediator's other
// roads, which checks only a pseudonym's form. The tests of the real
// service, its VOPRF and the agent use the real thing (agent_test.go,
// dev_test.go, pseudonymattack_test.go).
type synthetic struct{}

func (synthetic) Pseudonyms(_ context.Context, k pseudonym.Kind, values []string) ([]string, error) {
	out := make([]string, len(values))
	for i, v := range values {
		if k == pseudonym.KindConversation {
			out[i] = conv(v)
		} else {
			out[i] = pseudonym.Synthetic(string(k) + "\n" + v)
		}
	}
	return out, nil
}

// newClient is client.New for a gateway or officer whose identifiers are
// pseudonymised as synthetic does.
func newClient(baseURL, token string, hc *http.Client) (*client.Client, error) {
	c, err := client.New(baseURL, token, hc)
	if err == nil {
		c.UsePseudonyms(synthetic{})
	}
	return c, err
}
