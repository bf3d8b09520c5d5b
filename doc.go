// Package tabby is a library-first SDK of composable Kubernetes-networking
// packages, in the spirit of Project Calico.
//
// Each package does one job and can be embedded on its own:
//
//   - selector: Calico's label-selector language (parse, evaluate without
//     allocating, canonical form, typed builder, Kubernetes conversion).
//   - selector/index: an incremental index of many selectors against many
//     labelled items with inherited (namespace, service-account) labels.
//   - policy: Calico's policy model (tiers, NetworkPolicy, GlobalNetworkPolicy,
//     network sets), Kubernetes NetworkPolicy conversion, validation, and an
//     evaluator that explains its verdicts.
//   - ipam: Calico-style block IPAM on a pluggable revisioned store
//     (memory, bbolt, etcd).
//   - dataplane/netlink: pod veths, routes and VXLAN overlays in the kernel,
//     reconciled against desired state; dataplane/netlink/nettest builds
//     network-namespace topologies for tests and the lab.
//   - dataplane/iptables, dataplane/ipsets, dataplane/policy: policy
//     enforcement in netfilter (later).
//   - bgp: a BGP speaker embedded from GoBGP (later).
//   - cni: a CNI plugin core (later).
//   - services: kube-proxy semantics rendered as NAT rules (later).
//
// The examples directory wires the packages into reference binaries: a node
// agent, a CNI plugin, tabbyctl and a multi-node lab. No package imports
// examples.
//
// Dependencies point one way: selector imports nothing of tabby; policy
// imports selector; dataplane renders the models but no model imports
// dataplane.
package tabby
