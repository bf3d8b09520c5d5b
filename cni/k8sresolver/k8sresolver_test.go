package k8sresolver_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/cni/k8sresolver"
	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/ipam"
)

func meta(kind, ns, name string, ann map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann}}
}

// client is a fake API server holding namespace shop and pods db and web.
func client() *fake.FakeMetadataClient {
	s := runtime.NewScheme()
	_ = metav1.AddMetaToScheme(s)
	_ = corev1.AddToScheme(s)
	return fake.NewSimpleMetadataClient(s,
		meta("Namespace", "", "shop", map[string]string{ipam.AnnotationIPv4Pools: `["blue"]`}),
		meta("Pod", "shop", "db", map[string]string{ipam.AnnotationIPAddrs: `["10.61.0.9"]`}),
		meta("Pod", "shop", "web", nil))
}

func TestAnnotations(t *testing.T) {
	r := k8sresolver.New(client())
	pod, ns, err := r.Annotations(t.Context(), "shop", "db")
	require.NoError(t, err)
	assert.Equal(t, `["10.61.0.9"]`, pod[ipam.AnnotationIPAddrs])
	assert.Equal(t, `["blue"]`, ns[ipam.AnnotationIPv4Pools])

	pod, ns, err = r.Annotations(t.Context(), "nowhere", "ghost")
	require.NoError(t, err)
	assert.Nil(t, pod)
	assert.Nil(t, ns)

	c := client()
	c.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("apiserver down")
	})
	_, _, err = k8sresolver.New(c).Annotations(t.Context(), "shop", "db")
	assert.ErrorContains(t, err, "apiserver down")
}

// The plugin with the Kubernetes resolver: the namespace's pool and the
// pod's fixed address are honoured.
func TestPluginWithKubernetes(t *testing.T) {
	ctx := context.Background()
	m, err := cni.NewMemoryIPAM(ctx,
		cni.PoolConf{Name: "default", CIDR: netip.MustParsePrefix("10.60.0.0/24")},
		cni.PoolConf{Name: "blue", CIDR: netip.MustParsePrefix("10.61.0.0/24")})
	require.NoError(t, err)
	wm, err := netlink.NewFakeWorkloads()
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte("unused"), 0o600))
	var asked string
	p := cni.New(cni.WithWorkloads(wm), cni.WithIPAM(m), cni.WithKubernetesResolver(func(path string) (cni.Resolver, error) {
		asked = path
		return k8sresolver.New(client()), nil
	}))
	conf := []byte(`{"cniVersion":"1.1.0","name":"net","type":"tabby","nodename":"n1",
		"kubernetes":{"kubeconfig":"` + kubeconfig + `"},"ipam":{"type":"tabby-ipam"}}`)
	for pod, want := range map[string]string{"db": "10.61.0.9/32", "web": "10.61.0."} {
		wm.AddNetns("/run/netns/" + pod)
		r, err := p.Add(ctx, &skel.CmdArgs{ContainerID: pod, Netns: "/run/netns/" + pod, IfName: "eth0", StdinData: conf,
			Args: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" + pod})
		require.NoError(t, err)
		assert.Contains(t, r.(*current.Result).IPs[0].Address.String(), want, pod)
	}
	assert.Equal(t, kubeconfig, asked)
}

func TestFromKubeconfigErrors(t *testing.T) {
	_, err := k8sresolver.FromKubeconfig(filepath.Join(t.TempDir(), "missing"))
	assert.ErrorIs(t, err, cni.ErrInvalidConfig)
	bad := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(bad, []byte("{not yaml: ["), 0o600))
	_, err = k8sresolver.FromKubeconfig(bad)
	assert.ErrorIs(t, err, cni.ErrInvalidConfig)
	good := filepath.Join(t.TempDir(), "good")
	require.NoError(t, os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	r, err := k8sresolver.FromKubeconfig(good)
	require.NoError(t, err)
	_, _, err = r.Annotations(t.Context(), "a", "b")
	assert.Error(t, err, "no API server at 127.0.0.1:1")
}
