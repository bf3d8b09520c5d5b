package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// The Calico annotations that steer IPAM, read by ParseAnnotations.
const (
	AnnotationIPv4Pools     = "cni.projectcalico.org/ipv4pools"
	AnnotationIPv6Pools     = "cni.projectcalico.org/ipv6pools"
	AnnotationIPAddrs       = "cni.projectcalico.org/ipAddrs"
	AnnotationIPAddrsNoIPAM = "cni.projectcalico.org/ipAddrsNoIpam"
	AnnotationFloatingIPs   = "cni.projectcalico.org/floatingIPs"
)

// AnnotationRequest is what a pod's and its namespace's annotations ask of
// IPAM. Every field is optional.
type AnnotationRequest struct {
	// IPv4Pools and IPv6Pools restrict pool choice (names or CIDRs); the
	// pod's annotation wins over the namespace's, per family.
	IPv4Pools, IPv6Pools []string
	// Addrs are specific addresses to assign through IPAM (ipAddrs).
	Addrs []netip.Addr
	// NoIPAMAddrs bypass IPAM entirely (ipAddrsNoIpam): nothing is recorded
	// and nothing checked; the CNI should allow this only when configured to.
	NoIPAMAddrs []netip.Addr
	// FloatingIPs are recorded against the allocation for DNAT.
	FloatingIPs []netip.Addr
}

// ParseAnnotations reads the IPAM annotations of a pod and of its
// namespace (either map may be nil). An annotation whose value is the
// empty string counts as absent, as in Calico's CNI plugin (a pod's empty
// pool annotation leaves the namespace's in force). It rejects, with
// ErrInvalid naming the annotation, as Calico's JSON and IP parsing would:
// a blank (whitespace-only) value, malformed JSON, addresses that do not parse exactly
// (no surrounding spaces, no zone), more than one address per family in ipAddrs or
// ipAddrsNoIpam, and contradictory combinations (ipAddrs with
// ipAddrsNoIpam; specific addresses with the pod's own pool annotations).
// Pool names are checked later, against the pools, by Assign
// (ErrUnknownPool).
func ParseAnnotations(pod, namespace map[string]string) (AnnotationRequest, error) {
	var r AnnotationRequest
	var err error
	for _, f := range []struct {
		key string
		out *[]string
	}{{AnnotationIPv4Pools, &r.IPv4Pools}, {AnnotationIPv6Pools, &r.IPv6Pools}} {
		v := pod[f.key]
		if v == "" {
			v = namespace[f.key]
		}
		if v == "" {
			continue
		}
		if *f.out, err = parseStringList(f.key, v); err != nil {
			return AnnotationRequest{}, err
		}
	}
	if r.Addrs, err = parseAddrList(pod, AnnotationIPAddrs, true); err != nil {
		return AnnotationRequest{}, err
	}
	if r.NoIPAMAddrs, err = parseAddrList(pod, AnnotationIPAddrsNoIPAM, true); err != nil {
		return AnnotationRequest{}, err
	}
	if r.FloatingIPs, err = parseAddrList(pod, AnnotationFloatingIPs, false); err != nil {
		return AnnotationRequest{}, err
	}
	switch {
	case len(r.Addrs) > 0 && len(r.NoIPAMAddrs) > 0:
		return AnnotationRequest{}, fmt.Errorf("%w: %s and %s cannot be used together", ErrInvalid, AnnotationIPAddrs, AnnotationIPAddrsNoIPAM)
	case (len(r.Addrs) > 0 || len(r.NoIPAMAddrs) > 0) && (hasKey(pod, AnnotationIPv4Pools) || hasKey(pod, AnnotationIPv6Pools)):
		return AnnotationRequest{}, fmt.Errorf("%w: specific addresses cannot be combined with the pod's pool annotations", ErrInvalid)
	case len(r.NoIPAMAddrs) > 0 && len(r.FloatingIPs) > 0:
		return AnnotationRequest{}, fmt.Errorf("%w: %s cannot be combined with %s", ErrInvalid, AnnotationFloatingIPs, AnnotationIPAddrsNoIPAM)
	}
	return r, nil
}

// hasKey reports whether m sets k to a non-empty value.
func hasKey(m map[string]string, k string) bool { return m[k] != "" }

func parseStringList(key, v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("%w: annotation %s: blank value, want a JSON list of strings", ErrInvalid, key)
	}
	var list []string
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("%w: annotation %s: want a JSON list of strings: %v", ErrInvalid, key, err)
	}
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("%w: annotation %s: empty entry", ErrInvalid, key)
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func parseAddrList(pod map[string]string, key string, onePerFamily bool) ([]netip.Addr, error) {
	v := pod[key]
	if v == "" {
		return nil, nil
	}
	list, err := parseStringList(key, v)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	var n4, n6 int
	for _, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%w: annotation %s: %q is not an IP address", ErrInvalid, key, s)
		}
		a = a.Unmap()
		if a.Is4() {
			n4++
		} else {
			n6++
		}
		for _, b := range out {
			if a == b {
				return nil, fmt.Errorf("%w: annotation %s: %s listed twice", ErrInvalid, key, a)
			}
		}
		out = append(out, a)
	}
	if onePerFamily && (n4 > 1 || n6 > 1) {
		return nil, fmt.Errorf("%w: annotation %s: at most one IPv4 and one IPv6 address", ErrInvalid, key)
	}
	return out, nil
}
