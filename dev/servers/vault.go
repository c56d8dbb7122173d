package servers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VaultVersion is the pinned Vault server. tools/vault/go.mod must require the
// same version. Later patch releases of 1.18–1.21 do not compile from the
// module proxy (their in-tree sdk differs from every published vault/sdk);
// v1.21.0 does. See docs/vault.md.
const VaultVersion = "v1.21.0"

// vaultGoSum is the first 12 hex digits of the SHA-256 of tools/vault/go.sum
// as this binary was built: the cache key of the pinned Vault outside the
// checkout. TestPinnedToolSums keeps it in step with the file.
const vaultGoSum = "31d09482f9bf"

// Vault is a reachable Vault server and a token with root-level rights on it
// (the dev server's root token, or the VAULT_TOKEN given to us).
type Vault struct {
	Addr  string
	Token string
	// Source says how it was found: "VAULT_ADDR", "PATH", "built".
	Source string

	cmd    *exec.Cmd
	exited chan struct{}
	dir    string
	log    *slog.Logger
}

// VaultOptions tune StartVault.
type VaultOptions struct {
	// IgnoreEnv skips VAULT_ADDR/VAULT_TOKEN and always starts a server.
	IgnoreEnv bool
	// RootToken is the dev server's root token; random when empty.
	RootToken string
}

// StartVault finds or starts Vault as the package comment describes. A server
// it starts runs in dev mode (in memory, unsealed) on a free loopback port
// and is killed if this process dies.
func StartVault(ctx context.Context, log *slog.Logger, opts VaultOptions) (*Vault, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); addr != "" && tok != "" && !opts.IgnoreEnv {
		if err := vaultHealthy(ctx, addr); err != nil {
			return nil, fmt.Errorf("harness: VAULT_ADDR is set but Vault is not ready: %w", err)
		}
		log.Info("vault: using VAULT_ADDR", "addr", addr)
		return &Vault{Addr: addr, Token: tok, Source: "VAULT_ADDR", log: log}, nil
	}
	bin, source := "", "PATH"
	if p, err := exec.LookPath("vault"); err == nil {
		bin = p
	} else {
		source = "built"
		if bin, err = EnsureVaultBinary(ctx, log); err != nil {
			return nil, err
		}
	}
	token := opts.RootToken
	if token == "" {
		token = "root-" + randomHex(16)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mediator-vault-")
	if err != nil {
		return nil, fmt.Errorf("harness: vault temp dir: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "vault.log"))
	if err != nil {
		return nil, fmt.Errorf("harness: vault log: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "server", "-dev",
		"-dev-listen-address="+addr,
		"-dev-root-token-id="+token,
		"-dev-no-store-token",
	)
	// HOME points into the temp dir so the server writes nothing of ours
	// anywhere else; the root token goes only to our caller.
	cmd.Env = append(os.Environ(), "HOME="+dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("harness: start vault %s: %w", bin, err)
	}
	logFile.Close()
	v := &Vault{Addr: "http://" + addr, Token: token, Source: source, cmd: cmd, exited: make(chan struct{}), dir: dir, log: log}
	go func() { _ = cmd.Wait(); close(v.exited) }()
	deadline := time.Now().Add(startTimeout)
	for vaultHealthy(ctx, v.Addr) != nil {
		select {
		case <-v.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "vault.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("harness: vault exited at start: %s", tail(b, 2000))
		case <-ctx.Done():
			v.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			v.Stop()
			return nil, fmt.Errorf("harness: vault did not become ready within %s", startTimeout)
		}
	}
	log.Info("vault: started a dev server", "addr", v.Addr, "binary", bin)
	return v, nil
}

// Seal seals a dev server this harness started: Vault then refuses every
// request but health and unseal, as after a restart or an operator's seal.
func (v *Vault) Seal(ctx context.Context) error {
	return v.sys(ctx, "PUT", "/v1/sys/seal", "")
}

// Unseal unseals it with the dev server's unseal key.
func (v *Vault) Unseal(ctx context.Context) error {
	if v.dir == "" {
		return errors.New("harness: Unseal needs a dev server this harness started")
	}
	b, err := os.ReadFile(filepath.Join(v.dir, "vault.log"))
	if err != nil {
		return fmt.Errorf("harness: vault log: %w", err)
	}
	m := regexp.MustCompile(`Unseal Key: (\S+)`).FindSubmatch(b)
	if m == nil {
		return errors.New("harness: no unseal key in the dev server's log")
	}
	return v.sys(ctx, "PUT", "/v1/sys/unseal", `{"key":"`+string(m[1])+`"}`)
}

func (v *Vault) sys(ctx context.Context, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, v.Addr+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("harness: vault %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		out, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("harness: vault %s: %s: %s", path, resp.Status, out)
	}
	return nil
}

// Stop stops a server StartVault started. It does nothing for one found
// through VAULT_ADDR.
func (v *Vault) Stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		<-v.exited
	}
	v.cmd = nil
	_ = os.RemoveAll(v.dir)
	v.log.Info("vault: stopped the dev server")
}

// vaultHealthy reports nil when Vault at addr answers its health endpoint as
// initialized, unsealed and active.
func vaultHealthy(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vault health status %d", resp.StatusCode)
	}
	return nil
}

