package report

import "strings"

// The enumerations of the aggregate report schema (RFC 7489 Appendix C,
// RFC 9990 Appendix A). Each is a closed set: parse functions trim and
// lower-case the input, map known synonyms, and return the type's Other
// value for anything else, so values taken from a report are safe to use
// as metric labels. The zero value "" means the element was absent or empty.

// Disposition is the policy applied to a message (policy_evaluated/disposition).
type Disposition string

const (
	DispositionNone       Disposition = "none"
	DispositionQuarantine Disposition = "quarantine"
	DispositionReject     Disposition = "reject"
	// DispositionPass is RFC 9990's value for a message that passed DMARC.
	DispositionPass  Disposition = "pass"
	DispositionOther Disposition = "other"
)

// ParseDisposition maps a disposition as reporters write it to the closed set.
func ParseDisposition(s string) Disposition {
	switch s = norm(s); s {
	case "":
		return ""
	case "none", "quarantine", "reject", "pass":
		return Disposition(s)
	}
	return DispositionOther
}

// DMARCResult is a policy-evaluated (aligned) DKIM or SPF result.
type DMARCResult string

const (
	DMARCPass  DMARCResult = "pass"
	DMARCFail  DMARCResult = "fail"
	DMARCOther DMARCResult = "other"
)

// ParseDMARCResult maps a policy_evaluated dkim or spf value. The schema
// allows only pass and fail; some reporters copy the raw authentication
// result instead. Any recognised result other than pass means the mechanism
// did not produce an aligned pass, so it is read as fail (RFC 7489 §6.6.2).
func ParseDMARCResult(s string) DMARCResult {
	switch s = norm(s); s {
	case "":
		return ""
	case "pass":
		return DMARCPass
	case "fail", "hardfail", "softfail", "neutral", "none", "temperror", "permerror", "policy":
		return DMARCFail
	}
	return DMARCOther
}

// DKIMResult is a raw DKIM verification result (auth_results/dkim/result).
type DKIMResult string

const (
	DKIMNone      DKIMResult = "none"
	DKIMPass      DKIMResult = "pass"
	DKIMFail      DKIMResult = "fail"
	DKIMPolicy    DKIMResult = "policy"
	DKIMNeutral   DKIMResult = "neutral"
	DKIMTempError DKIMResult = "temperror"
	DKIMPermError DKIMResult = "permerror"
	DKIMOther     DKIMResult = "other"
)

// ParseDKIMResult maps a DKIM result; "hardfail" is read as fail.
func ParseDKIMResult(s string) DKIMResult {
	switch s = norm(s); s {
	case "":
		return ""
	case "none", "pass", "fail", "policy", "neutral", "temperror", "permerror":
		return DKIMResult(s)
	case "hardfail":
		return DKIMFail
	}
	return DKIMOther
}

// SPFResult is a raw SPF result (auth_results/spf/result).
type SPFResult string

const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
	SPFOther     SPFResult = "other"
)

// ParseSPFResult maps an SPF result. "hardfail" (pre-RFC drafts) is fail;
// "error" and "unknown" are the RFC 4408 names of temperror and permerror.
func ParseSPFResult(s string) SPFResult {
	switch s = norm(s); s {
	case "":
		return ""
	case "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror":
		return SPFResult(s)
	case "hardfail":
		return SPFFail
	case "error":
		return SPFTempError
	case "unknown":
		return SPFPermError
	}
	return SPFOther
}

// SPFScope is the identity an SPF result was computed for.
type SPFScope string

const (
	ScopeHelo  SPFScope = "helo"
	ScopeMfrom SPFScope = "mfrom"
	ScopeOther SPFScope = "other"
)

// ParseSPFScope maps an SPF scope.
func ParseSPFScope(s string) SPFScope {
	switch s = norm(s); s {
	case "":
		return ""
	case "helo", "mfrom":
		return SPFScope(s)
	case "ehlo":
		return ScopeHelo
	}
	return ScopeOther
}

// ReasonType is a policy override reason (policy_evaluated/reason/type).
type ReasonType string

const (
	ReasonForwarded        ReasonType = "forwarded"
	ReasonSampledOut       ReasonType = "sampled_out"
	ReasonTrustedForwarder ReasonType = "trusted_forwarder"
	ReasonMailingList      ReasonType = "mailing_list"
	ReasonLocalPolicy      ReasonType = "local_policy"
	// ReasonPolicyTestMode is RFC 9990's reason for t=y.
	ReasonPolicyTestMode ReasonType = "policy_test_mode"
	ReasonOther          ReasonType = "other"
)

// ParseReasonType maps a policy override reason.
func ParseReasonType(s string) ReasonType {
	switch s = norm(s); s {
	case "":
		return ""
	case "forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "policy_test_mode", "other":
		return ReasonType(s)
	}
	return ReasonOther
}

// Policy is a published DMARC policy (p, sp, np).
type Policy string

const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
	PolicyOther      Policy = "other"
)

// ParsePolicy maps a published policy.
func ParsePolicy(s string) Policy {
	switch s = norm(s); s {
	case "":
		return ""
	case "none", "quarantine", "reject":
		return Policy(s)
	}
	return PolicyOther
}

// Alignment is an identifier alignment mode (adkim, aspf).
type Alignment string

const (
	AlignmentRelaxed Alignment = "r"
	AlignmentStrict  Alignment = "s"
	AlignmentOther   Alignment = "other"
)

// ParseAlignment maps an alignment mode; the words are accepted too.
func ParseAlignment(s string) Alignment {
	switch norm(s) {
	case "":
		return ""
	case "r", "relaxed":
		return AlignmentRelaxed
	case "s", "strict":
		return AlignmentStrict
	}
	return AlignmentOther
}

// Testing is RFC 9990's t tag, published as testing.
type Testing string

const (
	TestingYes   Testing = "y"
	TestingNo    Testing = "n"
	TestingOther Testing = "other"
)

// ParseTesting maps the testing element.
func ParseTesting(s string) Testing {
	switch norm(s) {
	case "":
		return ""
	case "y", "yes", "true":
		return TestingYes
	case "n", "no", "false":
		return TestingNo
	}
	return TestingOther
}

// DiscoveryMethod is how the reporter found the policy (RFC 9990).
type DiscoveryMethod string

const (
	DiscoveryPSL      DiscoveryMethod = "psl"
	DiscoveryTreewalk DiscoveryMethod = "treewalk"
	DiscoveryOther    DiscoveryMethod = "other"
)

// ParseDiscoveryMethod maps the discovery_method element.
func ParseDiscoveryMethod(s string) DiscoveryMethod {
	switch s = norm(s); s {
	case "":
		return ""
	case "psl", "treewalk":
		return DiscoveryMethod(s)
	case "tree-walk", "tree_walk":
		return DiscoveryTreewalk
	}
	return DiscoveryOther
}

// oneOf returns s, trimmed and lower-cased, as a member of set, or
// other when it is not one.
func oneOf[T ~string](s string, set []T, other T) T {
	s = norm(s)
	for _, v := range set {
		if string(v) == s {
			return v
		}
	}
	return other
}

func norm(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}
