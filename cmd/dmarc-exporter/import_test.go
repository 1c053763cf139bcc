package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeMbox writes the files of dirs as the messages of an mbox, as mail
// programs do (mboxrd: body lines starting with "From " escaped).
func writeMbox(t *testing.T, path string, dirs ...string) int {
	t.Helper()
	var b bytes.Buffer
	n := 0
	escape := regexp.MustCompile(`(?m)^(>*From )`)
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data = escape.ReplaceAll(data, []byte(">$1"))
			if !bytes.HasSuffix(data, []byte("\n")) {
				data = append(data, '\n')
			}
			fmt.Fprintf(&b, "From MAILER-DAEMON Thu Jan  1 00:00:%02d 2026\n%s\n", n%60, data)
			n++
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// writeMaildir copies the files of dirs into a Maildir, half in new/ and
// half in cur/ with flags.
func writeMaildir(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(root, sub), 0o755)
	}
	n := 0
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(root, "new", fmt.Sprintf("17000000%02d.M%dP1.host", n, n))
			if n%2 == 1 {
				name = filepath.Join(root, "cur", fmt.Sprintf("17000000%02d.M%dP1.host:2,S", n, n))
			}
			if err := os.WriteFile(name, data, 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
}

// treeHash hashes every file below root, to tell that nothing changed.
func treeHash(t *testing.T, root string) string {
	h := sha256.New()
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %v\n", p, e.IsDir())
		if e.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			h.Write(data)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// countsOf renders the report counters an exporter serves, summed over
// the source label (the import and the directory source differ there).
func countsOf(t *testing.T, e *exporter) string {
	lines := strings.Split(exposition(e.families(), true), "\n")
	sums := map[string]float64{}
	sourceLabel := regexp.MustCompile(`,?source="[^"]*"`)
	for _, l := range lines {
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		var v float64
		fmt.Sscan(l[i+1:], &v)
		sums[sourceLabel.ReplaceAllString(l[:i], "")] += v
	}
	var out []string
	for k, v := range sums {
		out = append(out, fmt.Sprintf("%s %g", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestImport: `import` of the corpus mails as an mbox, a Maildir and a
// zip of the mbox counts exactly what the directory source counts of the
// same mails, changes none of them, and reads nothing twice.
func TestImport(t *testing.T) {
	mails := filepath.Join(testdata, "corpus", "email")
	dir := t.TempDir()
	e := startExporter(t, "--source.dir="+mails, "--storage.path="+filepath.Join(dir, "direct"), "--metrics.new-series-delay=0s")
	e.waitScans(1, mails)
	want := countsOf(t, e)
	e.stop()
	if strings.Count(want, "dmarc_messages_total{") < 10 {
		t.Fatalf("the directory source counted nothing:\n%s", want)
	}

	mbox := filepath.Join(dir, "corpus.mbox")
	n := writeMbox(t, mbox, mails)
	maildir := filepath.Join(dir, "Maildir")
	writeMaildir(t, maildir, mails)
	zipped := filepath.Join(dir, "takeout.zip")
	{
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.Create("Takeout/Mail/All mail Including Spam and Trash.mbox")
		data, _ := os.ReadFile(mbox)
		w.Write(data)
		zw.Close()
		os.WriteFile(zipped, b.Bytes(), 0o644)
	}
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)

	// As configured sources of a running exporter.
	t.Run("sources", func(t *testing.T) {
		cfg := filepath.Join(dir, "mailboxes.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("mbox:\n  - name: takeout\n    path: %q\nmaildir:\n  - name: delivered\n    path: %q\n", mbox, maildir)), 0o644)
		e := startExporter(t, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "sources"), "--metrics.new-series-delay=0s")
		e.waitScans(1, "takeout", "delivered")
		// The same mails twice: the second copy of each report is a duplicate.
		if got := e.metric("dmarc_source_pass_read_bytes", "source", "takeout"); got == 0 {
			t.Error("dmarc_source_pass_read_bytes is 0 after a pass")
		}
		messages := func(counts string) string {
			var out []string
			for _, l := range strings.Split(counts, "\n") {
				if strings.HasPrefix(l, "dmarc_messages_total{") {
					out = append(out, l)
				}
			}
			return strings.Join(out, "\n")
		}
		if got := messages(countsOf(t, e)); got != messages(want) {
			t.Errorf("two mailbox sources of the same mails count messages differently from the directory source:\n%s", lineDiff(messages(want), got))
		}
		e.stop()
	})

	// A mailbox reached through a symbolic link is read where it leads.
	linked := filepath.Join(dir, "linked-Maildir")
	if err := os.Symlink(maildir, linked); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{mbox, maildir, zipped, linked} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			before := treeHash(t, path)
			storage := filepath.Join(dir, "import-"+filepath.Base(path))
			var out, errOut bytes.Buffer
			if status := run([]string{"--dns.resolver=127.0.0.1:1", "import", "--storage.path=" + storage, "--progress=log", path}, &out, &errOut); status != 0 {
				t.Fatalf("import: status %d\n%s", status, errOut.String())
			}
			logs := errOut.String()
			if !strings.Contains(logs, "msg=\"import progress\"") || !regexp.MustCompile(fmt.Sprintf(`msg="mailbox read" .*inputs=%d `, n)).MatchString(logs) {
				t.Errorf("import log lacks its progress, or did not read %d messages:\n%s", n, logs)
			}
			if after := treeHash(t, path); after != before {
				t.Error("import changed what it read")
			}
			// Again: nothing is read twice.
			errOut.Reset()
			if status := run([]string{"--dns.resolver=127.0.0.1:1", "import", "--storage.path=" + storage, "--progress=none", path}, &out, &errOut); status != 0 ||
				!strings.Contains(errOut.String(), "mailbox unchanged since its last complete pass") {
				t.Errorf("a second import read again (status %d):\n%s", status, errOut.String())
			}
			// Touched, it is read again, and every message is known.
			touched := path
			if st, _ := os.Stat(path); st.IsDir() {
				files, _ := filepath.Glob(filepath.Join(path, "cur", "*"))
				touched = files[0]
			}
			later := time.Now().Add(time.Hour)
			os.Chtimes(touched, later, later)
			errOut.Reset()
			if status := run([]string{"--dns.resolver=127.0.0.1:1", "import", "--storage.path=" + storage, "--progress=none", path}, &out, &errOut); status != 0 ||
				!regexp.MustCompile(fmt.Sprintf(`inputs=0 refused=0 already_read=%d `, n)).MatchString(errOut.String()) {
				t.Errorf("an import of the touched mailbox read messages again (status %d):\n%s", status, errOut.String())
			}
			e := startExporter(t, "--source.dir="+empty, "--storage.path="+storage, "--metrics.new-series-delay=0s")
			if got := countsOf(t, e); got != want {
				t.Errorf("the import counts differently from the directory source:\n%s", lineDiff(want, got))
			}
			e.stop()
		})
	}
}
