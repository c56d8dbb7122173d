// Package secretfile reads a secret handed over in a file: a Vault Agent
// sink, a Kubernetes secret volume, a file an operator wrote with mode 0600.
// It is the one place the mediator reads such files, so each is read the
// same way and its contents never appear in an error.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSize bounds a secret file: tokens, ids, PINs and URLs are short.
const maxSize = 64 << 10

// Read returns the contents of the file at path with surrounding white
// space (a trailing newline) removed. An empty file is an error. Errors
// name the file, never its contents.
func Read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	defer clear(b)
	if len(b) > maxSize {
		return "", fmt.Errorf("secret file %s: larger than %d bytes", path, maxSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s: %w", path, errEmpty)
	}
	return s, nil
}

var errEmpty = errors.New("empty")