// VaultCacheDir is where built Vault binaries are kept: outside the git tree,
// shared by every checkout on the machine. MEDIATOR_CACHE_DIR overrides it.
func VaultCacheDir() (string, error) {
	if d := os.Getenv("MEDIATOR_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("harness: cache dir: %w", err)
	}
	return filepath.Join(d, "mediator"), nil
}

// EnsureVaultBinary returns the path of the pinned Vault binary, building it
// from tools/vault when the cache does not hold one built from the current
// pin. The cache key is the version plus a hash of tools/vault/go.sum, so a
// changed pin builds again and an unchanged one never does. Concurrent callers
// (parallel test packages) wait for one build.
func EnsureVaultBinary(ctx context.Context, log *slog.Logger) (string, error) {
	return ensureTool(ctx, log, pinnedTool{name: "vault", dir: "vault", version: VaultVersion, sum: vaultGoSum, pkg: "github.com/hashicorp/vault",
		env: []string{"GONOSUMDB=github.com/hashicorp/vault-plugin-*"}, took: "about 10 minutes on 2 cores"})
}

// pinnedTool is a program built from a tools module of the checkout
// (tools/<dir>) and cached as <name>-<version>-<hash of go.sum>.
type pinnedTool struct {
	name, dir, version, pkg string
	// sum is the cache key's hash of tools/<dir>/go.sum as this binary
	// was built, for finding the cached tool outside the checkout.
	sum  string
	env  []string
	took string // how long a first build takes, for the log
}

// ensureTool returns the cached binary of t, building it from tools/<dir>
// when the cache holds none built from the module's current go.sum. Run
// outside the checkout, it finds the binary built from the pin this
// binary was built with (t.sum), and needs the checkout only to build.
func ensureTool(ctx context.Context, log *slog.Logger, t pinnedTool) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cacheDir, err := VaultCacheDir()
	if err != nil {
		return "", err
	}
	toolsDir, findErr := findToolsDir(t.dir)
	key := t.sum
	if findErr == nil {
		sum, err := os.ReadFile(filepath.Join(toolsDir, "go.sum"))
		if err != nil {
			return "", fmt.Errorf("harness: read tools/%s/go.sum: %w", t.dir, err)
		}
		key = goSumKey(sum)
	}
	bin := filepath.Join(cacheDir, t.name+"-"+t.version+"-"+key)
	if isExecutable(bin) {
		return bin, nil
	}
	if findErr != nil {
		return "", fmt.Errorf("harness: the cache holds no pinned %s (%s), and building it needs the mediator checkout: %w", t.name, bin, findErr)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("harness: cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(cacheDir, t.name+"-build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // another process built it while we waited
		return bin, nil
	}
	log.Info(t.name+": building the pinned "+t.name+" from the Go module proxy; the first build takes "+t.took,
		"version", t.version, "cache", bin)
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, t.pkg)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), t.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("harness: build %s %s: %w: %s", t.name, t.version, err, tail(out, 4000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("harness: cache %s: %w", t.name, err)
	}
	log.Info(t.name+": built", "version", t.version, "duration_ms", float64(time.Since(start).Microseconds())/1000)
	return bin, nil
}

// goSumKey is the cache key of a tools module's go.sum: the first 12 hex
// digits of its SHA-256.
func goSumKey(sum []byte) string {
	h := sha256.Sum256(sum)
	return hex.EncodeToString(h[:6])
}

// findToolsDir walks up from the working directory to the checkout's
// tools/<name> module.
func findToolsDir(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	for {
		candidate := filepath.Join(dir, "tools", name)
		if _, err := os.Stat(filepath.Join(candidate, "go.mod")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("harness: tools/%s not found above the working directory: run from the mediator checkout so the pinned %s can be built", name, name)
		}
		dir = parent
	}
}

// lockFile takes an exclusive flock on path, blocking until it is free.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("harness: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("harness: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("harness: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
