package cni

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// IPAMPlugin is the tabby-ipam CNI IPAM plugin as a library: a standalone
// IPAM plugin over package ipam for any CNI plugin (bridge, ptp, macvlan).
// It uses the same options as Plugin (WithIPAM, WithResolver,
// WithHostname, WithLogger); the workload options are ignored.
type IPAMPlugin struct{ p *Plugin }

// NewIPAMPlugin returns an IPAMPlugin.
func NewIPAMPlugin(opts ...Option) *IPAMPlugin { return &IPAMPlugin{p: New(opts...)} }

// Funcs returns the verbs for skel.PluginMainFuncs.
func (ip *IPAMPlugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add: func(a *skel.CmdArgs) error {
			r, err := ip.Add(context.Background(), a)
			if err != nil {
				return err
			}
			return r.Print()
		},
		Del:    func(a *skel.CmdArgs) error { return ip.Del(context.Background(), a) },
		Check:  func(a *skel.CmdArgs) error { return ip.Check(context.Background(), a) },
		GC:     func(a *skel.CmdArgs) error { return ip.GC(context.Background(), a) },
		Status: func(a *skel.CmdArgs) error { return ip.Status(context.Background(), a) },
	}
}

// Add assigns the container's addresses under handle
// "<network>.<containerID>" and returns them in the configuration's
// cniVersion: each with its pool's prefix length and gateway when the pool
// is declared with a gateway, else as /32 or /128 without one; plus the
// section's routes and the network's DNS. A retried ADD returns the
// addresses the handle already holds.
func (ip *IPAMPlugin) Add(ctx context.Context, args *skel.CmdArgs) (types.Result, error) {
	pc, ic, err := ParseIPAMConfig(args.StdinData)
	if err != nil {
		return nil, AsCNIError(err)
	}
	d := timeout(ic.TimeoutSeconds)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res, err := ip.add(ctx, pc, ic, args)
	if err != nil {
		return nil, AsCNIError(err)
	}
	out, err := res.GetAsVersion(pc.CNIVersion)
	if err != nil {
		return nil, AsCNIError(fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	return out, nil
}

func (ip *IPAMPlugin) add(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, args *skel.CmdArgs) (*current.Result, error) {
	if args.ContainerID == "" {
		return nil, fmt.Errorf("%w: CNI_CONTAINERID is empty", ErrInvalidArgs)
	}
	k8s, err := ParseArgs(args.Args)
	if err != nil {
		return nil, err
	}
	m, err := ip.p.openIPAM(ic, timeout(ic.TimeoutSeconds))
	if err != nil {
		return nil, err
	}
	defer m.Close()
	// Like Calico's IPAM plugin, tabby-ipam never bypasses IPAM: the
	// ipAddrsNoIpam annotation is the tabby plugin's feature.
	addrs, _, err := ip.p.assign(ctx, m, ic, false, Handle(pc.Name, args.ContainerID), k8s, ip.p.resolver)
	if err != nil {
		return nil, err
	}
	return ipamResult(addrs, ic, pc.DNS), nil
}

func ipamResult(addrs []netip.Addr, ic *IPAMConf, dns types.DNS) *current.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion, DNS: dns, Routes: ic.Routes}
	for _, a := range addrs {
		pfx, gw := netip.PrefixFrom(a, a.BitLen()), netip.Addr{}
		for _, p := range ic.Pools {
			if p.Gateway.IsValid() && p.CIDR.Contains(a) {
				pfx, gw = netip.PrefixFrom(a, p.CIDR.Bits()), p.Gateway
			}
		}
		c := &current.IPConfig{Address: *prefixToIPNet(pfx)}
		if gw.IsValid() {
			c.Gateway = net.IP(gw.AsSlice())
		}
		r.IPs = append(r.IPs, c)
	}
	return r
}

// verb parses the configuration and runs f under its timeout (d); every
// error comes back as a *types.Error.
func (ip *IPAMPlugin) verb(ctx context.Context, args *skel.CmdArgs, f func(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, d time.Duration) error) error {
	pc, ic, err := ParseIPAMConfig(args.StdinData)
	if err == nil {
		d := timeout(ic.TimeoutSeconds)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		err = f(ctx, pc, ic, d)
	}
	if err != nil {
		return AsCNIError(err)
	}
	return nil
}

// Del releases the handle's addresses; idempotent.
func (ip *IPAMPlugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	return ip.verb(ctx, args, func(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, d time.Duration) error {
		if args.ContainerID == "" {
			return fmt.Errorf("%w: CNI_CONTAINERID is empty", ErrInvalidArgs)
		}
		return ip.p.release(ctx, ic, Handle(pc.Name, args.ContainerID), d)
	})
}

// Check compares the handle's addresses with prevResult's.
func (ip *IPAMPlugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	return ip.verb(ctx, args, func(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, d time.Duration) error {
		if err := needVersion(pc, "CHECK", "0.4.0"); err != nil {
			return err
		}
		if pc.PrevResult == nil {
			return fmt.Errorf("%w: CHECK needs prevResult", ErrInvalidConfig)
		}
		prev, err := current.NewResultFromResult(pc.PrevResult)
		if err != nil {
			return fmt.Errorf("%w: prevResult: %w", ErrInvalidConfig, err)
		}
		addrs, err := prevAddrs(prev, args.IfName)
		if err != nil {
			return err
		}
		m, err := ip.p.openExisting(ic, d)
		if err != nil {
			return err
		}
		defer m.Close()
		return checkHandle(ctx, m, Handle(pc.Name, args.ContainerID), addrs)
	})
}

// GC releases the allocations of this network whose container is not in
// cni.dev/valid-attachments (older than the gc grace).
func (ip *IPAMPlugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	return ip.verb(ctx, args, func(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, d time.Duration) error {
		if err := needVersion(pc, "GC", "1.1.0"); err != nil {
			return err
		}
		if err := hasValidAttachments(args.StdinData); err != nil {
			return err
		}
		_, err := ip.p.gcIPAM(ctx, pc.Name, ic, keptHandles(pc.Name, pc.ValidAttachments), nil, d)
		return err
	})
}

// Status returns code 50 when the datastore is unreachable.
func (ip *IPAMPlugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return ip.verb(ctx, args, func(ctx context.Context, pc *types.PluginConf, ic *IPAMConf, d time.Duration) error {
		if err := needVersion(pc, "STATUS", "1.1.0"); err != nil {
			return err
		}
		return ip.p.status(ctx, ic, d)
	})
}
