package report

import "testing"

func TestRedactAddr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"alice@x.com", "*@x.com"},
		{"<alice@x.com>", "*@x.com"},
		{"Alice Jones <alice@x.com>", "*@x.com"},
		{"alice@x.com, Bob Smith", "*"},
		{"bob@x.com, alice@other.com (Alice Jones)", "*@x.com, *@other.com"},
		{"bob.private@gmail.com, Carol Secret <carol@y.org>", "*@gmail.com, *@y.org"},
		{"mailto:a@x.com?subject=hello", "*"},
		{"bounces+1137616-c1ad-xsj399=163.com@email.entrata.com", "*@email.entrata.com"},
		{"", ""},
	} {
		if got := redactAddr(tt.in); got != tt.want {
			t.Errorf("redactAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
