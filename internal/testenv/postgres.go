package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Postgres is a throwaway PostgreSQL cluster (Debian's postgresql) that a
// test starts on 127.0.0.1: initdb on a temporary directory, a free port,
// trust authentication. As root, it runs as the postgres user, since
// PostgreSQL refuses to run as root.
type Postgres struct {
	URL  string // postgres://postgres@127.0.0.1:port/postgres?sslmode=disable
	Dir  string
	Addr string

	// Durable keeps fsync on (benchmarks); tests run without it.
	Durable bool

	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	logs *SyncBuffer
}

// PostgresBinDir finds the newest installed PostgreSQL's programs.
func PostgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// StartPostgres starts a cluster that the test's cleanup stops by its PID
// and removes. It skips the test only when PostgreSQL is not installed,
// and fails instead under `make test` (DMARC_EXPORTER_REQUIRE_POSTGRES=1),
// which installs it.
func StartPostgres(t testing.TB) *Postgres { return startPostgres(t, false) }

// StartPostgresDurable is StartPostgres with fsync on, as in production:
// for benchmarks.
func StartPostgresDurable(t testing.TB) *Postgres { return startPostgres(t, true) }

func startPostgres(t testing.TB, durable bool) *Postgres {
	t.Helper()
	bin := PostgresBinDir()
	if bin == "" {
		const msg = "PostgreSQL is not installed (Debian package postgresql; make deps installs it)"
		if os.Getenv("DMARC_EXPORTER_REQUIRE_POSTGRES") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Unix socket paths are short: the directory is made under /tmp.
	dir, err := os.MkdirTemp("/tmp", "pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Postgres{Dir: dir, bin: bin, Addr: FreeAddr(t), logs: &SyncBuffer{}, Durable: durable}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	initdb := p.command("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "--no-sync",
		"-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.URL = fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.Addr)
	p.Start(t)
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("postgres log:\n%s", p.logs)
		}
	})
	return p
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// Start starts the server (again, after Stop) and waits until it takes
// connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.Addr)
	fsync := "off"
	if p.Durable {
		fsync = "on"
	}
	p.cmd = p.command("postgres", "-D", filepath.Join(p.Dir, "data"), "-p", port, "-k", p.Dir,
		"-c", "listen_addresses="+host, "-c", "fsync="+fsync, "-c", "max_connections=100")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ready := p.command("pg_isready", "-h", host, "-p", port, "-U", "postgres")
		if ready.Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not start:\n%s", p.logs)
		}
	}
}

// Stop shuts the server down fast (SIGINT: running transactions are
// rolled back) by its PID and waits for it.
func (p *Postgres) Stop(t testing.TB) {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}
