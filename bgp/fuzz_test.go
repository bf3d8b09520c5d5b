package bgp

import (
	"testing"
)

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"64512:100", "1:2:3", "", ":", "65536:1", "4294967295:4294967295:4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		back, err := ParseCommunity(c.String())
		if err != nil || back != c {
			t.Fatalf("%q -> %v -> %q does not round-trip: %v", s, c, c.String(), err)
		}
	})
}

func FuzzParsePeerIP(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.1:179", "[fd00::1]:179", "fd00::1", "[::1]", "1.2.3.4:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, port, err := ParsePeerIP(s)
		if err != nil {
			return
		}
		if !a.IsValid() || a.Zone() != "" || port < 0 || port > 65535 {
			t.Fatalf("%q -> %v %d", s, a, port)
		}
	})
}
