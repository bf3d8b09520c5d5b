// Command tabby is the tabby CNI plugin (type "tabby"): a pod veth from
// dataplane/netlink and addresses from tabby-ipam (in process) or any
// delegated IPAM plugin; pod annotations from the Kubernetes API when the
// configuration has a "kubernetes" section. See package cni and
// examples/cni/README.md.
//
// With TABBY_CNI_DEBUG_LOG set to a file path, the plugin appends its debug
// log there as JSON lines (stdout is the CNI protocol), among them the
// time each step of an ADD and of a DEL took ("ADD timing", "DEL timing").
package main

import (
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/cni/k8sresolver"
)

func main() {
	opts := []cni.Option{cni.WithKubernetesResolver(k8sresolver.FromKubeconfig)}
	if path := os.Getenv("TABBY_CNI_DEBUG_LOG"); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			defer f.Close()
			opts = append(opts, cni.WithLogger(slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		}
	}
	skel.PluginMainFuncs(cni.New(opts...).Funcs(), cni.Supported, cni.About("tabby"))
}
