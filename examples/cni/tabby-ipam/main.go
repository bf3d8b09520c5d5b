// Command tabby-ipam is the tabby CNI IPAM plugin (ipam type
// "tabby-ipam") over package ipam, for any CNI plugin. See package cni and
// examples/cni/README.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/cni"
)

func main() {
	skel.PluginMainFuncs(cni.NewIPAMPlugin().Funcs(), cni.Supported, cni.About("tabby-ipam"))
}
