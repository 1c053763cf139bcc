package collector

import "sort"

// DKIM selectors seen in the reports of configured domains, learned for
// the DNS monitor, which watches their keys.

// Selectors returns the DKIM selectors seen in the reports of domain.
func (s *Store) Selectors(domain string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for sel := range s.selectors[domain] {
		out = append(out, sel)
	}
	sort.Strings(out)
	return out
}
