package bgp

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Community is a BGP community in Calico's notation: a standard community
// "aa:nn" (RFC 1997; each part 0..65535) or a large community "aa:nn:mm"
// (RFC 8092; each part 0..4294967295). Large tells which one it is; for a
// standard community C is zero.
type Community struct {
	Large   bool
	A, B, C uint32
}

// ParseCommunity parses "aa:nn" or "aa:nn:mm" (decimal, as Calico's
// BGPConfiguration.communities[].value). It returns an error wrapping
// ErrInvalidCommunity for anything else.
func ParseCommunity(s string) (Community, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return Community{}, fmt.Errorf("community %q: want aa:nn or aa:nn:mm: %w", s, ErrInvalidCommunity)
	}
	bits := 32
	if len(parts) == 2 {
		bits = 16
	}
	var v [3]uint32
	for i, p := range parts {
		if p == "" || p[0] == '+' || p[0] == '-' {
			return Community{}, fmt.Errorf("community %q: part %d is not a number: %w", s, i+1, ErrInvalidCommunity)
		}
		n, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return Community{}, fmt.Errorf("community %q: part %d must be 0..%d: %w", s, i+1, uint64(1)<<bits-1, ErrInvalidCommunity)
		}
		v[i] = uint32(n)
	}
	return Community{Large: len(parts) == 3, A: v[0], B: v[1], C: v[2]}, nil
}

// String returns "aa:nn" or "aa:nn:mm", the form ParseCommunity reads.
func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("%d:%d:%d", c.A, c.B, c.C)
	}
	return fmt.Sprintf("%d:%d", c.A, c.B)
}

// validate rejects values ParseCommunity would not produce: a standard
// community with a part above 65535 or a third part.
func (c Community) validate() error {
	if !c.Large && (c.A > 0xffff || c.B > 0xffff || c.C != 0) {
		return fmt.Errorf("community %d:%d:%d: a standard community is aa:nn, each 0..65535: %w", c.A, c.B, c.C, ErrInvalidCommunity)
	}
	return nil
}

// standard returns the 32-bit value of a standard community.
func (c Community) standard() uint32 { return c.A<<16 | c.B }

func compareCommunities(a, b Community) int {
	if a.Large != b.Large {
		if a.Large {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.A, b.A); c != 0 {
		return c
	}
	if c := cmp.Compare(a.B, b.B); c != 0 {
		return c
	}
	return cmp.Compare(a.C, b.C)
}
