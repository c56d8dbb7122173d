package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDurationsAreLoggedAsDurationMS: every component logs a duration
// under one field, duration_ms (milliseconds, a number), so one log query
// covers the mediator, the custodians, the agent and the pseudonym
// service. No log call in the module's code names a duration otherwise
// (duration, took, elapsed, latency), and none uses slog.Duration (which
// the JSON handler writes as nanoseconds).
func TestDurationsAreLoggedAsDurationMS(t *testing.T) {
	logCalls := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true, "Log": true, "LogAttrs": true, "With": true,
		"DebugContext": true, "InfoContext": true, "WarnContext": true, "ErrorContext": true,
		"String": true, "Any": true, "Int": true, "Int64": true, "Float64": true, "Duration": true, "Group": true}
	banned := map[string]bool{"duration": true, "took": true, "elapsed": true, "latency": true}
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "tools" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !logCalls[sel.Sel.Name] {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "slog" && sel.Sel.Name == "Duration" {
				t.Errorf("%s: slog.Duration logs nanoseconds; log duration_ms (milliseconds)", fset.Position(call.Pos()))
			}
			for _, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if key, err := strconv.Unquote(lit.Value); err == nil && banned[key] {
					t.Errorf("%s: a log call names a duration %q; name it duration_ms (milliseconds)", fset.Position(lit.Pos()), key)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d files checked", checked)
	}
}
