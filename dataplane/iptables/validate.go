package iptables

import (
	"fmt"
	"slices"
	"strings"
)

// baseFlags names the builtin matches by baseRank.
var baseFlags = [5]string{"-s", "-d", "-i", "-o", "-p"}

// rejectTypes maps each REJECT --reject-with type a family accepts (the
// lists of iptables-extensions(8), REJECT (IPv4-specific) and (IPv6-
// specific)) to the canonical name iptables-save prints for it.
var rejectTypes = map[Family]map[string]string{
	IPv4: {
		"icmp-net-unreachable":   "icmp-net-unreachable",
		"icmp-host-unreachable":  "icmp-host-unreachable",
		"icmp-port-unreachable":  "icmp-port-unreachable",
		"icmp-proto-unreachable": "icmp-proto-unreachable",
		"icmp-net-prohibited":    "icmp-net-prohibited",
		"icmp-host-prohibited":   "icmp-host-prohibited",
		"icmp-admin-prohibited":  "icmp-admin-prohibited",
		"tcp-reset":              "tcp-reset",
	},
	IPv6: {
		"icmp6-no-route":         "icmp6-no-route",
		"no-route":               "icmp6-no-route",
		"icmp6-adm-prohibited":   "icmp6-adm-prohibited",
		"adm-prohibited":         "icmp6-adm-prohibited",
		"icmp6-addr-unreachable": "icmp6-addr-unreachable",
		"addr-unreach":           "icmp6-addr-unreachable",
		"icmp6-port-unreachable": "icmp6-port-unreachable",
		"tcp-reset":              "tcp-reset",
	},
}

// rejectTypeNames returns the REJECT types of family f, sorted and
// joined, for errors.
func rejectTypeNames(f Family) string {
	names := make([]string, 0, len(rejectTypes[f]))
	for k := range rejectTypes[f] {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// targetNames are target extensions iptables would load for `-j NAME`
// instead of a chain: a Jump or Goto to one of them is refused (use the
// Action type).
var targetNames = map[string]bool{"ACCEPT": true, "DROP": true, "RETURN": true, "QUEUE": true, "REJECT": true,
	"MARK": true, "MASQUERADE": true, "DNAT": true, "SNAT": true, "REDIRECT": true, "LOG": true, "NFLOG": true}

// checkJumpTarget checks the chain of a Jump or Goto (kind "jump" or
// "goto"): a valid chain name, not a kernel chain of any table (INPUT,
// FORWARD, ...: iptables refuses them as targets) nor a target name.
func checkJumpTarget(kind, chain string) error {
	if !validChainName(chain) {
		return invalid("bad %s target %q", kind, chain)
	}
	for _, cs := range builtinChains {
		if slices.Contains(cs, chain) {
			return invalid("%s target %s is a kernel chain, not a user chain", kind, chain)
		}
	}
	if targetNames[chain] {
		return invalid("%s target %s is a target, not a chain: use its Action type", kind, chain)
	}
	return nil
}

// natHooks lists, for each NAT target, the nat-table kernel chains it may
// be used in (iptables-extensions(8); the kernel refuses it elsewhere when
// the table is committed).
var natHooks = map[string][]string{
	"DNAT":       {"PREROUTING", "OUTPUT"},
	"SNAT":       {"POSTROUTING", "INPUT"},
	"MASQUERADE": {"POSTROUTING"},
}

// validateIn checks the restrictions of r's target on the table, which
// the kernel checks only when a restore commits the table: DNAT, SNAT and
// Masquerade are nat-table targets, REJECT a filter-table one. In a
// kernel chain (hook, "" for an owned chain) a NAT target must also suit
// the hook (DNAT in PREROUTING or OUTPUT, SNAT in POSTROUTING or INPUT,
// MASQUERADE in POSTROUTING). SetMark, Log, NFLOG, Accept, Drop, Return,
// Jump and Goto are valid in every table.
func (r Rule) validateIn(table Table, hook string) error {
	var name string
	switch r.Action.(type) {
	case DNAT:
		name = "DNAT"
	case SNAT:
		name = "SNAT"
	case Masquerade:
		name = "MASQUERADE"
	case Reject:
		if table != Filter {
			return invalid("REJECT in table %s: it is a filter-table target", table)
		}
		return nil
	default:
		return nil
	}
	if table != NAT {
		return invalid("%s in table %s: it is a nat-table target", name, table)
	}
	if hook != "" && !slices.Contains(natHooks[name], hook) {
		return invalid("%s in kernel chain %s: only in %s", name, hook, strings.Join(natHooks[name], ", "))
	}
	return nil
}

// validateRulesIn runs validateIn on each rule of chain.
func validateRulesIn(table Table, chain, hook string, rules []Rule) error {
	for i, r := range rules {
		if err := r.validateIn(table, hook); err != nil {
			return fmt.Errorf("chain %s rule %d: %w", chain, i, err)
		}
	}
	return nil
}

// checkChainName returns an ErrInvalidRule naming why name is no valid
// chain name (see validChainName), or nil.
func checkChainName(name string) error {
	switch {
	case name == "":
		return invalid("empty chain name")
	case len(name) > MaxChainNameLen:
		return invalid("chain name of %d bytes: at most %d", len(name), MaxChainNameLen)
	case name[0] == '-' || name[0] == '!':
		return invalid("chain name starts with %q", name[0])
	}
	for i, c := range name { // a rune, so that 'é' is named as such
		if !tokenByte(c) {
			return invalid("invalid character %q at byte %d of the chain name (printable ASCII only, no space, quote or backslash)", c, i)
		}
	}
	return nil
}

// wellKnownPrefixes are chain-name prefixes other programs own (they
// create, and may delete, chains named so); New refuses a ChainPrefix
// overlapping one. Sources: kube-proxy and kubelet (pkg/proxy/iptables,
// pkg/kubelet), Calico felix (rules/rule_defs.go, and its old "felix-"),
// Cilium (CILIUM_ and OLD_CILIUM_), Docker, flannel, the CNI portmap and
// bridge plugins, Tailscale, Istio, Antrea, Weave Net, libvirt, ufw and
// fail2ban.
var wellKnownPrefixes = []struct{ prefix, owner string }{
	{"KUBE-", "kube-proxy/kubelet/kube-router"},
	{"cali-", "Calico"},
	{"felix-", "Calico"},
	{"CILIUM_", "Cilium"},
	{"OLD_CILIUM_", "Cilium"},
	{"DOCKER", "Docker"},
	{"FLANNEL-", "flannel"},
	{"CNI-", "the CNI portmap/bridge plugins"},
	{"ts-", "Tailscale"},
	{"ISTIO_", "Istio"},
	{"ANTREA-", "Antrea"},
	{"WEAVE", "Weave Net"},
	{"LIBVIRT_", "libvirt"},
	{"ufw-", "ufw"},
	{"ufw6-", "ufw"},
	{"f2b-", "fail2ban"},
}
