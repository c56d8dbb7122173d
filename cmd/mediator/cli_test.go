package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/parser"
	"go/token"
	"io"
	"strings"
	"testing"
	"time"
)

// node is a command of the tree with the words that reach it.
type node struct {
	path []string // without "mediator"
	cmd  *command
}

// allCommands lists every command and verb of the tree, depth first.
func allCommands() []node {
	var out []node
	var walk func(path []string, cmd *command)
	walk = func(path []string, cmd *command) {
		for _, v := range cmd.verbs {
			p := append(append([]string(nil), path...), v.name)
			out = append(out, node{p, v})
			walk(p, v)
		}
	}
	walk(nil, commands())
	return out
}

// runArgs runs args in-process with env as the whole environment.
func runArgs(args []string, env map[string]string) (c *call, stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	c = &call{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }}
	err = c.dispatch(context.Background(), commands(), args)
	return c, out.String(), errOut.String(), err
}

// TestHelpOnEveryCommand walks every command and verb of the tree with
// --help and -h: each exits 0 and prints its own usage to stdout, listing
// only its own forms (and its verbs'), and only serve lists serve's
// flags.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, n := range allCommands() {
		name := "mediator " + strings.Join(n.path, " ")
		for _, help := range []string{"--help", "-h"} {
			t.Run(name+" "+help, func(t *testing.T) {
				args := append(append([]string(nil), n.path...), help)
				_, stdout, stderr, err := runArgs(args, nil)
				if exitStatus(helpIsNoError(err)) != 0 || stderr != "" {
					t.Fatalf("exit %d, stderr %q", exitStatus(helpIsNoError(err)), stderr)
				}
				if !strings.HasPrefix(stdout, "Usage:\n") {
					t.Fatalf("no usage:\n%s", stdout)
				}
				for _, f := range n.cmd.forms {
					if !strings.Contains(stdout, strings.TrimSpace(name+" "+f.args)) {
						t.Errorf("lacks its form %q:\n%s", f.args, stdout)
					}
				}
				for _, line := range strings.Split(stdout, "\n") {
					if strings.HasPrefix(line, "  mediator ") && !strings.HasPrefix(line+" ", "  "+name+" ") {
						t.Errorf("lists another command: %q", line)
					}
				}
				if name != "mediator serve" && strings.Contains(stdout, "-jwt-jwks") {
					t.Errorf("lists serve's flags:\n%s", stdout)
				}
			})
		}
	}
}

// helpIsNoError is what run makes of the error: help asked for is none.
func helpIsNoError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// TestHelpListsEverySetting: each command's help names the flag or the
// variables of every setting it reads.
func TestHelpListsEverySetting(t *testing.T) {
	for _, n := range allCommands() {
		if n.cmd.run == nil {
			continue
		}
		c, stdout, _, _ := runArgs(append(append([]string(nil), n.path...), "--help"), nil)
		for _, s := range c.flags.settings {
			if s.flag != "" && !strings.Contains(stdout, "  -"+s.flag+" ") {
				t.Errorf("%v --help lacks -%s", n.path, s.flag)
			}
			for _, v := range s.env {
				if !strings.Contains(stdout, v) {
					t.Errorf("%v --help lacks %s", n.path, v)
				}
			}
		}
	}
}

// TestTopLevelHelp: mediator help, --help and -h print the usage listing
// every command and verb; mediator version and --version print the
// version.
func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		stdout, stderr, err := runMain(args)
		if err != nil || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Fatalf("%v: %v %q", args, err, stderr)
		}
		for _, n := range allCommands() {
			if n.cmd.run != nil && !strings.Contains(stdout, "mediator "+strings.Join(n.path, " ")) {
				t.Errorf("%v lacks %v", args, n.path)
			}
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if stdout, _, err := runMain(args); err != nil || stdout != "mediator "+version+"\n" {
			t.Errorf("%v: %q %v", args, stdout, err)
		}
	}
}

