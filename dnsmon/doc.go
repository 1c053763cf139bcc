// Package dnsmon reads and judges the DNS records a mail domain publishes
// for DMARC: the DMARC record (RFC 9989), SPF (RFC 7208) with its lookup
// limits, DKIM, MTA-STS, TLS-RPT and BIMI, and polls them (monitor.go).
// Lookups go through package dnsclient, to the resolvers the user gives.
package dnsmon
