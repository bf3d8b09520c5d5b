// Command tabby is the tabby CNI plugin (type "tabby"): a pod veth from
// dataplane/netlink and addresses from tabby-ipam (in process) or any
// delegated IPAM plugin; pod annotations from the Kubernetes API when the
// configuration has a "kubernetes" section. See package cni and
// examples/cni/README.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/cni/k8sresolver"
)

func main() {
	skel.PluginMainFuncs(cni.New(cni.WithKubernetesResolver(k8sresolver.FromKubeconfig)).Funcs(), cni.Supported, cni.About("tabby"))
}