// runMain runs args as main does, through run.
func runMain(args []string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestUnknownOrMissingVerb: a group without a verb, or with one it lacks,
// writes its usage to stderr and exits 2; so does an unknown command, and
// mediator alone.
func TestUnknownOrMissingVerb(t *testing.T) {
	cases := [][]string{{}, {"bogus"}}
	for _, n := range allCommands() {
		if len(n.cmd.verbs) > 0 {
			cases = append(cases, append(append([]string(nil), n.path...), "bogus"))
			if n.cmd.run == nil {
				cases = append(cases, n.path)
			}
		}
	}
	for _, args := range cases {
		_, stdout, stderr, err := runArgs(args, nil)
		if exitStatus(err) != 2 || stdout != "" || !strings.Contains(stderr, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, exitStatus(err), stdout, stderr)
		}
		if len(args) > 0 && args[len(args)-1] == "bogus" && !strings.Contains(stderr, `"bogus"`) {
			t.Errorf("%v: does not name the unknown word: %q", args, stderr)
		}
	}
}

// TestPackageDocListsEveryCommand: the package documentation lists every
// form of every command, exactly as the usage does.
func TestPackageDocListsEveryCommand(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	writeForms(&want, "\t", "mediator", commands())
	if !strings.Contains(f.Doc.Text(), want.String()) {
		t.Errorf("the package doc in main.go should list, after a line \"//\":\n%s",
			strings.ReplaceAll("//"+strings.TrimSuffix(want.String(), "\n"), "\n", "\n//"))
	}
}

// TestMalformedSettingStopsServe: MEDIATOR_CHECKPOINT_INTERVAL=abc stops
// mediator serve at once, non-zero, naming the variable and the shape.
func TestMalformedSettingStopsServe(t *testing.T) {
	t.Setenv("MEDIATOR_CHECKPOINT_INTERVAL", "abc")
	start := time.Now()
	_, _, err := runMain([]string{"serve"})
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v", took)
	}
	if exitStatus(err) == 0 {
		t.Fatal("serve started")
	}
	want := `MEDIATOR_CHECKPOINT_INTERVAL: "abc" is not a duration (such as 1s, 5m, 72h)`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

// TestHelpShowsNoSecret: help shows defaults, never the environment's
// values, so a secret there stays off the terminal.
func TestHelpShowsNoSecret(t *testing.T) {
	const canary = "canary-s3cret"
	env := map[string]string{"MEDIATOR_DATABASE_URL": "postgres://u:" + canary + "@h/db", "DATABASE_URL": canary,
		"MEDIATOR_TOKEN": canary, "MEDIATOR_INGEST_TOKEN": canary, "VAULT_TOKEN": canary, "MEDIATOR_VAULT_TOKEN": canary}
	for _, n := range allCommands() {
		_, stdout, stderr, _ := runArgs(append(append([]string(nil), n.path...), "--help"), env)
		if strings.Contains(stdout+stderr, canary) {
			t.Errorf("%v --help shows a secret from the environment", n.path)
		}
	}
}

func TestConfirmAsksAPersonOrRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		terminal bool
		yes      bool
		answer   string
		ok       bool
	}{
		{"no terminal, no --yes", false, false, "y\n", false},
		{"no terminal, --yes", false, true, "", true},
		{"terminal, y", true, false, "y\n", true},
		{"terminal, YES", true, false, "YES\n", true},
		{"terminal, enter", true, false, "\n", false},
		{"terminal, n", true, false, "n\n", false},
		{"terminal, closed", true, false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errOut strings.Builder
			c := &call{stdout: io.Discard, stderr: &errOut, stdin: strings.NewReader(tc.answer), terminal: tc.terminal}
			err := c.confirm("sign?", tc.yes)
			if (err == nil) != tc.ok {
				t.Fatalf("confirm = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, errNotConfirmed) {
				t.Fatalf("a refusal is %v, want errNotConfirmed", err)
			}
			if tc.terminal && !tc.yes && !strings.Contains(errOut.String(), "sign? [y/N]") {
				t.Fatalf("the question was not asked: %q", errOut.String())
			}
		})
	}
}
