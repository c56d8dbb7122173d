package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/roster"
)

// TestAuditVerifierKeyAsServeFindsIt: mediator audit verifier-key, given
// serve's own configuration (its Vault AppRole) and asking no mediator,
// prints the key the running service serves at GET
// /v1/audit/verifier-key; with --entry, the roster's log entry with that
// key first, which a genesis draft takes as its "log".
func TestAuditVerifierKeyAsServeFindsIt(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	_, served := getText(t, in.base+"/v1/audit/verifier-key", aud)
	served = strings.TrimSpace(served)
	out, stderr, err := runCmd(t, in.environ, "audit", "verifier-key")
	if err != nil || strings.TrimSpace(out) != served {
		t.Fatalf("audit verifier-key: %v %q, the service serves %q\n%s", err, out, served, stderr)
	}
	out, stderr, err = runCmd(t, in.environ, "audit", "verifier-key", "--entry")
	var l roster.AuditLog
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || l.Origin != "mediator/audit" || len(l.VerifierKeys) == 0 || l.VerifierKeys[0] != served {
		t.Fatalf("--entry: %v %s\n%s", err, out, stderr)
	}
	r := in.genesis
	r.Log = &l
	if err := r.Validate(); err != nil {
		t.Fatalf("a roster does not take the entry as its log: %v", err)
	}
}
