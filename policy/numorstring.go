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

// Protocol is an IP protocol, with the meaning of Calico's
// numorstring.Protocol: a name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a
// number 1-255, where a name and its number are the same protocol (TCP is
// 6). It is the one protocol type of the package: a Flow's protocol, a
// rule's protocol and notProtocol, an EndpointPort's protocol. The zero
// value is no protocol and is not valid anywhere a protocol is required.
//
// In JSON and YAML it is a string or a number, as in Calico: names are read
// in any letter case (Calico's v1 API wrote them in lower case) and a string
// of digits is a number; it is written as its canonical name when it has one
// and as a number otherwise, so "protocol: 6" reads back as "protocol: TCP".
type Protocol uint8

// The protocols Calico names, with their IP protocol numbers.
const (
	ProtoICMP    Protocol = 1
	ProtoTCP     Protocol = 6
	ProtoUDP     Protocol = 17
	ProtoICMPv6  Protocol = 58
	ProtoSCTP    Protocol = 132
	ProtoUDPLite Protocol = 136
)

var protocolNames = [...]struct {
	name string
	num  Protocol
}{
	{"TCP", ProtoTCP}, {"UDP", ProtoUDP}, {"ICMP", ProtoICMP},
	{"ICMPv6", ProtoICMPv6}, {"SCTP", ProtoSCTP}, {"UDPLite", ProtoUDPLite},
}

// ParseProtocol reads a protocol name (TCP, UDP, ICMP, ICMPv6, SCTP,
// UDPLite, in any letter case) or a decimal number 1-255. Anything else is
// an error wrapping ErrInvalid.
func ParseProtocol(s string) (Protocol, error) {
	for _, pn := range protocolNames {
		if strings.EqualFold(pn.name, s) {
			return pn.num, nil
		}
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n > 0 {
		return Protocol(n), nil
	}
	return 0, fmt.Errorf("%w: unknown protocol %q, want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255", ErrInvalid, s)
}

// SupportsPorts reports whether rules may match the protocol's ports: TCP,
// UDP and SCTP, as Calico's numorstring.Protocol.SupportsPorts. (UDPLite
// has ports on the wire, but Calico matches none.)
func (p Protocol) SupportsPorts() bool { return protoHasPorts(p) }

func protoHasPorts(n Protocol) bool { return n == ProtoTCP || n == ProtoUDP || n == ProtoSCTP }

// IsICMP reports whether the protocol is ICMP or ICMPv6.
func (p Protocol) IsICMP() bool { return p == ProtoICMP || p == ProtoICMPv6 }

// String returns the canonical name (TCP, ICMPv6, ...) or the number in
// decimal.
func (p Protocol) String() string {
	for _, pn := range protocolNames {
		if pn.num == p {
			return pn.name
		}
	}
	return strconv.Itoa(int(p))
}

// MarshalJSON writes the canonical name as a string, or the number.
func (p Protocol) MarshalJSON() ([]byte, error) {
	for _, pn := range protocolNames {
		if pn.num == p {
			return json.Marshal(pn.name)
		}
	}
	return json.Marshal(uint8(p))
}

// UnmarshalJSON reads a name or a number (see ParseProtocol).
func (p *Protocol) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("protocol must be a name or a number")
		}
		s = n.String()
	}
	v, err := ParseProtocol(s)
	if err != nil {
		return fmt.Errorf("unknown protocol %q, want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255", s)
	}
	*p = v
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
