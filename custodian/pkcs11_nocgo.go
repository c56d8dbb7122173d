//go:build !cgo

package custodian

import (
	"context"
	"errors"
)

// PKCS11Wrapper is unavailable in this build: PKCS#11 needs cgo to load the
// token's library. Build with CGO_ENABLED=1 for HSM custodians.
type PKCS11Wrapper struct{}

// errNoPKCS11 is what a build without cgo answers for PKCS#11.
var errNoPKCS11 = errors.New("custodian: this mediator was built without cgo and cannot use PKCS#11 custodians; use the cgo build (docs/escrow.md)")

// OpenPKCS11 fails in a build without cgo.
func OpenPKCS11(PKCS11Config) (*PKCS11Wrapper, error) { return nil, errNoPKCS11 }

// EnsurePKCS11Key fails in a build without cgo.
func EnsurePKCS11Key(PKCS11Config) (bool, error) { return false, errNoPKCS11 }

// Close implements io.Closer.
func (*PKCS11Wrapper) Close() error { return nil }

// Wrap implements Wrapper; it always fails in this build.
func (*PKCS11Wrapper) Wrap(context.Context, []byte, []byte) ([]byte, error) { return nil, errNoPKCS11 }

// WrapAll implements Wrapper; it always fails in this build.
func (*PKCS11Wrapper) WrapAll(_ context.Context, _, plaintexts [][]byte) ([][]byte, []error) {
	errs := make([]error, len(plaintexts))
	for i := range errs {
		errs[i] = errNoPKCS11
	}
	return make([][]byte, len(plaintexts)), errs
}

// Unwrap implements Wrapper; it always fails in this build.
func (*PKCS11Wrapper) Unwrap(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errNoPKCS11
}

// UnwrapAll implements Wrapper; it always fails in this build.
func (w *PKCS11Wrapper) UnwrapAll(ctx context.Context, aads, wrapped [][]byte) ([][]byte, []error) {
	return w.WrapAll(ctx, aads, wrapped)
}

// Rewrap implements Rewrapper; it always fails in this build.
func (*PKCS11Wrapper) Rewrap(context.Context, []byte, []byte) ([]byte, bool, error) {
	return nil, false, errNoPKCS11
}
