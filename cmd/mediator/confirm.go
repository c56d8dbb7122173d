package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// errNotConfirmed: a person did not say yes, or no person was there to
// ask. Nothing was signed or changed.
var errNotConfirmed = errors.New("not confirmed: nothing was signed or changed")

// isTerminal reports whether f is a character device: a person's
// terminal rather than a pipe or a file.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// confirm asks question ("sign?") on the person's terminal and returns
// nil only when they answer y or yes. With yes (the --yes flag) it
// confirms without asking, for scripts that have checked what they sign.
// Without a terminal and without yes it refuses: what a person did not
// see, no one signs in their name.
func (c *call) confirm(question string, yes bool) error {
	if yes {
		return nil
	}
	if !c.terminal || c.stdin == nil {
		return fmt.Errorf("%w (no terminal to ask on; pass --yes once you have checked what is shown)", errNotConfirmed)
	}
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%w (no answer)", errNotConfirmed)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}

// A guard is the --yes and --dry-run flags of a command whose effect
// cannot be undone: it first shows what it will do, worked out without
// changing anything, then asks (confirm).
type guard struct{ yes, dryRun *bool }

// declareGuard declares a guard's flags on fs.
func declareGuard(fs *flagSet) guard {
	return guard{
		yes:    fs.Bool("yes", false, "act without asking, once you have checked what is shown (without a terminal, nothing is done without it)"),
		dryRun: fs.Bool("dry-run", false, "only show what would be done, change nothing, and exit 0"),
	}
}

// out is where the command shows what it will do: stdout for a dry run,
// whose output that is; else stderr, beside the question, so that stdout
// keeps what was done.
func (g guard) out(c *call) io.Writer {
	if *g.dryRun {
		return c.stdout
	}
	return c.stderr
}

// proceed is asked once what cmd will do is shown: false with a dry run
// (nothing changed, no error), an error wrapping errNotConfirmed unless
// confirm gets a yes to question, else true.
func (c *call) proceed(g guard, cmd, question string) (bool, error) {
	if *g.dryRun {
		fmt.Fprintf(c.stderr, "%s: dry run: nothing was changed\n", cmd)
		return false, nil
	}
	if err := c.confirm(question, *g.yes); err != nil {
		return false, fmt.Errorf("%s: %w", cmd, err)
	}
	return true, nil
}
