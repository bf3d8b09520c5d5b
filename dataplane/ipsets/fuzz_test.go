package ipsets

import "testing"

func FuzzParseMember(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.0/24", "fd00::/64,udp:53", "10.0.0.1,tcp:80", "::ffff:1.2.3.4", ",:", "1.2.3.4/33,sctp:", "10.0.0.1,tcp:80,10.0.0.1", "fd00::1,udp:53,fd00::2",
		"::ffff:10.0.0.0/120", "::ffff:0:0/80", "10.0.0.1,80", "10.0.0.1,TCP:80", "fd00::/64,SCTP:9", "fd00::/64,Sctp:9", "::ffff:1.2.3.4,443,::ffff:1.2.3.5", "10.0.0.1,80-90", "10.0.0.1,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range []Type{HashIP, HashNet, HashIPPort, HashNetPort, HashIPPortIP} {
			for _, fam := range []Family{IPv4, IPv6} {
				m, err := ParseMember(typ, fam, s)
				if err != nil {
					continue
				}
				// Round trip: the canonical form parses to the same member.
				m2, err := ParseMember(typ, fam, m.String())
				if err != nil || m2 != m {
					t.Fatalf("%s %s %q: %v -> %q -> %v, %v", typ, fam, s, m, m.String(), m2, err)
				}
				// The kernel entry decodes back to it.
				if m3, err := fromEntry(typ, fam, toEntry(typ, m)); err != nil || m3 != m {
					t.Fatalf("%s %s %q: entry round trip %v, %v", typ, fam, s, m3, err)
				}
			}
		}
	})
}
