package mirror

import (
	"testing"

	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

// SharedEnv is the PostgreSQL the package's tests use, for its external
// tests.
func SharedEnv() *harness.Env { return env }
