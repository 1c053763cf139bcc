package enrich

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestBuiltinSenders: the shipped list loads, covers at least 150
// senders of every type, and each domain is a registrable domain that a
// host name reduces to, listed once.
func TestBuiltinSenders(t *testing.T) {
	s, err := LoadSenders("")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() < 150 {
		t.Errorf("%d senders, want at least 150", s.Len())
	}
	var f struct {
		Senders []Sender `yaml:"senders"`
	}
	if err := yaml.Unmarshal(builtinSenders, &f); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	domains := map[string]string{}
	for _, snd := range f.Senders {
		types[snd.Type]++
		for _, d := range snd.Domains {
			if prev, dup := domains[d]; dup {
				t.Errorf("%s listed for %s and %s", d, prev, snd.Name)
			}
			domains[d] = snd.Name
			if got := RegistrableDomain("mail1.out." + d); got != d {
				t.Errorf("%s (%s): a host under it reduces to %q", d, snd.Name, got)
			}
		}
	}
	for _, typ := range senderTypes {
		if types[typ] == 0 {
			t.Errorf("no sender of type %s", typ)
		}
	}
	for host, want := range map[string]string{
		"mail-wr1-f65.google.com":                             "google",
		"mail-db8eur05on2061.outbound.protection.outlook.com": "microsoft",
		"o1.ptr1234.sendgrid.net":                             "sendgrid",
		"a8-31.smtp-out.amazonses.com":                        "amazon-ses",
	} {
		if snd := s.ByDomain(RegistrableDomain(host)); snd == nil || snd.Name != want {
			t.Errorf("%s: %v, want %s", host, snd, want)
		}
	}
	if snd := s.ByASN(15169); snd == nil || snd.Name != "google" {
		t.Errorf("AS15169: %v", snd)
	}
}

// TestUserSenders: a user's file adds senders and overrides built-in ones;
// a bad one is refused with its name and the reason.
func TestUserSenders(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	os.WriteFile(good, []byte("senders:\n  - {name: our-crm, type: crm_helpdesk, domains: [crm.example.net], asns: [64500]}\n  - {name: sendgrid, type: esp, domains: [sendgrid.net]}\n"), 0o644)
	s, err := LoadSenders(good)
	if err != nil {
		t.Fatal(err)
	}
	if snd := s.ByASN(64500); snd == nil || snd.Name != "our-crm" {
		t.Errorf("AS64500: %v", snd)
	}
	if snd := s.ByDomain("sendgrid.net"); snd.Type != TypeESP {
		t.Errorf("sendgrid not overridden: %v", snd)
	}
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("senders:\n  - {name: x, type: spammer, domains: [x.example]}\n"), 0o644)
	if _, err := LoadSenders(bad); err == nil || !strings.Contains(err.Error(), `type "spammer" is not one of`) {
		t.Errorf("bad type: %v", err)
	}
}
