package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// IP protocol numbers of the protocols Calico names.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoICMPv6  uint8 = 58
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

var protocolNames = [...]struct {
	name string
	num  uint8
}{
	{"TCP", ProtoTCP}, {"UDP", ProtoUDP}, {"ICMP", ProtoICMP},
	{"ICMPv6", ProtoICMPv6}, {"SCTP", ProtoSCTP}, {"UDPLite", ProtoUDPLite},
}

// Protocol is a rule's protocol: a name (TCP, UDP, ICMP, ICMPv6, SCTP,
// UDPLite; any letter case) or a number 1-255. In JSON and YAML it is a
// string or a number, as in Calico.
type Protocol struct {
	// Name is set for a named protocol, Num otherwise.
	Name string
	Num  int
}

// ProtocolFromName returns a named protocol.
func ProtocolFromName(name string) Protocol { return Protocol{Name: name} }

// ProtocolFromNumber returns a numbered protocol.
func ProtocolFromNumber(n int) Protocol { return Protocol{Num: n} }

// Number returns the IP protocol number, and false for an unknown name or a
// number out of range.
func (p Protocol) Number() (uint8, bool) {
	if p.Name == "" {
		if p.Num < 1 || p.Num > 255 {
			return 0, false
		}
		return uint8(p.Num), true
	}
	for _, pn := range protocolNames {
		if strings.EqualFold(pn.name, p.Name) {
			return pn.num, true
		}
	}
	return 0, false
}

// SupportsPorts reports whether the protocol has ports (TCP, UDP, SCTP).
func (p Protocol) SupportsPorts() bool {
	n, ok := p.Number()
	return ok && protoHasPorts(n)
}

func protoHasPorts(n uint8) bool { return n == ProtoTCP || n == ProtoUDP || n == ProtoSCTP }

// String returns the name or the number.
func (p Protocol) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Num)
}

// ProtocolName returns the canonical name of an IP protocol number, or the
// number in decimal.
func ProtocolName(n uint8) string {
	for _, pn := range protocolNames {
		if pn.num == n {
			return pn.name
		}
	}
	return strconv.Itoa(int(n))
}

// MarshalJSON writes a name as a string and a number as a number.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return json.Marshal(p.Num)
}

// UnmarshalJSON reads a string or a number. A string of digits is a number.
func (p *Protocol) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if n, err := strconv.Atoi(s); err == nil {
			*p = Protocol{Num: n}
			return nil
		}
		*p = Protocol{Name: s}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("protocol must be a name or a number")
	}
	*p = Protocol{Num: n}
	return nil
}

// Port is a rule's port: a number, a range "min:max", or a named port. In
// JSON and YAML it is a number or a string, as in Calico.
type Port struct {
	MinPort, MaxPort uint16
	PortName         string
}

// SinglePort returns a one-port Port.
func SinglePort(p uint16) Port { return Port{MinPort: p, MaxPort: p} }

// PortRange returns a Port for min to max inclusive.
func PortRange(minPort, maxPort uint16) Port { return Port{MinPort: minPort, MaxPort: maxPort} }

// NamedPort returns a Port naming an endpoint's port.
func NamedPort(name string) Port { return Port{PortName: name} }

// ParsePort reads "80", "8000:8080" or a port name.
func ParsePort(s string) (Port, error) {
	if s == "" {
		return Port{}, errors.New("empty port")
	}
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		a, err1 := parsePortNumber(lo)
		b, err2 := parsePortNumber(hi)
		if err := errors.Join(err1, err2); err != nil {
			return Port{}, fmt.Errorf("port range %q: %w", s, err)
		}
		if a > b {
			return Port{}, fmt.Errorf("port range %q: minimum is above maximum", s)
		}
		return Port{MinPort: a, MaxPort: b}, nil
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := parsePortNumber(s)
		if err != nil {
			return Port{}, err
		}
		return SinglePort(n), nil
	}
	if err := validatePortName(s); err != nil {
		return Port{}, err
	}
	return NamedPort(s), nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number 0-65535", s)
	}
	return uint16(n), nil
}

// validatePortName checks a Kubernetes port name (an IANA service name: at
// most 15 lower-case letters, digits and '-', with a letter).
func validatePortName(s string) error {
	if problems := validation.IsValidPortName(s); len(problems) > 0 {
		return fmt.Errorf("port name %q: %s", s, strings.Join(problems, "; "))
	}
	return nil
}

// IsNamed reports whether the port names an endpoint port.
func (p Port) IsNamed() bool { return p.PortName != "" }

// Contains reports whether a numeric port covers n; a named port never does.
func (p Port) Contains(n uint16) bool {
	return p.PortName == "" && p.MinPort <= n && n <= p.MaxPort
}

// String returns "80", "8000:8080" or the name.
func (p Port) String() string {
	switch {
	case p.PortName != "":
		return p.PortName
	case p.MinPort == p.MaxPort:
		return strconv.Itoa(int(p.MinPort))
	default:
		return strconv.Itoa(int(p.MinPort)) + ":" + strconv.Itoa(int(p.MaxPort))
	}
}

// MarshalJSON writes a single port as a number and anything else as a string.
func (p Port) MarshalJSON() ([]byte, error) {
	if p.PortName == "" && p.MinPort == p.MaxPort {
		return json.Marshal(p.MinPort)
	}
	return json.Marshal(p.String())
}

// UnmarshalJSON reads a number or a string (see ParsePort).
func (p *Port) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := ParsePort(s)
		if err != nil {
			return err
		}
		*p = v
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be a number 0-65535 or a string")
	}
	*p = SinglePort(uint16(n))
	return nil
}
