// Package manifest reads Calico projectcalico.org/v3 IPPool manifests into
// ipam.IPPool values, so that pools written for Calico (calicoctl apply
// files, calicoctl get -o yaml output) can be handed to
// ipam.IPAM.CreatePool as they are.
//
// # Input
//
// DecodePools reads a YAML stream: documents separated by "---", each an
// IPPool, an IPPoolList (whose items may leave apiVersion and kind out),
// or kubectl's "apiVersion: v1, kind: List" of IPPools. JSON is YAML, so
// one JSON document (an IPPool or a list) reads as well; concatenated JSON
// objects without "---" between them do not. Empty documents are skipped.
// YAML is read with YAML 1.1 scalars, as calicoctl and kubectl read it
// (natOutgoing: yes is true; so is an unquoted name: y, refused as a string
// field holding a boolean, with a hint to quote it). A whole number written
// as a float (blockSize: 26.0) is that integer, as it is to calicoctl, which
// reads YAML through JSON. A syntax error on a line that holds a tab says so.
//
// # Fields
//
// Mapped onto ipam.IPPool, with Calico's defaults (filled in by
// ipam.IPPool.WithDefaults, as CreatePool fills them in):
//
//	metadata.name      Name (required)
//	spec.cidr          CIDR (required)
//	spec.blockSize     BlockSize: prefix length, default 26 (IPv4) / 122 (IPv6)
//	spec.ipipMode      IPIPMode: Never (default), Always, CrossSubnet
//	spec.vxlanMode     VXLANMode: Never (default), Always, CrossSubnet
//	spec.natOutgoing   NATOutgoing (default false)
//	spec.disabled      Disabled (default false)
//	spec.nodeSelector  NodeSelector, canonical form (default all())
//	spec.allowedUses   AllowedUses: Workload, Tunnel (default both)
//	spec.priority      Priority: tabby's extension (Calico has none), default 0
//
// Calico fields tabby does not model are accepted only where ignoring them
// cannot change which addresses are handed out or how they are routed:
//
//	spec.assignmentMode     Automatic (Calico's default) accepted; Manual (the pool
//	                        is used only when a pod asks for it) refused: tabby
//	                        would hand out its addresses automatically
//	spec.disableBGPExport   false accepted; true refused: tabby would advertise
//	                        the pool's blocks
//	spec.namespaceSelector  empty or all() accepted; any other selector refused:
//	                        tabby would use the pool for every namespace
//	spec.allowedUses        LoadBalancer refused: tabby assigns no service
//	                        load-balancer addresses
//	spec.ipip               (deprecated v1 form) refused whatever its value, as
//	                        Calico's validator refuses it: use ipipMode
//	spec.nat-outgoing       (deprecated v1 form) false accepted; true refused,
//	                        as Calico's validator refuses it: use natOutgoing
//	metadata.labels, annotations, uid, resourceVersion, creationTimestamp,
//	generation, managedFields, finalizers, ownerReferences, generateName
//	                        ignored (what calicoctl and kubectl print)
//	metadata.namespace      refused unless empty: an IPPool is cluster-scoped
//
// Any other field is refused.
//
// # Errors
//
// On any problem DecodePools returns no pools and a *DecodeError holding
// one *FieldError per problem, each naming the document (from 1), the
// pool's name when known and the field path from the document's root
// (spec.cidr, items[2].metadata.name). errors.Is matches ipam.ErrInvalid for
// every problem, and besides: ErrDecode (malformed YAML, a duplicate key, a
// wrong apiVersion or kind, an unknown field, a wrong type, a missing
// metadata.name, spec or spec.cidr), ErrUnsupported (the refusals above),
// ErrDuplicate (a name defined twice in the input), ipam.ErrOverlap (two
// pools of the input overlap), or the checks of ipam.IPPool.Validate (a
// *ipam.PoolFieldError: block size range, host bits, link-local, IPIP on
// IPv6, both encapsulations; a bad nodeSelector also matches
// selector.ErrInvalid).
//
// Every problem of form is reported at once (syntax, unknown fields, wrong
// types, missing fields, the refusals above). The checks of
// ipam.IPPool.Validate run only on a document whose form is right, and name
// its first problem: a pool with a blockSize of 40 and a vxlanMode of
// Sometimes reports the block size; the mode's problem comes once that is
// fixed.
//
// DecodePools checks the input's pools against each other only; the
// pools already stored are checked by CreatePool, which returns ErrOverlap
// or ErrInvalid for a clash.
//
// # Design
//
// The package is separate from ipam so that ipam, which the CNI plugin
// embeds, stays free of a YAML parser (ipam's TestImportsStayLight pins its
// imports). It uses go.yaml.in/yaml/v2, the one package sigs.k8s.io/yaml
// wraps, directly: its decoder splits a "---" stream itself, refuses
// duplicate keys in strict mode, and gives the YAML 1.1 scalars calicoctl
// sees; nothing else is imported besides ipam and selector.
//
// Documents are decoded into generic values and walked field by field, not
// unmarshalled into structs, so that every problem carries its field path
// and all problems are reported at once. What a pool may be is decided by
// ipam (IPPool.WithDefaults, IPPool.Validate, IPPool.Conflict), not here:
// the decoder only checks the form and the Calico fields ipam does not have.
package manifest
