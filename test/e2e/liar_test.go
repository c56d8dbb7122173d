package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"
)

// liar is the mediator's host lying to people: a proxy in front of the
// real mediator that hands each answer to rewrite, which may change its
// status and body, as a host that serves the mediator's address can. The
// people's tools are pointed at URL.
type liar struct {
	URL string
}

// lyingHost starts a liar in front of base. rewrite gets each request
// and the real answer's status and body, and returns what the person
// sees; it returns them unchanged to pass an answer through.
func lyingHost(t *testing.T, base string, rewrite func(r *http.Request, status int, body []byte) (int, []byte)) *liar {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(res *http.Response) error {
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		status, body := rewrite(res.Request, res.StatusCode, body)
		res.StatusCode = status
		res.Status = strconv.Itoa(status) + " " + http.StatusText(status)
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return &liar{URL: srv.URL}
}
