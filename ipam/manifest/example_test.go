package manifest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/manifest"
	"github.com/tabbynet/tabby/ipam/store"
)

func Example() {
	const pools = `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: CrossSubnet
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv6-ippool
spec:
  cidr: fd00:10:244::/64
`
	decoded, err := manifest.DecodePools(strings.NewReader(pools))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	s, err := store.NewMemory()
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := ipam.New(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range decoded {
		created, err := a.CreatePool(ctx, p)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(created.Name, created.CIDR, created.BlockSize, created.VXLANMode, created.AllowedUses)
	}

	// A Calico setting tabby cannot honour is refused, naming the field.
	_, err = manifest.DecodePools(strings.NewReader(strings.Replace(pools, "nodeSelector: all()", "assignmentMode: Manual", 1)))
	fmt.Println(errors.Is(err, manifest.ErrUnsupported))
	fmt.Println(err)

	// Output:
	// default-ipv4-ippool 10.244.0.0/16 26 CrossSubnet [Workload Tunnel]
	// default-ipv6-ippool fd00:10:244::/64 122 Never [Workload Tunnel]
	// true
	// document 1: IPPool "default-ipv4-ippool": spec.assignmentMode: Manual is not supported: tabby assigns from every enabled pool that selects the node (disable the pool, or give it a nodeSelector)
}
