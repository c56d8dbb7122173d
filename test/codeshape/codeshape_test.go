// Package codeshape holds the habits of the codebase to what
// docs/architecture.md promises a reader, as tests: the code where trust
// is decided reads in short functions, every package says what it is, and
// no error is told apart by its text.
package codeshape

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root is the module's root, from this package's directory.
const root = "../.."

// maxFuncLines bounds a function in the packages where trust is decided:
// a reviewer reads each one whole, so none may be longer than a screen or
// two (issue 19).
const maxFuncLines = 100

// trustPackages are the packages whose functions are held to maxFuncLines.
var trustPackages = []string{"access", "custodian", "audit", "escrow", "roster", "governance"}

// packages parses every package of the module (not tools/, whose modules
// are separate, nor testdata), without its tests, by directory.
func packages(t *testing.T) map[string][]*ast.File {
	t.Helper()
	out := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "tools" || d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		out[dir] = append(out[dir], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

// TestTrustCodeIsShort: no function in the packages where trust is
// decided is longer than maxFuncLines (generated code aside).
func TestTrustCodeIsShort(t *testing.T) {
	fset := token.NewFileSet()
	for _, pkg := range trustPackages {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("package %s: no files (%v)", pkg, err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if ast.IsGenerated(f) {
				continue
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
					t.Errorf("%s: %s is %d lines; cut it into named phases of at most about 60", fset.Position(fd.Pos()), fd.Name.Name, n)
				}
			}
		}
	}
}

// TestEveryPackageSaysWhatItIs: go doc of every package starts with a
// package comment.
func TestEveryPackageSaysWhatItIs(t *testing.T) {
	for dir, files := range packages(t) {
		documented := false
		for _, f := range files {
			if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
				documented = true
			}
		}
		if !documented {
			t.Errorf("package %s has no package comment", dir)
		}
	}
}

// TestNoErrorIsToldApartByItsText: no code outside tests passes an
// error's text to strings.Contains, HasPrefix, HasSuffix, TrimPrefix or
// Index, nor compares it with ==: errors are told apart with errors.Is and
// errors.As (and, for PostgreSQL and Vault, by their codes).
func TestNoErrorIsToldApartByItsText(t *testing.T) {
	fset := token.NewFileSet()
	for dir := range packages(t) {
		paths, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, path := range paths {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, where := range errorTextInspections(fset, f) {
				t.Error(where)
			}
		}
	}
}

// errorTextInspections lists the places in f that inspect an error's
// text.
func errorTextInspections(fset *token.FileSet, f *ast.File) []string {
	inspect := map[string]bool{"Contains": true, "HasPrefix": true, "HasSuffix": true, "TrimPrefix": true, "TrimSuffix": true, "Index": true}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && inspect[sel.Sel.Name] && isPkg(sel.X, "strings") {
				for _, a := range n.Args {
					if isErrorText(a) {
						out = append(out, fmt.Sprintf("%s: strings.%s on an error's text", fset.Position(n.Pos()), sel.Sel.Name))
					}
				}
			}
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && (isErrorText(n.X) || isErrorText(n.Y)) {
				out = append(out, fmt.Sprintf("%s: an error's text compared with %s", fset.Position(n.Pos()), n.Op))
			}
		}
		return true
	})
	return out
}

func isPkg(x ast.Expr, name string) bool {
	id, ok := x.(*ast.Ident)
	return ok && id.Name == name
}

// isErrorText reports whether e is a call of a method Error with no
// arguments: err.Error(), e.Err.Error().
func isErrorText(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}

// TestTheCheckSeesWhatItLooksFor: the error-text check finds the shapes
// it looks for, and only those, so that a pass means something.
func TestTheCheckSeesWhatItLooksFor(t *testing.T) {
	src := `package p
import ("errors"; "strings")
var errX = errors.New("x")
func f(err error) bool { return strings.Contains(err.Error(), "check-and-set") || err.Error() == "x" }
func g(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }
func h(err error) bool { return errors.Is(err, errX) || strings.Contains("abc", "b") }`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := errorTextInspections(fset, f); len(got) != 3 {
		t.Fatalf("found %d of 3 error-text inspections: %q", len(got), got)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("root %s is not the module root: %v", root, err)
	}
}
