package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// A command is a word of the command line: a leaf that runs, a group of
// verbs, or both (dev runs, and has verbs of its own). The tree of them,
// commands(), is the one place a command is dispatched from and described:
// the usage texts are written from it.
type command struct {
	name  string
	forms []form // how the command is called; none for a group that does not run
	about string // more for its help, after the forms
	run   func(ctx context.Context, c *call, args []string) error
	verbs []*command
}

// A form is one way to call a command: the arguments after its name, and
// what it does called so.
type form struct{ args, does string }

// verb returns cmd's verb named name, or nil.
func (cmd *command) verb(name string) *command {
	for _, v := range cmd.verbs {
		if v.name == name {
			return v
		}
	}
	return nil
}

// A call is one run of the command line: where its output goes, how it
// reads the environment, and the command reached.
type call struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stdin is where confirm reads a person's answer; terminal says
	// whether a person is there (stdin and stderr are a terminal).
	stdin    io.Reader
	terminal bool
	path     []*command // the root, then each command matched on the way
	flags    *flagSet   // the running command's flags, once it declared them
}

// command is the command reached.
func (c *call) command() *command { return c.path[len(c.path)-1] }

// name is the command reached as typed, such as "mediator escrow hold".
func (c *call) name() string {
	names := make([]string, len(c.path))
	for i, cmd := range c.path {
		names[i] = cmd.name
	}
	return strings.Join(names, " ")
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "--help" || arg == "-help"
}

// dispatch runs cmd with args: a leaf runs; a group runs the verb args
// names. A group's help goes to stdout; a group called without a verb, or
// with one it lacks, writes its usage to stderr and exits 2.
func (c *call) dispatch(ctx context.Context, cmd *command, args []string) error {
	c.path = append(c.path, cmd)
	if len(cmd.verbs) == 0 {
		return cmd.run(ctx, c, args)
	}
	if len(args) > 0 {
		if v := cmd.verb(args[0]); v != nil {
			return c.dispatch(ctx, v, args[1:])
		}
	}
	switch {
	case cmd.run != nil && len(args) > 0 && isHelp(args[0]):
		return cmd.run(ctx, c, []string{"--help"})
	case cmd.run != nil && (len(args) == 0 || strings.HasPrefix(args[0], "-")):
		return cmd.run(ctx, c, args)
	case len(args) > 0 && isHelp(args[0]):
		c.writeUsage(c.stdout)
		return nil
	case len(args) > 0 && len(c.path) == 1:
		fmt.Fprintf(c.stderr, "unknown command %q\n\n", args[0])
	case len(args) > 0:
		fmt.Fprintf(c.stderr, "unknown %s verb %q\n\n", cmd.name, args[0])
	}
	c.writeUsage(c.stderr)
	return exitCode(2)
}

// synopsisWidth is the column where what a form does starts.
const synopsisWidth = 34

// writeForms writes every form of cmd, called name, and of every verb
// below it, one a line, each line starting with indent.
func writeForms(w io.Writer, indent, name string, cmd *command) {
	for _, f := range cmd.forms {
		syn := strings.TrimSpace(name + " " + f.args)
		if len(syn) < synopsisWidth {
			fmt.Fprintf(w, "%s%-*s%s\n", indent, synopsisWidth, syn, f.does)
		} else {
			fmt.Fprintf(w, "%s%s\n%s%*s%s\n", indent, syn, indent, synopsisWidth, "", f.does)
		}
	}
	for _, v := range cmd.verbs {
		writeForms(w, indent, name+" "+v.name, v)
	}
}

// writeUsage writes the usage of the command reached: its forms and its
// verbs', and what more it says about itself. A command's flags follow it
// (flagSet.writeUsage).
func (c *call) writeUsage(w io.Writer) {
	cmd := c.command()
	if len(c.path) == 1 {
		fmt.Fprint(w, "mediator — compliance service for end-to-end-encrypted messaging\n\n")
	}
	fmt.Fprintln(w, "Usage:")
	writeForms(w, "  ", c.name(), cmd)
	if cmd.about != "" {
		fmt.Fprintf(w, "\n%s", cmd.about)
	}
	switch {
	case len(c.path) == 1:
		fmt.Fprintf(w, "\nRun \"mediator COMMAND --help\" for a command's flags.\n")
	case len(cmd.verbs) > 0:
		fmt.Fprintf(w, "\nRun \"%s VERB --help\" for a verb's flags.\n", c.name())
	}
}
