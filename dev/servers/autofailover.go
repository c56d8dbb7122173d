package servers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Formation is a pg_auto_failover formation on loopback ports: a monitor
// and two PostgreSQL nodes, the first primary and the second its
// synchronous standby (pg_autoctl sets synchronous_standby_names to
// 'ANY 1 (…)' on the primary). It is the high-availability topology
// docs/operations.md describes, with the failure detection shortened from
// the defaults (20–30 s) to a few seconds so that a test sees a failover
// in seconds. Every process runs as our child in its own process group,
// so Kill loses a node the way a machine loss would: its keeper and its
// postmaster at once.
type Formation struct {
	// Nodes are the data nodes, in the order they were created.
	Nodes []*FormationNode

	bin     string
	dir     string
	monitor *FormationNode
	env     []string
	cred    *syscall.Credential
	log     *slog.Logger
}

// FormationNode is one pg_autoctl process (a keeper and its postmaster).
type FormationNode struct {
	Name string
	Port int

	f       *Formation
	pgdata  string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// autoFailoverPackage is Debian's pg_auto_failover for the installed
// PostgreSQL major version (postgresql-15-auto-failover on bookworm).
func autoFailoverPackage(bin string) string {
	return fmt.Sprintf("postgresql-%d-auto-failover", pgMajor(bin))
}

// monitorTimings shorten the monitor's failure detection for tests. The
// defaults: a health check every 5 s, a node unhealthy after 20 s, a
// primary given 30 s to demote itself.
var monitorTimings = map[string]string{
	"pgautofailover.health_check_period":               "1000",
	"pgautofailover.health_check_timeout":              "1000",
	"pgautofailover.health_check_max_retries":          "1",
	"pgautofailover.health_check_retry_delay":          "500",
	"pgautofailover.node_considered_unhealthy_timeout": "2000",
	"pgautofailover.primary_demote_timeout":            "3000",
	"pgautofailover.startup_grace_period":              "2000",
}

// StartFormation installs pg_auto_failover from Debian's packages when it
// is missing (as root), then creates and starts a monitor and two nodes
// in a temporary directory. It needs the installed PostgreSQL server
// binaries; it never uses a server found running.
func StartFormation(ctx context.Context, log *slog.Logger) (*Formation, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := findPostgresBin()
	if err != nil {
		if installErr := aptInstallPostgres(ctx, log); installErr != nil {
			return nil, fmt.Errorf("formation: no PostgreSQL found (%v) and installing it failed: %w", err, installErr)
		}
		if bin, err = findPostgresBin(); err != nil {
			return nil, fmt.Errorf("formation: %w", err)
		}
	}
	if _, err := exec.LookPath("pg_autoctl"); err != nil {
		if installErr := aptInstall(ctx, log, autoFailoverPackage(bin)); installErr != nil {
			return nil, fmt.Errorf("formation: pg_autoctl not found and installing %s failed: %w", autoFailoverPackage(bin), installErr)
		}
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mediator-formation-")
	if err != nil {
		return nil, fmt.Errorf("formation: temp dir: %w", err)
	}
	f := &Formation{bin: bin, dir: dir, cred: cred, log: log}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("formation: chown %s: %w", dir, err)
		}
		if err := makeTraversable(dir); err != nil {
			return nil, err
		}
	}
	// pg_autoctl keeps its own state under XDG directories: keep them in
	// the formation's directory, not in the postgres user's home.
	f.env = []string{
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg", "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "xdg", "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg", "run"),
		"HOME=" + dir,
		"LANG=C.UTF-8",
	}
	if err := f.start(ctx); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

