package enrich

import (
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Class is what a source is to the domain owner, after the traffic
// categories mail administrators use (authorised, forwarded, mailing
// list, misconfigured, unknown, threat).
type Class string

const (
	ClassAuthorized    Class = "authorized"
	ClassForwarded     Class = "forwarded"
	ClassMailingList   Class = "mailing_list"
	ClassMisconfigured Class = "misconfigured"
	ClassUnknown       Class = "unknown"
	ClassThreat        Class = "threat"
)

// Classes lists every class.
var Classes = []Class{ClassAuthorized, ClassForwarded, ClassMailingList, ClassMisconfigured, ClassUnknown, ClassThreat}

// Facts are what a record says about a batch of messages, as classifying
// needs them.
type Facts struct {
	SPFAligned  bool // policy-evaluated SPF passed (aligned)
	DKIMAligned bool // policy-evaluated DKIM passed (aligned)
	SPFPass     bool // SPF passed for some domain (auth_results), aligned or not
	DKIMPass    bool // a DKIM signature verified (auth_results), any domain
	Forwarded   bool // override reason forwarded or trusted_forwarder
	MailingList bool // override reason mailing_list
}

// FactsOf reads the facts of a record.
func FactsOf(rec *report.Record) Facts {
	f := Facts{SPFAligned: rec.SPF == report.DMARCPass, DKIMAligned: rec.DKIM == report.DMARCPass}
	for _, d := range rec.DKIMResults {
		f.DKIMPass = f.DKIMPass || d.Result == report.DKIMPass
	}
	for _, s := range rec.SPFResults {
		f.SPFPass = f.SPFPass || s.Result == report.SPFPass
	}
	for _, r := range rec.Reasons {
		switch r.Type {
		case report.ReasonForwarded, report.ReasonTrustedForwarder:
			f.Forwarded = true
		case report.ReasonMailingList:
			f.MailingList = true
		}
	}
	return f
}

// Classify gives a record's class and the reason for it. The rules are
// tried in order and the first that holds decides; the README shows them
// as a table.
func Classify(f Facts, id Identity) (Class, string) {
	dmarcPass := f.SPFAligned || f.DKIMAligned
	service := id.Sender != nil && id.Sender.Type != TypeForwarder && id.Sender.Type != TypeMailingList || id.TrustedService
	switch {
	case id.TrustedNetwork != "":
		return ClassAuthorized, "from a trusted network (" + id.TrustedNetwork + ")"
	case f.SPFAligned:
		return ClassAuthorized, "passes DMARC with aligned SPF"
	case f.DKIMAligned && service:
		return ClassAuthorized, "passes DMARC with aligned DKIM, from " + id.serviceName()
	case f.MailingList:
		return ClassMailingList, "the reporter says mailing_list"
	case id.Sender != nil && id.Sender.Type == TypeMailingList:
		return ClassMailingList, "a known mailing list host (" + id.Sender.Name + ")"
	case f.Forwarded:
		return ClassForwarded, "the reporter says forwarded"
	case id.Sender != nil && id.Sender.Type == TypeForwarder:
		return ClassForwarded, "a known forwarder (" + id.Sender.Name + ")"
	case dmarcPass:
		return ClassForwarded, "SPF fails alignment, the DKIM signature is intact"
	case id.TrustedService || service && (f.SPFPass || f.DKIMPass):
		// A known sender that authenticated, but for another domain: a
		// service sending for you without alignment. One that did not
		// authenticate at all may be anyone on its network (home lines
		// of an access provider, cloud hosts): the rules below decide.
		return ClassMisconfigured, "fails DMARC, from " + id.serviceName() + ": the sender to fix"
	case id.Own:
		return ClassMisconfigured, "fails DMARC, from a host of the domain itself (" + id.Host + ")"
	case !f.SPFPass && !f.DKIMPass:
		from := "an unnamed network"
		if id.Host != "" {
			from = id.Host
		}
		return ClassThreat, "fails SPF and DKIM, from " + from + ", unrelated to the domain"
	}
	return ClassUnknown, "fails DMARC; authenticated only for another domain, no known identity"
}

func (id Identity) serviceName() string {
	switch {
	case id.Sender != nil && id.TrustedService:
		return "the trusted service " + id.Sender.Name
	case id.Sender != nil:
		return "the known sender " + id.Sender.Name
	}
	return "a trusted service"
}
