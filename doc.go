// Package tabby is a library-first SDK of composable Kubernetes-networking
// packages, in the spirit of Project Calico.
//
// Each package does one job and can be embedded on its own:
//
//   - selector: Calico's label-selector language (parse, evaluate without
//     allocating, canonical form, typed builder), importing only the
//     standard library; selector/k8sselector converts Kubernetes
//     LabelSelectors both ways.
//   - selector/index: an incremental index of many selectors against many
//     labelled items with inherited (namespace, service-account) labels.
//   - policy: Calico's policy model (tiers, NetworkPolicy, GlobalNetworkPolicy,
//     network sets), Kubernetes NetworkPolicy and Pod conversion, validation,
//     and an evaluator that explains its verdicts.
//   - ipam: Calico-style block IPAM on a pluggable revisioned store
//     (memory, bbolt, etcd); ipam/manifest decodes Calico IPPool manifests.
//   - dataplane/deltatracker, dataplane/syncrunner: desired-versus-dataplane
//     state and kube-proxy's bounded-frequency runner, used by every applier.
//   - dataplane/netlink: pod veths, routes and VXLAN overlays in the kernel,
//     reconciled against desired state; dataplane/netlink/nettest builds
//     network-namespace topologies for tests and the lab.
//   - dataplane/node: one node's pod networking (blocks, routes to the
//     peers' blocks direct or over VXLAN, pod veths) on the kernel or fakes.
//   - dataplane/iptables, dataplane/ipsets, dataplane/policy: Calico policy
//     enforced in netfilter (chains and ipsets applied by diff, NFLOG drop
//     attribution); dataplane/natoutgoing: Calico's natOutgoing per pool.
//   - bgp: a BGP speaker embedded from GoBGP (Calico's BGPConfiguration,
//     BGPPeer and BGPFilter, node-to-node mesh, route reflectors).
//   - cni: the tabby CNI plugin and the tabby-ipam IPAM plugin as a library.
//   - services: kube-proxy semantics (Service and EndpointSlice) rendered
//     as iptables or nftables NAT rules, with announcements for BGP (in
//     progress).
//
// The examples directory wires the packages into reference binaries: the
// CNI plugins (examples/cni) and a multi-node lab (examples/lab, run by
// `make demo`); a node agent and tabbyctl are planned. No package imports
// examples.
//
// Dependencies point one way: selector imports nothing of tabby; policy
// imports selector; dataplane renders the models but no model imports
// dataplane.
package tabby
