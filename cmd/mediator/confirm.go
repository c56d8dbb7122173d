package main

import (
	"bufio"
	"errors"
	"fmt"
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
