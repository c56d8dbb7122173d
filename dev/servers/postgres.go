// Package servers finds or starts the real servers the mediator runs
// against on one machine, for `mediator dev` and for the tests
// (test/harness): PostgreSQL and HashiCorp Vault (building the pinned Vault
// when needed), and SoftHSM2 tokens. The service's own packages never
// import it. Nothing here is a mock: when a server cannot be found or
// started, the caller gets an error that says what was tried.
//
// PostgreSQL is found in this order: DATABASE_URL; a server answering on
// 127.0.0.1:5432; a throwaway cluster made with the installed initdb; and, as
// root on Debian, the postgresql package installed with apt first.
//
// Vault is found in this order: VAULT_ADDR with VAULT_TOKEN; a vault binary on
// PATH; the pinned Vault built from the Go module proxy by tools/vault and
// cached outside the git tree.
package servers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultLocalPostgres is the server the Debian package (and this project's
// CI machines) run, with trust authentication for local TCP.
const defaultLocalPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// startTimeout bounds how long we wait for a server we started to answer.
const startTimeout = 60 * time.Second

// Postgres is a reachable PostgreSQL server with a superuser connection.
type Postgres struct {
	// AdminURL connects as a superuser to a maintenance database.
	AdminURL string
	// Source says how the server was found: "DATABASE_URL", "local", "initdb".
	Source string

	cmd     *exec.Cmd     // the postmaster we started, if any
	exited  chan struct{} // closed when cmd has been waited for
	dataDir string
	ownData bool // remove dataDir on Stop
	log     *slog.Logger
	bin     string // the server binaries' directory
	port    int
}

// PostgresOptions tune StartPostgres.
type PostgresOptions struct {
	// DataDir keeps the cluster's files when we must start one (dev mode keeps
	// them in its state directory so the log survives restarts). Empty means a
	// temporary directory removed on Stop.
	DataDir string
	// NoLocal skips probing 127.0.0.1:5432, forcing a private cluster.
	NoLocal bool
	// IgnoreEnv skips DATABASE_URL.
	IgnoreEnv bool
}

// StartPostgres finds or starts PostgreSQL as the package comment describes.
func StartPostgres(ctx context.Context, log *slog.Logger, opts PostgresOptions) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if u := os.Getenv("DATABASE_URL"); u != "" && !opts.IgnoreEnv {
		if err := ping(ctx, u); err != nil {
			return nil, fmt.Errorf("harness: DATABASE_URL is set but PostgreSQL does not answer: %w", err)
		}
		log.Info("postgres: using DATABASE_URL")
		return &Postgres{AdminURL: u, Source: "DATABASE_URL", log: log}, nil
	}
	if !opts.NoLocal {
		if err := ping(ctx, defaultLocalPostgres); err == nil {
			log.Info("postgres: using the server on 127.0.0.1:5432")
			return &Postgres{AdminURL: defaultLocalPostgres, Source: "local", log: log}, nil
		}
	}
	bin, err := findPostgresBin()
	if err != nil {
		if installErr := aptInstallPostgres(ctx, log); installErr != nil {
			return nil, fmt.Errorf("harness: no PostgreSQL found (%v) and installing it failed: %w", err, installErr)
		}
		if bin, err = findPostgresBin(); err != nil {
			return nil, fmt.Errorf("harness: PostgreSQL installed but not found: %w", err)
		}
	}
	return startCluster(ctx, log, bin, opts.DataDir, 0)
}

