package manifest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tabbynet/tabby/ipam"
)

// FuzzDecodePools: no input panics; an error is a *DecodeError matching
// ipam.ErrInvalid and returns no pools; decoded pools pass ipam's own
// checks and do not conflict.
func FuzzDecodePools(f *testing.F) {
	f.Add([]byte(head))
	f.Add([]byte(head + "  blockSize: 28\n  vxlanMode: CrossSubnet\n  natOutgoing: true\n  nodeSelector: all()\n---\n" + head))
	f.Add([]byte("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: a}\n  spec: {cidr: 'fd00::/64', allowedUses: [Tunnel]}\n"))
	f.Add([]byte(`{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}}]}`))
	f.Add([]byte("a: &a [*a, *a]\nb: !!binary x\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		pools, err := DecodePools(bytes.NewReader(in))
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ipam.ErrInvalid) || pools != nil {
				t.Fatalf("error %T %v with %d pools", err, err, len(pools))
			}
			_ = err.Error()
			return
		}
		for i, p := range pools {
			if p.WithDefaults().Validate() != nil {
				t.Fatalf("pool %d fails ipam validation", i)
			}
			for _, q := range pools[:i] {
				if p.Conflict(q) != nil {
					t.Fatalf("pools %q and %q conflict", p.Name, q.Name)
				}
			}
		}
	})
}
