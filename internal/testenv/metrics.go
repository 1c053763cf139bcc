package testenv

import dto "github.com/prometheus/client_model/go"

// Sum adds the values of the series of a family whose labels include the
// given name/value pairs.
func Sum(f *dto.MetricFamily, match ...string) float64 {
	total := 0.0
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(match); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == match[i] && l.GetValue() == match[i+1]
			}
			if !found {
				continue series
			}
		}
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return total
}
