package source

import (
	"bytes"
	"strings"
	"testing"
)

type mboxMsg struct {
	offset int64
	text   string
	tooBig bool
}

func readMbox(t testing.TB, in string, max int) []mboxMsg {
	var out []mboxMsg
	if err := mboxMessages(strings.NewReader(in), max, func(offset int64, msg []byte, tooBig bool) error {
		out = append(out, mboxMsg{offset, string(msg), tooBig})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMboxMessages(t *testing.T) {
	in := "From a@example.com Mon Jan  1 00:00:00 2024\n" +
		"Subject: one\n\nbody\n>From the past\n>>From deeper\nFrom unescaped, not after an empty line\n\n" +
		"From b@example.com Mon Jan  1 00:00:01 2024\r\n" +
		"Subject: two\r\n\r\nline\r\n\r\n" +
		"From c@example.com Mon Jan  1 00:00:02 2024\n" +
		"Subject: three\n\n" + strings.Repeat("x", 200) + "\n\n" +
		"From d@example.com Mon Jan  1 00:00:03 2024\n" +
		"Subject: four, last, no final newline"
	got := readMbox(t, in, 150)
	want := []mboxMsg{
		{0, "Subject: one\n\nbody\nFrom the past\n>From deeper\nFrom unescaped, not after an empty line\n", false},
		{int64(strings.Index(in, "From b@")), "Subject: two\r\n\r\nline\r\n", false},
		{int64(strings.Index(in, "From c@")), "", true},
		{int64(strings.Index(in, "From d@")), "Subject: four, last, no final newline", false},
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// Not an mbox, and an empty stream: no message.
	if got := readMbox(t, "Subject: a mail\n\nbody\n", 80); len(got) != 0 {
		t.Errorf("a mail read as an mbox: %+v", got)
	}
}

func TestMaildirKey(t *testing.T) {
	for in, want := range map[string]string{
		"cur/1700000000.M1P1.host:2,S":           "maildir:1700000000.M1P1.host",
		"new/1700000000.M1P1.host":               "maildir:1700000000.M1P1.host",
		".Reports/cur/1700000001.M2P1.host:2,RS": ".Reports/maildir:1700000001.M2P1.host",
		"reports/google.com!example.com!1!2.xml": "reports/google.com!example.com!1!2.xml",
		"Takeout/Mail/All mail.mbox":             "Takeout/Mail/All mail.mbox",
	} {
		if got := maildirKey(in); got != want {
			t.Errorf("maildirKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzMbox: any stream reads without a panic, in increasing offsets,
// with no message over the limit.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a Mon Jan  1 00:00:00 2024\nSubject: x\n\n>From y\n\nFrom b\n\n"))
	f.Add([]byte("From \n\n\nFrom \r\n>From \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		last := int64(-1)
		err := mboxMessages(bytes.NewReader(data), 64, func(offset int64, msg []byte, tooBig bool) error {
			if offset <= last || offset >= int64(len(data)) {
				t.Fatalf("offset %d after %d in %d bytes", offset, last, len(data))
			}
			if len(msg) > 64 || tooBig && len(msg) > 0 {
				t.Fatalf("message of %d bytes, tooBig %v", len(msg), tooBig)
			}
			if !bytes.HasPrefix(data[offset:], []byte("From ")) {
				t.Fatalf("offset %d is no From line", offset)
			}
			last = offset
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestMboxLongLine: a line longer than a message may be makes its message
// too big, in bounded memory, and the next message reads.
func TestMboxLongLine(t *testing.T) {
	in := "From a Mon Jan  1 00:00:00 2024\nSubject: x\n\n" + strings.Repeat("y", 1<<20) + "\n\nFrom b Mon Jan  1 00:00:00 2024\nSubject: z\n"
	got := readMbox(t, in, 1000)
	if len(got) != 2 || !got[0].tooBig || got[1].text != "Subject: z\n" || got[1].offset != int64(strings.Index(in, "From b")) {
		t.Errorf("got %+v", got)
	}
}
