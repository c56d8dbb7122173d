// Package e2e tells the mediator's user stories against the real binary, a
// real PostgreSQL and a real Vault server started by test/harness.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/test/apispec"
	"github.com/mediatorhq/mediator/test/harness"
)

var (
	env      *harness.Env
	mediator string // path of the mediator binary built for this run
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mediator-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	mediator = filepath.Join(dir, "mediator")
	out, err := exec.Command("go", "build", "-o", mediator, "github.com/mediatorhq/mediator/cmd/mediator").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "FAIL: build mediator: %v\n%s", err, out)
		os.Exit(1)
	}
	// harness.Main exits the process, so the binary's directory is removed
	// here rather than in a defer.
	e, err := harness.Start(true)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "FAIL: test dependencies did not start: %v\n", err)
		os.Exit(1)
	}
	env = e
	// Every answer of the service to an operation of api/openapi.yaml, in
	// every story, is checked against the description.
	spec, err := apispec.Load(context.Background())
	if err != nil {
		e.Close()
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	http.DefaultClient.Transport = &apispec.Transport{Spec: spec, Fail: specMismatches.add}
	code := m.Run()
	if n := specMismatches.report(os.Stderr); n > 0 && code == 0 {
		code = 1
	}
	e.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// specMismatches collects answers that did not match the description.
var specMismatches mismatches

type mismatches struct {
	mu   sync.Mutex
	errs []error
}

func (m *mismatches) add(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, err)
}

func (m *mismatches) report(w io.Writer) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, err := range m.errs {
		fmt.Fprintln(w, "FAIL: answer does not match api/openapi.yaml:", err)
	}
	return len(m.errs)
}

// process is a running mediator subcommand with its output captured.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns everything the process wrote to stdout and stderr so far.
func (p *process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs the mediator binary with args and extra environment. The
// process is killed when the test ends, if still running.
func start(t *testing.T, environ []string, args ...string) *process {
	t.Helper()
	return startProgram(t, mediator, environ, args...)
}

// startProgram runs the program at path with args and extra environment,
// killed when the test ends if still running.
func startProgram(t *testing.T, path string, environ []string, args ...string) *process {
	t.Helper()
	p := &process{exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(cleanEnv(), environ...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// stop sends sig and waits for the process to exit.
func (p *process) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(60 * time.Second):
		t.Fatalf("process did not exit within 60s of %v; output:\n%s", sig, p.Output())
		return nil
	}
}

// runCmd runs the mediator binary to completion and returns stdout, stderr.
func runCmd(t *testing.T, environ []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(mediator, args...)
	cmd.Env = append(cleanEnv(), environ...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// cleanEnv is the test's environment without the variables the mediator
// reads, so each test states exactly what it configures.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MEDIATOR_") || k == "DATABASE_URL" || k == "VAULT_ADDR" || k == "VAULT_TOKEN" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freeAddr is a loopback address for a server the test starts next, on a
// port no outgoing connection can take meanwhile (servers.FreeLoopbackPort).
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := servers.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// waitStatus polls url until it answers want or the deadline passes.
func waitStatus(t *testing.T, p *process, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case <-p.exited:
				t.Fatalf("process exited (%v) before %s answered %d; output:\n%s", p.err, url, want, p.Output())
			default:
			}
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := ""
	if p != nil {
		out = p.Output()
	}
	t.Fatalf("%s did not answer %d within %s (last: %s); output:\n%s", url, want, within, last, out)
}

// call makes a request and decodes a JSON body.
func call(t *testing.T, method, url, token string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header
}

func errorCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// rawGet returns the body of a GET as text.
func rawGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
