package iptables

import (
	"net/netip"
	"os"
	"testing"
)

// FuzzTrace: the tracer never panics on any dump text, and follows the
// golden scenario dump.
func FuzzTrace(f *testing.F) {
	golden, err := os.ReadFile("testdata/scenario.golden")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(golden), "10.244.3.3", "10.96.0.20", uint16(80), false)
	f.Add("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m statistic --mode random --probability 0.5 -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n", "1.1.1.1", "2.2.2.2", uint16(80), false)
	f.Add(":X\n-A\n-A X \"unterminated\n", "127.0.0.1", "127.0.0.1", uint16(1), true)
	f.Fuzz(func(t *testing.T, dump, src, dst string, port uint16, fromHost bool) {
		s, err1 := netip.ParseAddr(src)
		d, err2 := netip.ParseAddr(dst)
		if err1 != nil || err2 != nil {
			return
		}
		_, _ = traceDump(dump, nil, []netip.Addr{netip.MustParseAddr("192.168.0.10")}, Packet{Src: s, Dst: d, Protocol: "tcp", DstPort: port, FromHost: fromHost})
	})
}
