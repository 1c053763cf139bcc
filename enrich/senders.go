package enrich

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sender types of the known senders file.
const (
	TypeMailboxProvider = "mailbox_provider"
	TypeESP             = "esp"
	TypeTransactional   = "transactional"
	TypeCRMHelpdesk     = "crm_helpdesk"
	TypeSecurityGateway = "security_gateway"
	TypeForwarder       = "forwarder"
	TypeMailingList     = "mailing_list"
)

var senderTypes = []string{TypeMailboxProvider, TypeESP, TypeTransactional, TypeCRMHelpdesk, TypeSecurityGateway, TypeForwarder, TypeMailingList}

// Sender is a known sending service.
type Sender struct {
	Name    string   `yaml:"name"`
	Type    string   `yaml:"type"`
	Domains []string `yaml:"domains"`
	ASNs    []uint   `yaml:"asns"`
}

// builtinSenders is the list shipped with the exporter.
//
//go:embed senders.yml
var builtinSenders []byte

// Senders finds known senders by the registrable domain of a host name or
// by AS number.
type Senders struct {
	byDomain map[string]*Sender
	byASN    map[uint]*Sender
	byName   map[string]*Sender
}

var senderName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// LoadSenders reads the built-in list and, when path is not empty, the
// user's file of the same shape, whose entries take precedence.
func LoadSenders(path string) (*Senders, error) {
	s := &Senders{byDomain: map[string]*Sender{}, byASN: map[uint]*Sender{}, byName: map[string]*Sender{}}
	if err := s.add(builtinSenders, "built-in senders"); err != nil {
		return nil, err
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := s.add(data, path); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// add decodes a senders file; later files override earlier ones by name,
// domain and ASN.
func (s *Senders) add(data []byte, name string) error {
	var f struct {
		Senders []Sender `yaml:"senders"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	for i := range f.Senders {
		snd := &f.Senders[i]
		if !senderName.MatchString(snd.Name) {
			return fmt.Errorf("%s: sender %q: name must be lower-case letters, digits and -", name, snd.Name)
		}
		if !slices.Contains(senderTypes, snd.Type) {
			return fmt.Errorf("%s: sender %s: type %q is not one of %s", name, snd.Name, snd.Type, strings.Join(senderTypes, ", "))
		}
		if len(snd.Domains) == 0 && len(snd.ASNs) == 0 {
			return fmt.Errorf("%s: sender %s has no domains and no asns", name, snd.Name)
		}
		s.byName[snd.Name] = snd
		for _, d := range snd.Domains {
			s.byDomain[strings.ToLower(d)] = snd
		}
		for _, a := range snd.ASNs {
			s.byASN[a] = snd
		}
	}
	return nil
}

// ByDomain returns the sender whose mail hosts are under the registrable
// domain d.
func (s *Senders) ByDomain(d string) *Sender { return s.byDomain[d] }

// ByASN returns the sender that owns AS number asn.
func (s *Senders) ByASN(asn uint) *Sender { return s.byASN[asn] }

// ByName returns the sender of that name.
func (s *Senders) ByName(name string) *Sender { return s.byName[name] }

// Len is the number of senders.
func (s *Senders) Len() int { return len(s.byName) }
