// Command tabby is the tabby CNI plugin (type "tabby"): a pod veth from
// dataplane/netlink and addresses from tabby-ipam (in process) or any
// delegated IPAM plugin. See package cni and examples/cni/README.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/cni"
)

func main() { skel.PluginMainFuncs(cni.New().Funcs(), cni.Supported, cni.About("tabby")) }
