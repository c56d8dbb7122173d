package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A flagSet is one command's flags: its settings, and plain flags that
// only the command line sets. Its Parse reads the command line and then
// every setting, so a command sees a complete configuration or an error.
type flagSet struct {
	*flag.FlagSet
	call     *call
	settings []setting
	given    []*flagTexts // given[i] records settings[i]'s flag; nil without one
}

// flagTexts records a setting's flag each time it is given; the setting
// parses them once the whole command line is read.
type flagTexts struct{ texts []string }

func (f *flagTexts) Set(s string) error { f.texts = append(f.texts, s); return nil }
func (f *flagTexts) String() string     { return "" }

// newFlags returns the running command's flag set with settings declared
// on it; the command adds its plain flags. Its help goes to stdout, its
// errors to stderr.
func (c *call) newFlags(settings ...setting) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(c.name(), flag.ContinueOnError), call: c, settings: settings}
	fs.SetOutput(c.stderr)
	fs.Usage = func() { fs.writeUsage(fs.Output()) }
	for _, s := range settings {
		var given *flagTexts
		if s.flag != "" {
			given = &flagTexts{}
			fs.Var(given, s.flag, s.usage+s.hint())
		}
		fs.given = append(fs.given, given)
	}
	c.flags = fs
	return fs
}

// Parse parses args and then applies every setting. On --help or -h it
// writes the command's usage to stdout and returns flag.ErrHelp. It reports
// every malformed setting at once.
func (fs *flagSet) Parse(args []string) error {
	if err := fs.parseFlags(args); err != nil {
		return err
	}
	return fs.apply()
}

// parseFlags parses args, writing requested help to stdout and a usage
// error to stderr.
func (fs *flagSet) parseFlags(args []string) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.FlagSet.Parse(args)
	fs.SetOutput(fs.call.stderr)
	w := fs.call.stderr
	if errors.Is(err, flag.ErrHelp) {
		w = fs.call.stdout
	}
	_, _ = out.WriteTo(w)
	return err
}

// apply sets every setting from its flag, its variables or its default.
func (fs *flagSet) apply() error {
	var errs []error
	for i, s := range fs.settings {
		var texts []string
		if fs.given[i] != nil {
			texts = fs.given[i].texts
		}
		if err := s.apply(texts, fs.call.getenv); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("configuration:\n%w", errors.Join(errs...))
	}
	return nil
}

// writeUsage writes the command's forms, then its flags and the variables
// that have no flag.
func (fs *flagSet) writeUsage(w io.Writer) {
	fs.call.writeUsage(w)
	var flags bytes.Buffer
	fs.VisitAll(func(f *flag.Flag) { fs.writeFlag(&flags, f) })
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.Bytes())
	}
	var env bytes.Buffer
	for _, s := range fs.settings {
		if s.flag == "" {
			fmt.Fprintf(&env, "  %s\n    \t%s\n", strings.Join(s.env, ", "), s.usage)
		}
	}
	if env.Len() > 0 {
		fmt.Fprintf(w, "\nEnvironment (no flag):\n%s", env.Bytes())
	}
}

// writeFlag writes one flag as flag.PrintDefaults does, with a setting's
// kind and default.
func (fs *flagSet) writeFlag(w io.Writer, f *flag.Flag) {
	typ, usage := flag.UnquoteUsage(f)
	def := f.DefValue
	for i, s := range fs.settings {
		if fs.given[i] != nil && f.Value == flag.Value(fs.given[i]) { // the setting's flag, or another name for it
			typ, def = s.value.kind().name, s.value.defaultText()
		}
	}
	fmt.Fprintf(w, "  -%s", f.Name)
	if typ != "" {
		fmt.Fprintf(w, " %s", typ)
	}
	fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
	switch {
	case def == "" || def == "0" || def == "false" || def == "0s":
	case typ == "string":
		fmt.Fprintf(w, " (default %q)", def)
	default:
		fmt.Fprintf(w, " (default %v)", def)
	}
	fmt.Fprintln(w)
}