// findPostgresBin returns the directory holding initdb and postgres, newest
// major version first.
func findPostgresBin() (string, error) {
	var dirs []string
	if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
		dirs = append(dirs, matches...)
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("no initdb and postgres binaries in /usr/lib/postgresql/*/bin or on PATH")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// aptInstallPostgres installs Debian's postgresql package. It never starts
// Debian's own cluster on our behalf: we start a private one afterwards.
func aptInstallPostgres(ctx context.Context, log *slog.Logger) error {
	return aptInstall(ctx, log, "postgresql")
}

// startCluster runs initdb (if needed) and a postmaster as our child process
// on a free loopback port. The postmaster is killed if we die, so a crashed
// test run leaves no server behind.
func startCluster(ctx context.Context, log *slog.Logger, bin, dataDir string, port int) (*Postgres, error) {
	own := dataDir == ""
	if own {
		d, err := os.MkdirTemp("", "mediator-pg-")
		if err != nil {
			return nil, fmt.Errorf("harness: postgres temp dir: %w", err)
		}
		dataDir = filepath.Join(d, "data")
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("harness: postgres data dir: %w", err)
	}
	if cred != nil {
		// initdb refuses to run as root, so the cluster belongs to postgres,
		// and its parent directories must be traversable by that user.
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("harness: chown %s: %w", dataDir, err)
		}
		if err := makeTraversable(dataDir); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		log.Info("postgres: initdb", "dir", dataDir)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("harness: initdb: %w: %s", err, tail(out, 2000))
		}
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	logFile, err := os.OpenFile(filepath.Join(dataDir, "postmaster.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("harness: postgres log: %w", err)
	}
	if cred != nil {
		_ = logFile.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dataDir,
		"-p", strconv.Itoa(port), "-k", dataDir, "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("harness: start postgres: %w", err)
	}
	logFile.Close()
	pg := &Postgres{
		AdminURL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		Source:   "initdb",
		cmd:      cmd,
		dataDir:  dataDir,
		ownData:  own,
		log:      log,
		exited:   make(chan struct{}),
		bin:      bin,
		port:     port,
	}
	exited := pg.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(ctx, pg.AdminURL); err == nil {
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dataDir, "postmaster.log"))
			return nil, fmt.Errorf("harness: postgres exited at start: %s", tail(b, 2000))
		case <-ctx.Done():
			pg.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			pg.Stop()
			return nil, fmt.Errorf("harness: postgres did not answer within %s", startTimeout)
		}
	}
	log.Info("postgres: started a private cluster", "port", port, "dir", dataDir)
	return pg, nil
}

// makeTraversable lets the postgres user reach dir through its parents
// (temp directories are created 0700 by root).
func makeTraversable(dir string) error {
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("harness: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("harness: make %s traversable for postgres: %w", d, err)
			}
		}
	}
	return nil
}

// postgresCredential returns the postgres user's credential when running as
// root, since PostgreSQL refuses to run as root; nil otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("harness: running as root needs a postgres user to own the cluster: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Restart stops a private cluster (fast shutdown, files kept), waits down,
// and starts it again on the same port and data, as an operator's restart
// or a crash-and-recovery of the database would look to its clients.
func (p *Postgres) Restart(ctx context.Context, down time.Duration) error {
	if p.cmd == nil {
		return errors.New("harness: Restart needs a cluster this harness started")
	}
	p.shutdown()
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	fresh, err := startCluster(ctx, p.log, p.bin, p.dataDir, p.port)
	if err != nil {
		return err
	}
	p.cmd, p.exited = fresh.cmd, fresh.exited
	return nil
}

// shutdown stops the postmaster and its backends, keeping the files.
func (p *Postgres) shutdown() {
	// SIGINT is PostgreSQL's fast shutdown: roll back open transactions,
	// checkpoint, exit. The process group takes the backends with it.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Stop stops a server that StartPostgres started, and removes its files if
// they were temporary. It does nothing for a server found running.
func (p *Postgres) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.shutdown()
	p.cmd = nil
	if p.ownData {
		_ = os.RemoveAll(filepath.Dir(p.dataDir))
	}
	p.log.Info("postgres: stopped the private cluster")
}

// CreateDatabase creates database name (if absent) and returns a URL for it
// with the same credentials as AdminURL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	url, _, err := p.EnsureDatabase(ctx, name)
	return url, err
}

