package enrich

import (
	"strings"
	"testing"
)

// FuzzRegistrableDomain: PTR names come from whoever runs the reverse
// zone. Whatever the name, the result is "" or a dot-separated suffix of
// it, never the whole of a name with more labels than a public suffix and
// one more.
func FuzzRegistrableDomain(f *testing.F) {
	for _, s := range []string{"mail-sor-f69.google.com", "ec2-1-2-3-4.compute-1.amazonaws.com", "a.b.c.co.uk.", "..",
		"x", "com", "\xff.example.com", "a..example.com", strings.Repeat("a.", 200) + "com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got := RegistrableDomain(host)
		if got == "" {
			return
		}
		lower := strings.TrimSuffix(strings.ToLower(host), ".")
		if !strings.HasSuffix(lower, got) || len(got) < len(lower) && lower[len(lower)-len(got)-1] != '.' {
			t.Fatalf("%q gave %q, not a suffix of whole labels", host, got)
		}
		if strings.Count(got, ".") < 1 || strings.HasPrefix(got, ".") {
			t.Fatalf("%q gave %q", host, got)
		}
	})
}