func (f *Formation) start(ctx context.Context) error {
	monPort, err := freePort()
	if err != nil {
		return err
	}
	f.monitor = &FormationNode{Name: "monitor", Port: monPort, f: f, pgdata: filepath.Join(f.dir, "monitor")}
	if err := f.autoctl(ctx, "create", "monitor", "--pgdata", f.monitor.pgdata, "--pgport", strconv.Itoa(monPort),
		"--pgctl", filepath.Join(f.bin, "pg_ctl"), "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl"); err != nil {
		return err
	}
	conf := "\n# mediator test formation: detect a lost node in seconds\n"
	for k, v := range monitorTimings {
		conf += k + " = " + v + "\n"
	}
	if err := appendFile(filepath.Join(f.monitor.pgdata, "postgresql.conf"), conf); err != nil {
		return err
	}
	if err := f.monitor.Start(ctx); err != nil {
		return err
	}
	if err := waitPing(ctx, fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", monPort), f.monitor); err != nil {
		return fmt.Errorf("formation: monitor: %w", err)
	}
	monitorURL := fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", monPort)
	for i := 1; i <= 2; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		n := &FormationNode{Name: fmt.Sprintf("node%d", i), Port: port, f: f, pgdata: filepath.Join(f.dir, fmt.Sprintf("node%d", i))}
		if err := f.autoctl(ctx, "create", "postgres", "--pgdata", n.pgdata, "--pgport", strconv.Itoa(port),
			"--pgctl", filepath.Join(f.bin, "pg_ctl"), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
			"--name", n.Name, "--auth", "trust", "--no-ssl", "--monitor", monitorURL); err != nil {
			return err
		}
		// A keeper that loses the monitor and its standby demotes its
		// primary after this long (default 20 s).
		if err := f.autoctl(ctx, "config", "set", "--pgdata", n.pgdata, "timeout.network_partition_timeout", "3"); err != nil {
			return err
		}
		if err := n.Start(ctx); err != nil {
			return err
		}
		f.Nodes = append(f.Nodes, n)
		if _, err := f.WaitSettled(ctx, time.Minute); err != nil {
			return err
		}
	}
	f.log.Info("formation: monitor and two nodes started", "monitor", monPort, "node1", f.Nodes[0].Port, "node2", f.Nodes[1].Port)
	return nil
}

// autoctl runs one pg_autoctl command to its end as the postgres user.
func (f *Formation) autoctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "pg_autoctl", args...)
	cmd.Env = f.env
	cmd.Dir = f.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: f.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("formation: pg_autoctl %s: %w: %s", strings.Join(args[:2], " "), err, tail(out, 2000))
	}
	return nil
}

