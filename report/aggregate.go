package report

import (
	"net/netip"
	"time"
)

// Aggregate is the part of an aggregate report that precedes its records:
// everything but the records themselves. An AggregateDecoder returns it
// before the first record; Extensions that follow the records are added to it
// as they are read.
type Aggregate struct {
	// Version is the <version> element as written ("", "0.1", "1.0", "2.0", ...).
	Version string `json:"version,omitempty"`
	// Namespace is the XML namespace of the <feedback> element, if any.
	Namespace  string          `json:"namespace,omitempty"`
	Metadata   Metadata        `json:"metadata"`
	Policy     PolicyPublished `json:"policy"`
	Extensions []Extension     `json:"extensions,omitempty"`
	// Repairs say what the decoder mended to read the report: set once
	// the last record has been read.
	Repairs Repairs `json:"repairs,omitzero"`
}

// Repairs are the faults a report was read in spite of.
type Repairs struct {
	// InvalidBytes counts the bytes of text that were not in the
	// report's encoding, each read as U+FFFD.
	InvalidBytes int `json:"invalid_bytes,omitempty"`
	// StrayStartTag is the element that opened before <feedback> and
	// never closed (ikea.com's reports open an <xs:schema>), dropped.
	StrayStartTag string `json:"stray_start_tag,omitempty"`
}

// Metadata is report_metadata.
type Metadata struct {
	OrgName          string    `json:"org_name"`
	Email            string    `json:"email,omitempty"`
	ExtraContactInfo string    `json:"extra_contact_info,omitempty"`
	ReportID         string    `json:"report_id"`
	Begin            time.Time `json:"begin"`
	End              time.Time `json:"end"`
	// Errors are the report_metadata/error elements: problems the reporter met.
	Errors    []string `json:"errors,omitempty"`
	Generator string   `json:"generator,omitempty"`
}

// PolicyPublished is policy_published: the DMARC record the reporter found.
// Pct is nil when the element is absent (RFC 9990 removed it).
type PolicyPublished struct {
	Domain          string          `json:"domain"`
	ADKIM           Alignment       `json:"adkim,omitempty"`
	ASPF            Alignment       `json:"aspf,omitempty"`
	P               Policy          `json:"p,omitempty"`
	SP              Policy          `json:"sp,omitempty"`
	NP              Policy          `json:"np,omitempty"`
	Pct             *int            `json:"pct,omitempty"`
	FO              string          `json:"fo,omitempty"`
	Testing         Testing         `json:"testing,omitempty"`
	DiscoveryMethod DiscoveryMethod `json:"discovery_method,omitempty"`
}

// Record is one <record>: a count of messages that share a source IP and
// authentication results.
type Record struct {
	// SourceIP is invalid (!IsValid) when the element is missing or unparsable;
	// Problem then says so.
	SourceIP    netip.Addr  `json:"source_ip"`
	Count       uint64      `json:"count"`
	Disposition Disposition `json:"disposition"`
	// DKIM and SPF are the policy-evaluated (aligned) results.
	DKIM         DMARCResult `json:"dkim"`
	SPF          DMARCResult `json:"spf"`
	Reasons      []Reason    `json:"reasons,omitempty"`
	HeaderFrom   string      `json:"header_from"`
	EnvelopeFrom string      `json:"envelope_from,omitempty"`
	EnvelopeTo   string      `json:"envelope_to,omitempty"`
	DKIMResults  []DKIMAuth  `json:"dkim_results,omitempty"`
	SPFResults   []SPFAuth   `json:"spf_results,omitempty"`
	Extensions   []Extension `json:"extensions,omitempty"`
	// Problem is set on a flagged record: one whose values are wrong (a
	// missing, negative or non-numeric count, an implausible count, a
	// missing or unreadable source IP). BadCount and BadSourceIP say which:
	// a record with a bad count adds no messages (Count is 0); one whose
	// only fault is its source IP keeps its count, since the messages
	// happened whoever sent them.
	Problem     string `json:"problem,omitempty"`
	BadCount    bool   `json:"-"`
	BadSourceIP bool   `json:"-"`
}

// Reason is a policy override reason with its optional comment.
type Reason struct {
	Type    ReasonType `json:"type"`
	Comment string     `json:"comment,omitempty"`
}

// DKIMAuth is one auth_results/dkim element.
type DKIMAuth struct {
	Domain      string     `json:"domain"`
	Selector    string     `json:"selector,omitempty"`
	Result      DKIMResult `json:"result"`
	HumanResult string     `json:"human_result,omitempty"`
}

// SPFAuth is one auth_results/spf element.
type SPFAuth struct {
	Domain      string    `json:"domain"`
	Scope       SPFScope  `json:"scope,omitempty"`
	Result      SPFResult `json:"result"`
	HumanResult string    `json:"human_result,omitempty"`
}

// Extension is an <extension> element kept opaque: its attributes of note
// and its content re-serialised as XML, bounded by Limits.MaxExtensionBytes.
type Extension struct {
	Name       string `json:"name,omitempty"`
	Definition string `json:"definition,omitempty"`
	XML        string `json:"xml,omitempty"`
}
