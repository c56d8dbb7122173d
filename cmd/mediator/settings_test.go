package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// commandSettings returns every command's settings, as each declares them
// when asked for help: the command's words, then its table.
func commandSettings(t *testing.T) map[string][]setting {
	t.Helper()
	all := map[string][]setting{}
	for _, n := range allCommands() {
		if n.cmd.run == nil {
			continue
		}
		c, _, _, _ := runArgs(append(append([]string(nil), n.path...), "--help"), nil)
		if c.flags == nil {
			t.Fatalf("%v declares no flags, so it takes no --help", n.path)
		}
		all[strings.Join(n.path, " ")] = c.flags.settings
	}
	return all
}

// TestEverySetting checks every setting of every command, from the
// tables themselves: the default applies when nothing is given, a good
// value is taken from each variable and from the flag, the flag wins over
// the variables and the first variable over the next, and a malformed
// value is refused naming the variable or flag and the shape wanted,
// never repeating a secret.
func TestEverySetting(t *testing.T) {
	tables := commandSettings(t)
	if n := len(tables["serve"]); n < 40 {
		t.Fatalf("serve has %d settings", n)
	}
	for cmd, settings := range tables {
		for _, s := range settings {
			name := s.flag
			if name == "" {
				name = s.env[0]
			}
			t.Run(cmd+"/"+name, func(t *testing.T) { checkSetting(t, s) })
		}
	}
}

// applied applies s alone, with env as the environment and a flag for
// each of flagTexts, and returns the value it took.
func applied(s setting, env map[string]string, flagTexts ...string) (string, error) {
	var args []string
	for _, text := range flagTexts {
		args = append(args, "--"+s.flag+"="+text)
	}
	err := testCall(env).newFlags(s).Parse(args)
	return s.value.String(), err
}

// canonical is how s's value reads once text is set.
func canonical(t *testing.T, s setting, text string) string {
	t.Helper()
	s.value.reset()
	if err := s.value.set(text); err != nil {
		t.Fatalf("example %q is refused", text)
	}
	return s.value.String()
}

func checkSetting(t *testing.T, s setting) {
	if s.flag == "" && len(s.env) == 0 {
		t.Fatal("neither flag nor variable sets it")
	}
	k := s.value.kind()
	def := canonical(t, s, s.value.defaultText())
	var goods []string
	for _, e := range k.examples {
		if c := canonical(t, s, e); c != def && e != "" {
			goods = append(goods, e)
		}
	}
	if len(goods) < 2 {
		t.Fatalf("fewer than two examples (%q) differ from the default %q", k.examples, def)
	}
	if got, err := applied(s, nil); err != nil || got != def {
		t.Errorf("unset: %q, %v; want the default %q", got, err, def)
	}
	for _, v := range s.env {
		if got, err := applied(s, map[string]string{v: goods[0]}); err != nil || got != canonical(t, s, goods[0]) {
			t.Errorf("%s=%s: took %q, %v", v, goods[0], got, err)
		}
		if got, err := applied(s, map[string]string{v: ""}); err != nil || got != def {
			t.Errorf("%s empty: took %q, %v; want the default", v, got, err)
		}
	}
	if len(s.env) > 1 {
		env := map[string]string{s.env[0]: goods[0], s.env[1]: goods[1]}
		if got, _ := applied(s, env); got != canonical(t, s, goods[0]) {
			t.Errorf("%s should win over %s: took %q", s.env[0], s.env[1], got)
		}
	}
	if s.flag != "" {
		env := map[string]string{}
		for _, v := range s.env {
			env[v] = goods[0]
		}
		if got, err := applied(s, env, goods[1]); err != nil || got != canonical(t, s, goods[1]) {
			t.Errorf("--%s=%s should win over the variables: took %q, %v", s.flag, goods[1], got, err)
		}
	}
	checkRefusals(t, s)
}

// checkRefusals checks that s refuses its kind's malformed value from
// each variable and from the flag, naming where it came from and the
// shape wanted, and that a secret is never repeated.
func checkRefusals(t *testing.T, s setting) {
	k := s.value.kind()
	if s.secret && strings.Contains(s.refuse("X", "canary-s3cret").Error(), "canary-s3cret") {
		t.Error("a refusal repeats the secret")
	}
	if k.malformed == "" {
		return
	}
	sources := append([]string(nil), s.env...)
	if s.flag != "" {
		sources = append(sources, "--"+s.flag)
	}
	for _, source := range sources {
		var err error
		if strings.HasPrefix(source, "--") {
			_, err = applied(s, nil, k.malformed)
		} else {
			_, err = applied(s, map[string]string{source: k.malformed})
		}
		if err == nil {
			t.Errorf("%s=%s is taken", source, k.malformed)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, source+": ") || !strings.Contains(msg, k.shape) {
			t.Errorf("%s=%s: %q should name %s and %q", source, k.malformed, msg, source, k.shape)
		}
		if s.secret == strings.Contains(msg, k.malformed) {
			t.Errorf("%s=%s: %q (secret %v)", source, k.malformed, msg, s.secret)
		}
	}
}

// TestSecretSettings: the settings holding credentials are secret, so a
// refusal never repeats them.
func TestSecretSettings(t *testing.T) {
	secret := map[string]bool{"MEDIATOR_DATABASE_URL": true, "MEDIATOR_VAULT_TOKEN": true, "VAULT_TOKEN": true,
		"MEDIATOR_VAULT_SECRET_ID": true, "MEDIATOR_TOKEN": true, "MEDIATOR_INGEST_TOKEN": true,
		"MEDIATOR_AUDITOR_TOKEN": true, "MEDIATOR_METRICS_TOKEN": true}
	for cmd, settings := range commandSettings(t) {
		for _, s := range settings {
			for _, v := range s.env {
				if secret[v] && !s.secret {
					t.Errorf("%s: %s is not marked secret", cmd, v)
				}
			}
		}
	}
}

// TestReadmeListsServeSettings: README's configuration table names every
// flag and variable of serve.
func TestReadmeListsServeSettings(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range commandSettings(t)["serve"] {
		if s.flag != "" && !strings.Contains(string(readme), "`--"+s.flag+"`") {
			t.Errorf("README lacks `--%s`", s.flag)
		}
		for _, v := range s.env {
			if !strings.Contains(string(readme), "`"+v+"`") {
				t.Errorf("README lacks `%s`", v)
			}
		}
	}
}

// TestRosterDigestFromFile: @FILE stands for the digest it holds, so a
// shell-less image can pin a genesis its ceremony wrote; a file that
// holds anything else, nothing, or is missing is refused like a bad
// digest.
func TestRosterDigestFromFile(t *testing.T) {
	dir := t.TempDir()
	digest := "sha256:" + strings.Repeat("ab", 32)
	good, empty, bad := filepath.Join(dir, "genesis"), filepath.Join(dir, "empty"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(digest+"\n"), 0o600)
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(bad, []byte("sha256:abc\n"), 0o600)
	var got string
	v := rosterDigest(&got)
	if err := v.set("@" + good); err != nil || got != digest {
		t.Fatalf("@FILE: %q, %v; want %q", got, err, digest)
	}
	for _, text := range []string{"@" + empty, "@" + bad, "@" + filepath.Join(dir, "missing")} {
		if err := v.set(text); err == nil {
			t.Errorf("%s accepted", text)
		}
	}
}
