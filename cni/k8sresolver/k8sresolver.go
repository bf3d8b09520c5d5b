// Package k8sresolver is the Kubernetes cni.Resolver: it reads a pod's and
// its namespace's annotations from the API server with client-go, for the
// cni.projectcalico.org/{ipv4pools,ipv6pools,ipAddrs,floatingIPs,hwAddr}
// annotations. It is a package of its own so the core plugin library does
// not link client-go; the tabby binary passes FromKubeconfig to
// cni.WithKubernetesResolver.
//
// # Design
//
//  1. Two GETs per ADD (pod, namespace) of the objects' metadata only
//     (client-go's metadata client, PartialObjectMetadata), no informer: a
//     CNI plugin is a short-lived process. The metadata client registers
//     no API group's types (k8s.io/api is not linked), where the typed
//     clientset would register every group's scheme on every exec; what is
//     left (the metadata client, clientcmd and their dependencies) is a
//     small part of the tabby binary's start (figures in cni/README.md).
//  2. A pod or namespace that does not exist has no annotations (nil map,
//     nil error), as cni.Resolver asks; any other API error is returned
//     and the plugin turns it into code 11 (try again later).
//  3. Every request is bounded by the caller's context and by the client's
//     Timeout (DefaultTimeout when the kubeconfig sets none).
//
// A Resolver is safe for concurrent use.
package k8sresolver

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tabbynet/tabby/cni"
)

// DefaultTimeout bounds each API request when the kubeconfig sets none.
const DefaultTimeout = 10 * time.Second

// Resolver reads annotations through a Kubernetes metadata client.
type Resolver struct{ c metadata.Interface }

var _ cni.Resolver = (*Resolver)(nil)

var (
	pods       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	namespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// New returns a Resolver over c (metadata.NewForConfig, or the fake from
// k8s.io/client-go/metadata/fake).
func New(c metadata.Interface) *Resolver { return &Resolver{c: c} }

// FromKubeconfig builds a Resolver from the kubeconfig file at path (the
// "kubernetes.kubeconfig" key of the tabby configuration).
func FromKubeconfig(path string) (cni.Resolver, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %w", cni.ErrInvalidConfig, path, err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	c, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %w", cni.ErrInvalidConfig, path, err)
	}
	return New(c), nil
}

// Annotations implements cni.Resolver (GET pod, GET namespace).
func (r *Resolver) Annotations(ctx context.Context, namespace, pod string) (map[string]string, map[string]string, error) {
	p, err := r.c.Resource(pods).Namespace(namespace).Get(ctx, pod, metav1.GetOptions{})
	var podAnn map[string]string
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, nil, fmt.Errorf("get pod %s/%s: %w", namespace, pod, err)
	default:
		podAnn = p.Annotations
	}
	n, err := r.c.Resource(namespaces).Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return podAnn, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("get namespace %s: %w", namespace, err)
	}
	return podAnn, n.Annotations, nil
}
