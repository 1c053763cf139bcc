package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Dovecot is a real Dovecot IMAP server (Debian's dovecot-imapd) run by a
// test on 127.0.0.1 with a throwaway configuration: a plain+STARTTLS port
// and an implicit TLS port with a generated certificate, password users
// from a passwd-file and, when IntrospectionURL is set, XOAUTH2 and
// OAUTHBEARER checked against that URL (an RFC 7662 endpoint the test
// serves). See ../shared/notes/dovecot-for-tests.md for why each setting
// is there.
type Dovecot struct {
	Dir       string // configuration, logs and mail
	IMAPAddr  string // plain and STARTTLS
	IMAPSAddr string // implicit TLS
	CAFile    string // the self-signed certificate, to trust
	Log       string // the log file

	bin  string
	cmd  *exec.Cmd
	opts DovecotOptions
}

// DovecotOptions configure a Dovecot.
type DovecotOptions struct {
	// Users maps user names to passwords.
	Users map[string]string
	// IntrospectionURL, when set, enables XOAUTH2 and OAUTHBEARER: tokens
	// are POSTed there and must come back active with email = the user.
	IntrospectionURL string
	// Capability, when set, is the capability list announced after login
	// (Dovecot's imap_capability): without IDLE, MOVE or UIDPLUS, clients
	// must do without them.
	Capability string
	// Extra is appended to the generated configuration.
	Extra string
}

// DovecotBinary finds the dovecot binary, which is in /usr/sbin (often not
// in PATH); "" when it is not installed.
func DovecotBinary() string {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// StartDovecot starts a Dovecot that the test's cleanup stops. It skips
// the test only when Dovecot is not installed at all, and fails instead
// under `make test` (DMARC_EXPORTER_REQUIRE_DOVECOT=1), which installs it:
// CI never passes with these tests skipped.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	bin := DovecotBinary()
	if bin == "" {
		const msg = "dovecot is not installed (Debian package dovecot-imapd; make deps installs it)"
		if os.Getenv("DMARC_EXPORTER_REQUIRE_DOVECOT") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Unix socket paths are limited to 108 bytes: t.TempDir() can be too
	// long, so the directory is made directly under /tmp.
	dir, err := os.MkdirTemp("/tmp", "dc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Dovecot{Dir: dir, bin: bin, opts: opts, Log: filepath.Join(dir, "dovecot.log"),
		IMAPAddr: FreeAddr(t), IMAPSAddr: FreeAddr(t), CAFile: filepath.Join(dir, "cert.pem")}
	if err := d.configure(); err != nil {
		t.Fatal(err)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

func (d *Dovecot) configure() error {
	if err := os.Chmod(d.Dir, 0o711); err != nil {
		return err
	}
	if err := writeCert(d.Dir); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(d.Dir, "run"), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(d.Dir, "home"), 0o755); err != nil {
		return err
	}
	mailUID, mailGID, err := d.mailOwner()
	if err != nil {
		return err
	}
	for u := range d.opts.Users {
		home := filepath.Join(d.Dir, "home", u)
		if err := os.Mkdir(home, 0o700); err != nil {
			return err
		}
		if err := os.Chown(home, mailUID, mailGID); err != nil {
			return err
		}
	}
	if err := d.writeUsers(d.opts.Users); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Dir, "dovecot.conf"), []byte(d.config(mailUID, mailGID)), 0o644)
}

// mailOwner is the uid and gid that mail files belong to: nobody when run
// as root (Dovecot refuses root mail access), else the current user.
func (d *Dovecot) mailOwner() (int, int, error) {
	if os.Getuid() != 0 {
		return os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// writeUsers writes the passwd-file.
func (d *Dovecot) writeUsers(users map[string]string) error {
	var b strings.Builder
	for u, pw := range users {
		fmt.Fprintf(&b, "%s:{PLAIN}%s:::%s:%s::\n", u, pw, u, filepath.Join(d.Dir, "home", u))
	}
	return os.WriteFile(filepath.Join(d.Dir, "users"), []byte(b.String()), 0o644)
}

func (d *Dovecot) config(mailUID, mailGID int) string {
	_, imapPort, _ := net.SplitHostPort(d.IMAPAddr)
	_, imapsPort, _ := net.SplitHostPort(d.IMAPSAddr)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("instance_name = dovecot-test-%s", filepath.Base(d.Dir))
	w("base_dir = %s/run", d.Dir)
	w("state_dir = %s/state", d.Dir)
	w("log_path = %s", d.Log)
	w("info_log_path = %s", d.Log)
	w("protocols = imap")
	w("listen = 127.0.0.1")
	w("ssl = yes")
	w("ssl_cert = <%s/cert.pem", d.Dir)
	w("ssl_key = <%s/key.pem", d.Dir)
	w("ssl_min_protocol = TLSv1.2")
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil {
		w("ssl_dh = </usr/share/dovecot/dh.pem")
	}
	w("auth_mechanisms = plain login xoauth2 oauthbearer")
	w("auth_failure_delay = 0")
	w("auth_cache_size = 0")
	w("passdb {\n driver = passwd-file\n mechanisms = plain login\n args = scheme=PLAIN username_format=%%u %s/users\n}", d.Dir)
	if d.opts.IntrospectionURL != "" {
		conf := strings.Join([]string{
			"introspection_mode = post",
			"introspection_url = " + d.opts.IntrospectionURL,
			"username_attribute = email",
			"active_attribute = active",
			"active_value = true",
			"timeout_msecs = 5000",
		}, "\n") + "\n"
		os.WriteFile(filepath.Join(d.Dir, "oauth2.conf.ext"), []byte(conf), 0o644)
		w("passdb {\n driver = oauth2\n mechanisms = xoauth2 oauthbearer\n args = %s/oauth2.conf.ext\n}", d.Dir)
	}
	w("userdb {\n driver = passwd-file\n args = username_format=%%u %s/users\n}", d.Dir)
	w("mail_location = maildir:~/Maildir")
	w("mail_uid = %d\nmail_gid = %d", mailUID, mailGID)
	w("first_valid_uid = %d\nlast_valid_uid = 0\nfirst_valid_gid = %d\nlast_valid_gid = 0", mailUID, mailGID)
	// The default Maildir++ separator ".": clients must read it, not
	// assume "/".
	w("namespace inbox {\n inbox = yes\n}")
	w("service imap-login {\n inet_listener imap {\n  address = 127.0.0.1\n  port = %s\n }\n inet_listener imaps {\n  address = 127.0.0.1\n  port = %s\n  ssl = yes\n }\n}", imapPort, imapsPort)
	// No auth penalty: without this socket, a failed login does not delay
	// the next ones by up to 15 s.
	w("service anvil {\n unix_listener anvil-auth-penalty {\n  mode = 0\n }\n}")
	w("service auth-worker {\n user = $default_internal_user\n}")
	if d.opts.Capability != "" {
		w("protocol imap {\n mail_max_userip_connections = 100\n imap_capability = %s\n}", d.opts.Capability)
	} else {
		w("protocol imap {\n mail_max_userip_connections = 100\n}")
	}
	b.WriteString(d.opts.Extra)
	if os.Getuid() == 0 {
		w("default_internal_user = root\ndefault_login_user = dovenull")
	} else {
		u, _ := user.Current()
		g, _ := user.LookupGroupId(strconv.Itoa(os.Getgid()))
		group := strconv.Itoa(os.Getgid())
		if g != nil {
			group = g.Name
		}
		w("default_internal_user = %s\ndefault_internal_group = %s\ndefault_login_user = %s", u.Username, group, u.Username)
		w("service imap-login {\n chroot =\n}\nservice anvil {\n chroot =\n}")
	}
	return b.String()
}

// start runs the master in the foreground, in a process group of its own,
// and waits until both ports greet.
func (d *Dovecot) start() error {
	cmd := exec.Command(d.bin, "-F", "-c", filepath.Join(d.Dir, "dovecot.conf"))
	// Its own process group, so that Stop finds every process; killed with
	// the test binary should that die without cleaning up (a timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.OpenFile(filepath.Join(d.Dir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	out.Close()
	d.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for _, addr := range []string{d.IMAPAddr, d.IMAPSAddr} {
		for deadline := time.Now().Add(10 * time.Second); ; {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				d.Stop()
				return fmt.Errorf("dovecot exited at start: %s", d.logs())
			default:
			}
			if time.Now().After(deadline) {
				d.Stop()
				return fmt.Errorf("dovecot did not listen on %s: %s", addr, d.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (d *Dovecot) logs() string {
	a, _ := os.ReadFile(filepath.Join(d.Dir, "stderr.log"))
	b, _ := os.ReadFile(d.Log)
	return string(a) + string(b)
}

// Logs returns what Dovecot logged so far.
func (d *Dovecot) Logs() string { return d.logs() }

// Restart stops Dovecot, gracefully (clients get BYE) or with SIGKILL
// (connections simply drop), and starts it again on the same ports.
func (d *Dovecot) Restart(t testing.TB, kill bool) {
	t.Helper()
	if kill {
		d.signalAll(syscall.SIGKILL)
	} else {
		d.Stop()
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
}

// Stop stops every process of the server. Dovecot's master leaves its
// children running when it exits, so the whole process group is signalled,
// in the order that lets clients see BYE: imap, the master, the remaining
// services, log last; any process left after 3 s is killed.
func (d *Dovecot) Stop() {
	if d.cmd == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	for _, pass := range []func(name string, pid int) bool{
		func(name string, _ int) bool { return name == "imap" },
		func(_ string, pid int) bool { return pid == pgid },
		func(name string, _ int) bool { return name != "log" },
		func(string, int) bool { return true },
	} {
		var pids []int
		for pid, name := range groupMembers(pgid) {
			if pass(name, pid) {
				syscall.Kill(pid, syscall.SIGTERM)
				pids = append(pids, pid)
			}
		}
		for deadline := time.Now().Add(3 * time.Second); len(pids) > 0; time.Sleep(20 * time.Millisecond) {
			alive := pids[:0]
			for _, pid := range pids {
				if _, ok := groupMembers(pgid)[pid]; ok {
					alive = append(alive, pid)
				}
			}
			pids = alive
			if time.Now().After(deadline) {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				deadline = time.Now().Add(time.Hour)
			}
		}
	}
	d.cmd = nil
}

// signalAll sends sig to every process of the group at once.
func (d *Dovecot) signalAll(sig syscall.Signal) {
	if d.cmd == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	syscall.Kill(-pgid, sig)
	for deadline := time.Now().Add(5 * time.Second); len(groupMembers(pgid)) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	d.cmd = nil
}

// groupMembers lists the live (not zombie) processes of a process group by
// pid, with their command names.
func groupMembers(pgid int) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			out[pid] = s[open+1 : close]
		}
	}
	return out
}

// writeCert writes a self-signed EC P-256 certificate for localhost and
// 127.0.0.1 (cert.pem, also the CA to trust) and its key (key.pem).
func writeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// AppendFile stores the file at path in mailbox of user, as a delivery
// would.
func (d *Dovecot) AppendFile(t testing.TB, user, password, mailbox, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := d.login(t, user, password)
	defer c.Close()
	cmd := c.Append(mailbox, int64(len(data)), nil)
	cmd.Write(data)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append %s: %v", path, err)
	}
}

// Count is the number of messages in a mailbox of user.
func (d *Dovecot) Count(t testing.TB, user, password, mailbox string) int {
	t.Helper()
	c := d.login(t, user, password)
	defer c.Close()
	st, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0 // no such mailbox yet
	}
	return int(*st.NumMessages)
}

// login connects to the plain port as user.
func (d *Dovecot) login(t testing.TB, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(d.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}
