package history

import (
	"math"
	"testing"
	"time"
)

func TestSplit(t *testing.T) {
	d := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	day := func(s string) time.Time { return d(s + "T00:00:00Z") }
	for _, c := range []struct {
		name       string
		begin, end string
		n          uint64
		want       map[string]uint64
	}{
		{"one day, to 23:59:59", "2024-01-01T00:00:00Z", "2024-01-01T23:59:59Z", 10, map[string]uint64{"2024-01-01": 10}},
		{"one day, to the next midnight", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", 10, map[string]uint64{"2024-01-01": 10}},
		{"16 and 8 hours", "2024-01-21T08:00:00Z", "2024-01-22T08:00:00Z", 3, map[string]uint64{"2024-01-21": 2, "2024-01-22": 1}},
		{"a tie goes to the earlier day", "2024-01-01T12:00:00Z", "2024-01-02T12:00:00Z", 1, map[string]uint64{"2024-01-01": 1, "2024-01-02": 0}},
		{"a week", "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z", 7000, map[string]uint64{"2024-01-01": 1000, "2024-01-02": 1000,
			"2024-01-03": 1000, "2024-01-04": 1000, "2024-01-05": 1000, "2024-01-06": 1000, "2024-01-07": 1000}},
		{"an empty range", "2024-01-01T05:00:00Z", "2024-01-01T05:00:00Z", 4, map[string]uint64{"2024-01-01": 4}},
		{"a backward range", "2024-01-03T05:00:00Z", "2024-01-01T05:00:00Z", 4, map[string]uint64{"2024-01-03": 4}},
		{"longer than a month: on its last day", "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z", 9, map[string]uint64{"2024-02-29": 9}},
		{"a forged range of ages", "1970-01-01T00:00:00Z", "9999-01-01T00:00:00Z", 2, map[string]uint64{"9998-12-31": 2}},
		{"a huge count", "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z", math.MaxUint64, map[string]uint64{"2024-01-01": 6148914691236517205,
			"2024-01-02": 6148914691236517205, "2024-01-03": 6148914691236517205}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := split(d(c.begin), d(c.end), c.n)
			var sum uint64
			for k, v := range got {
				sum += v
				if v != c.want[k.Format(time.DateOnly)] {
					t.Errorf("%s: %d, want %d", k.Format(time.DateOnly), v, c.want[k.Format(time.DateOnly)])
				}
			}
			for k, v := range c.want {
				if _, ok := got[day(k)]; !ok && v > 0 {
					t.Errorf("%s missing", k)
				}
			}
			if sum != c.n {
				t.Errorf("the days sum to %d, want %d", sum, c.n)
			}
		})
	}
}
