package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Resolver gives the annotations of a pod and of its namespace, where the
// cni.projectcalico.org/{ipv4pools,ipv6pools,ipAddrs,floatingIPs} keys are
// read (ipam.ParseAnnotations), and the pod's hwAddr (AnnotationHWAddr). A pod or namespace it does not know has no
// annotations (nil maps, nil error); an error means it could not answer.
type Resolver interface {
	Annotations(ctx context.Context, namespace, pod string) (podAnn, nsAnn map[string]string, err error)
}

// ErrAnnotationsUnavailable: the Resolver could not give a pod's
// annotations (the Kubernetes API server unreachable or refusing): CNI code
// 11, try again later. It is not ErrDatastore, so the message points at the
// API server, not at the IPAM datastore.
var ErrAnnotationsUnavailable = errors.New("pod annotations unavailable")

// StaticAnnotations is a Resolver over fixed maps, for use without a
// cluster: from the "annotations" key of the configuration or the JSON
// file named by "annotations_file".
type StaticAnnotations struct {
	// Pods maps "<namespace>/<pod>" to the pod's annotations.
	Pods map[string]map[string]string `json:"pods,omitempty"`
	// Namespaces maps a namespace name to its annotations.
	Namespaces map[string]map[string]string `json:"namespaces,omitempty"`
}

// Annotations implements Resolver.
func (s *StaticAnnotations) Annotations(_ context.Context, namespace, pod string) (map[string]string, map[string]string, error) {
	if s == nil {
		return nil, nil, nil
	}
	return s.Pods[namespace+"/"+pod], s.Namespaces[namespace], nil
}

// LoadStaticAnnotations reads a StaticAnnotations JSON file. Errors wrap
// ErrInvalidConfig.
func LoadStaticAnnotations(path string) (*StaticAnnotations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: annotations_file: %w", ErrInvalidConfig, err)
	}
	var s StaticAnnotations
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: annotations_file %s: %w", ErrInvalidConfig, path, err)
	}
	return &s, nil
}

// resolverFor picks the configured resolver: Kubernetes (when a resolver
// factory for it was given), the annotations file, the inline annotations,
// or none.
func (p *Plugin) resolverFor(conf *NetConf) (Resolver, error) {
	switch {
	case p.resolver != nil:
		return p.resolver, nil
	case conf.Kubernetes != nil:
		if p.kubeResolver == nil {
			return nil, fmt.Errorf("%w: kubernetes resolver not built into this plugin", ErrInvalidConfig)
		}
		return p.kubeResolver(conf.Kubernetes.Kubeconfig)
	case conf.AnnotationsFile != "":
		return LoadStaticAnnotations(conf.AnnotationsFile)
	case conf.Annotations != nil:
		return conf.Annotations, nil
	}
	return (*StaticAnnotations)(nil), nil
}