// EnsureDatabase is CreateDatabase, and reports whether this call created
// the database (false when it was there already).
func (p *Postgres) EnsureDatabase(ctx context.Context, name string) (url string, created bool, err error) {
	conn, err := pgx.Connect(ctx, p.AdminURL)
	if err != nil {
		return "", false, fmt.Errorf("harness: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", false, fmt.Errorf("harness: look up database: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", false, fmt.Errorf("harness: create database %s: %w", name, err)
		}
	}
	url, err = p.DatabaseURL(name)
	return url, !exists, err
}

// DropDatabase drops database name, disconnecting anyone still on it.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.AdminURL)
	if err != nil {
		return fmt.Errorf("harness: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("harness: drop database %s: %w", name, err)
	}
	return nil
}

// DatabaseURL returns AdminURL pointed at database name.
func (p *Postgres) DatabaseURL(name string) (string, error) {
	u, err := url.Parse(p.AdminURL)
	if err != nil {
		return "", fmt.Errorf("harness: parse admin url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// freePort is FreeLoopbackPort.
func freePort() (int, error) { return FreeLoopbackPort() }

// Ports FreeLoopbackPort picks from: below Linux's ephemeral range
// (32768–60999 by default), from which the kernel takes the local port of
// every outgoing connection.
const (
	freePortLow  = 20000
	freePortHigh = 32768
)

// FreeLoopbackPort returns a loopback port nothing listens on, for a
// server started afterwards. A port the kernel picks for ":0" comes from
// the ephemeral range, where any outgoing connection (a test's clients,
// a database pool) may take it before the server binds it; one below
// that range can only be taken by another server.
func FreeLoopbackPort() (int, error) {
	for range 200 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("harness: no free loopback port in [%d, %d) after 200 tries", freePortLow, freePortHigh)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// StartStandby makes a streaming standby of a private cluster primary
// (pg_basebackup with its replication settings written) and starts it on a
// free loopback port. It replicates asynchronously: nothing names it in
// the primary's synchronous_standby_names. Tests use it to lose a tail.
func StartStandby(ctx context.Context, log *slog.Logger, primary *Postgres) (*Postgres, error) {
	if primary.cmd == nil {
		return nil, errors.New("harness: a standby needs a primary this harness started")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := os.MkdirTemp("", "mediator-pg-standby-")
	if err != nil {
		return nil, fmt.Errorf("harness: standby temp dir: %w", err)
	}
	dataDir := filepath.Join(d, "data")
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("harness: chown %s: %w", d, err)
		}
		if err := makeTraversable(d); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(primary.bin, "pg_basebackup"), "-D", dataDir, "-R", "-X", "stream", "--checkpoint=fast",
		"-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", primary.port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("harness: pg_basebackup: %w: %s", err, tail(out, 2000))
	}
	_ = os.Remove(filepath.Join(dataDir, "postmaster.log")) // the primary's
	s, err := startCluster(ctx, log, primary.bin, dataDir, 0)
	if err != nil {
		return nil, err
	}
	s.ownData = true
	return s, nil
}

// Port is the loopback port of a cluster this harness started.
func (p *Postgres) Port() int { return p.port }

// Kill loses the cluster at once: SIGKILL to its postmaster and every
// backend, as a power cut would. Its files stay; Up starts it again.
func (p *Postgres) Kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// Down stops the cluster (fast shutdown), keeping its files; Up starts it
// again on the same port.
func (p *Postgres) Down() { p.shutdown() }

// Up starts a cluster stopped by Down or Kill again.
func (p *Postgres) Up(ctx context.Context) error {
	fresh, err := startCluster(ctx, p.log, p.bin, p.dataDir, p.port)
	if err != nil {
		return err
	}
	p.cmd, p.exited = fresh.cmd, fresh.exited
	return nil
}

// Promote makes a standby a primary and waits until it accepts writes.
func (p *Postgres) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.AdminURL)
	if err != nil {
		return fmt.Errorf("harness: promote: %w", err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 30)").Scan(&ok); err != nil || !ok {
		return fmt.Errorf("harness: promote: %v (promoted: %v)", err, ok)
	}
	return nil
}
