package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCustodianRotateHPKEReadsItsConfig: rotate-hpke needs the custodian's
// configuration file, from --config or MEDIATOR_CUSTODIAN_CONFIG, and
// stops at one it cannot read or that is refused, before it touches a
// store. (custodian.TestHPKEKeyRotation runs custodian.RotateHPKE on a
// real Vault.)
func TestCustodianRotateHPKEReadsItsConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "custodian.json")
	if err := os.WriteFile(bad, []byte(`{"name":"acme-legal","hpke_grace":"-1h"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"custodian", "rotate-hpke"}, nil, "--config is required"},
		{[]string{"custodian", "rotate-hpke", "--config", bad + ".missing"}, nil, "no such file"},
		{[]string{"custodian", "rotate-hpke", "--config", bad}, nil, "durations must not be negative"},
		{[]string{"custodian", "rotate-hpke"}, map[string]string{"MEDIATOR_CUSTODIAN_CONFIG": bad}, "durations must not be negative"},
	} {
		_, stdout, _, err := runArgs(c.args, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) || stdout != "" {
			t.Errorf("%v with %v: %v (stdout %q), want an error saying %q", c.args, c.env, err, stdout, c.want)
		}
	}
}
