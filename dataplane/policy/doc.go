// Package policy compiles Calico policy (package policy, imported here as
// pol) for the endpoints local to one node into iptables chains and ipsets,
// Felix-style, and keeps them up to date incrementally.
//
// Import it under another name, e.g. dppolicy, beside the policy model.
//
// Design section: see the end of this comment.
package policy
