package k8sresolver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
		meta("Pod", "shop", "db", map[string]string{ipam.AnnotationIPAddrs: `["10.61.0.9"]`, cni.AnnotationHWAddr: "1c:0c:0a:c0:ff:ee"}),
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

// The plugin with the Kubernetes resolver: the namespace's pool, the
// pod's fixed address and its MAC (hwAddr) are honoured, with one GET of
// the pod per ADD for both.
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
	var c *fake.FakeMetadataClient
	p := cni.New(cni.WithWorkloads(wm), cni.WithIPAM(m), cni.WithKubernetesResolver(func(path string) (cni.Resolver, error) {
		asked, c = path, client()
		return k8sresolver.New(c), nil
	}))
	conf := []byte(`{"cniVersion":"1.1.0","name":"net","type":"tabby","nodename":"n1",
		"kubernetes":{"kubeconfig":"` + kubeconfig + `"},"ipam":{"type":"tabby-ipam"}}`)
	for pod, want := range map[string]struct{ addr, mac string }{
		"db":  {"10.61.0.9/32", "1c:0c:0a:c0:ff:ee"},
		"web": {"10.61.0.", netlink.ContainerMAC(cni.Handle("net", "web")).String()},
	} {
		wm.AddNetns("/run/netns/" + pod)
		r, err := p.Add(ctx, &skel.CmdArgs{ContainerID: pod, Netns: "/run/netns/" + pod, IfName: "eth0", StdinData: conf,
			Args: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" + pod})
		require.NoError(t, err)
		assert.Contains(t, r.(*current.Result).IPs[0].Address.String(), want.addr, pod)
		assert.Equal(t, want.mac, r.(*current.Result).Interfaces[1].Mac, pod)
		gets := 0
		for _, a := range c.Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
				gets++
			}
		}
		assert.Equal(t, 1, gets, "%s: one GET of the pod for IPAM and the MAC", pod)
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

// apiServer is an HTTPS server answering the two GETs the resolver makes
// the way kube-apiserver does for a metadata-only client: a
// PartialObjectMetadata when the Accept header asks for one, a Status
// with reason NotFound for a missing object. It checks the bearer token
// from the kubeconfig. A fake beside the client-go fake above: this one
// runs client-go's real transport, kubeconfig loading (CA data, token)
// and content negotiation.
type apiServer struct {
	objects map[string]map[string]string // URL path → annotations
	fail    map[string]int               // URL path → HTTP status to answer

	mu      sync.Mutex
	accepts []string // Accept header of every request
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	s.accepts = append(s.accepts, r.Header.Get("Accept"))
	s.mu.Unlock()
	status := func(code int, reason string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
			"reason": reason, "code": code, "message": reason})
	}
	switch {
	case r.Header.Get("Authorization") != "Bearer s3cret":
		status(http.StatusUnauthorized, "Unauthorized")
	case s.fail[r.URL.Path] != 0:
		status(s.fail[r.URL.Path], "InternalError")
	case !strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata"):
		status(http.StatusNotAcceptable, "NotAcceptable")
	default:
		ann, ok := s.objects[r.URL.Path]
		if !ok {
			status(http.StatusNotFound, "NotFound")
			return
		}
		parts := strings.Split(r.URL.Path, "/")
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
			"metadata": map[string]any{"name": parts[len(parts)-1], "annotations": ann}})
	}
}

// kubeconfigFor writes a kubeconfig for srv with the given token.
func kubeconfigFor(t *testing.T, srv *httptest.Server, token string) string {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`", certificate-authority-data: "`+base64.StdEncoding.EncodeToString(ca)+`"}}]
users: [{name: u, user: {token: `+token+`}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	return path
}

func TestFromKubeconfigOverHTTPS(t *testing.T) {
	api := &apiServer{
		objects: map[string]map[string]string{
			"/api/v1/namespaces/shop":         {ipam.AnnotationIPv4Pools: `["blue"]`},
			"/api/v1/namespaces/shop/pods/db": {ipam.AnnotationIPAddrs: `["10.61.0.9"]`},
			"/api/v1/namespaces/bare":         nil,
		},
		fail: map[string]int{"/api/v1/namespaces/broken/pods/x": http.StatusInternalServerError},
	}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)

	r, err := k8sresolver.FromKubeconfig(kubeconfigFor(t, srv, "s3cret"))
	require.NoError(t, err)
	tests := []struct {
		name, ns, pod string
		wantPod       map[string]string
		wantNS        map[string]string
		wantErr       string
	}{
		{name: "pod and namespace annotated", ns: "shop", pod: "db",
			wantPod: map[string]string{ipam.AnnotationIPAddrs: `["10.61.0.9"]`},
			wantNS:  map[string]string{ipam.AnnotationIPv4Pools: `["blue"]`}},
		{name: "pod missing, namespace annotated", ns: "shop", pod: "ghost",
			wantNS: map[string]string{ipam.AnnotationIPv4Pools: `["blue"]`}},
		{name: "namespace without annotations", ns: "bare", pod: "ghost"},
		{name: "neither exists", ns: "nowhere", pod: "ghost"},
		{name: "server error", ns: "broken", pod: "x", wantErr: "get pod broken/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod, ns, err := r.Annotations(t.Context(), tc.ns, tc.pod)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantPod, pod)
			assert.Equal(t, tc.wantNS, ns)
		})
	}
	api.mu.Lock()
	accepts := slices.Clone(api.accepts)
	api.mu.Unlock()
	require.NotEmpty(t, accepts)
	for _, a := range accepts {
		assert.Contains(t, a, "as=PartialObjectMetadata", "metadata-only requests")
	}

	// A wrong token: the API's 401 is an error, not "no annotations".
	r, err = k8sresolver.FromKubeconfig(kubeconfigFor(t, srv, "wrong"))
	require.NoError(t, err)
	_, _, err = r.Annotations(t.Context(), "shop", "db")
	assert.ErrorContains(t, err, "Unauthorized")
}