// Start runs the node's keeper (`pg_autoctl run`), which starts its
// postmaster; a node killed before rejoins the formation as a standby.
func (n *FormationNode) Start(ctx context.Context) error {
	n.logPath = filepath.Join(n.f.dir, n.Name+".log")
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("formation: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command("pg_autoctl", "run", "--pgdata", n.pgdata)
	cmd.Env = n.f.env
	cmd.Dir = n.f.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.f.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("formation: start %s: %w", n.Name, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	exited := n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	return nil
}

// Kill loses the node at once: SIGKILL to its keeper, its postmaster and
// every backend (one process group), as a power cut would.
func (n *FormationNode) Kill() {
	if n.cmd == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// KillPostgres SIGKILLs the node's postmaster alone (a PostgreSQL crash):
// its keeper stays and starts PostgreSQL again.
func (n *FormationNode) KillPostgres() error {
	b, err := os.ReadFile(filepath.Join(n.pgdata, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("formation: %s: %w", n.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("formation: %s: postmaster.pid: %w", n.Name, err)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// stop shuts the node down cleanly: the keeper stops its postmaster.
func (n *FormationNode) stop() {
	if n.cmd == nil {
		return
	}
	_ = syscall.Kill(n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	// A keeper killed hard leaves its postmaster; make sure it is gone.
	_ = exec.Command(filepath.Join(n.f.bin, "pg_ctl"), "-D", n.pgdata, "stop", "-m", "immediate").Run()
	n.cmd = nil
}

// Log returns the tail of the node's keeper log, for a failing test.
func (n *FormationNode) Log() string {
	b, _ := os.ReadFile(n.logPath)
	return tail(b, 4000)
}

// URL returns a superuser URL for database name on this node alone.
func (n *FormationNode) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", n.Port, name)
}

// URL returns the multi-host URL a mediator uses for database name: both
// nodes, with target_session_attrs (read-write for the writer,
// prefer-standby for readers) and a short connect timeout.
func (f *Formation) URL(name, targetSessionAttrs string) string {
	hosts := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", n.Port)
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=2&target_session_attrs=%s",
		strings.Join(hosts, ","), name, targetSessionAttrs)
}

// CreateDatabase creates database name on the primary; replication
// carries it to the standby.
func (f *Formation) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, f.URL("postgres", "read-write"))
	if err != nil {
		return fmt.Errorf("formation: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("formation: create database: %w", err)
	}
	return nil
}

// WaitSettled waits until every running node is in the state the monitor
// assigned it and one of them is a primary that accepts writes, and
// returns that primary. With both nodes up, that is a primary and a
// secondary streaming synchronously; with one, a primary alone
// (wait_primary, or single).
func (f *Formation) WaitSettled(ctx context.Context, within time.Duration) (*FormationNode, error) {
	deadline := time.Now().Add(within)
	var last string
	for {
		p, state, err := f.settled(ctx)
		if err == nil && p != nil {
			return p, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = state
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("formation: not settled within %s: %s", within, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// settled asks the monitor for the nodes' reported and assigned states.
func (f *Formation) settled(ctx context.Context) (*FormationNode, string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pg_auto_failover?sslmode=disable", f.monitor.Port))
	if err != nil {
		return nil, "", err
	}
	defer conn.Close(cctx)
	rows, err := conn.Query(cctx, "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node ORDER BY nodeid")
	if err != nil {
		return nil, "", err
	}
	type state struct{ name, reported, goal string }
	states, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state, error) {
		var s state
		return s, r.Scan(&s.name, &s.reported, &s.goal)
	})
	if err != nil {
		return nil, "", err
	}
	var primary *FormationNode
	var desc []string
	running, secondaries, primaryGoal := 0, 0, ""
	for _, s := range states {
		desc = append(desc, s.name+" "+s.reported+"/"+s.goal)
		n := f.node(s.name)
		if n == nil || n.cmd == nil {
			continue // lost: the monitor still lists it
		}
		running++
		if s.reported != s.goal {
			return nil, strings.Join(desc, ", "), nil
		}
		switch s.goal {
		case "primary", "wait_primary", "single":
			primary, primaryGoal = n, s.goal
		case "secondary":
			secondaries++
		}
	}
	// Two running nodes are settled as a primary and a synchronous
	// secondary; one alone as a primary without a standby.
	if primary == nil || secondaries != running-1 || (running > 1 && primaryGoal != "primary") {
		return nil, strings.Join(desc, ", "), nil
	}
	var readOnly bool
	if err := queryOne(cctx, primary.URL("postgres"), "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only')::bool", &readOnly); err != nil || readOnly {
		return nil, strings.Join(desc, ", ") + " (primary not writable yet)", nil
	}
	return primary, strings.Join(desc, ", "), nil
}

func (f *Formation) node(name string) *FormationNode {
	for _, n := range f.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Stop stops every node and the monitor and removes the formation's files.
func (f *Formation) Stop() {
	for _, n := range f.Nodes {
		n.stop()
	}
	if f.monitor != nil {
		f.monitor.stop()
	}
	_ = os.RemoveAll(f.dir)
	f.log.Info("formation: stopped")
}

func queryOne(ctx context.Context, url, sql string, dst any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dst)
}

// waitPing waits for url to answer while n runs.
func waitPing(ctx context.Context, url string, n *FormationNode) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("%s exited: %s", n.Name, n.Log())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %s: %v", startTimeout, err)
		}
	}
}

func appendFile(path, s string) error {
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("formation: %w", err)
	}
	_, err = fh.WriteString(s)
	return errors.Join(err, fh.Close())
}
