package mirror

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Copy reads a mirror's copy of a log over C2SP tlog-tiles. URL is the
// copy's prefix, <monitoring prefix>/<origin hash>.
type Copy struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Checkpoint returns the mirror checkpoint as served: the log's signed
// note with the mirror's cosignature. The caller verifies both.
func (c Copy) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.get(ctx, "checkpoint")
}

// Entries returns an iterator over the leaves of entries [0, size), an
// entry bundle at a time, then io.EOF.
func (c Copy) Entries(size int64) func(context.Context) ([][]byte, error) {
	index := uint64(0)
	return func(ctx context.Context) ([][]byte, error) {
		if int64(index)*PackageSize >= size {
			return nil, io.EOF
		}
		width := min(size-int64(index)*PackageSize, PackageSize)
		p := uint8(0)
		if width < PackageSize {
			p = uint8(width)
		}
		b, err := c.get(ctx, layout.EntriesPath(index, p))
		if err != nil {
			return nil, err
		}
		var bundle api.EntryBundle
		if err := bundle.UnmarshalText(b); err != nil {
			return nil, fmt.Errorf("mirror: entry bundle %d: %w", index, err)
		}
		if int64(len(bundle.Entries)) != width {
			return nil, fmt.Errorf("mirror: entry bundle %d holds %d entries, not %d", index, len(bundle.Entries), width)
		}
		index++
		return bundle.Entries, nil
	}
}

func (c Copy) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.URL, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mirror: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("mirror: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mirror: GET %s: %s", path, resp.Status)
	}
	return b, nil
}
