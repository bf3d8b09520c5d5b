package cni_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
)

// ipAddrsNoIpam through the binary: with feature_control enabled, the pod
// gets the annotation's address (outside every pool), talks TCP to a pod
// addressed by IPAM, CHECK passes, and DEL leaves nothing.
func TestIntegrationIPAddrsNoIPAM(t *testing.T) {
	l := newLab(t)
	static := map[string]any{"pods": map[string]any{
		"default/given": map[string]string{ipam.AnnotationIPAddrsNoIPAM: `["192.0.2.10"]`},
	}}
	list := l.tabbyList("noipam", nil, map[string]any{"annotations": static,
		"feature_control": map[string]any{"ip_addrs_no_ipam": true}})
	given, other := nettest.NewNetns(t, "cni-given"), nettest.NewNetns(t, "cni-other")
	r, err := l.add(list, rt("given", given.Path))
	require.NoError(t, err)
	assert.Equal(t, "192.0.2.10", podAddr(t, r))
	ro, err := l.add(list, rt("other", other.Path))
	require.NoError(t, err)

	serve(t, given, "192.0.2.10", 8080)
	serve(t, other, podAddr(t, ro), 8080)
	assert.NoError(t, talk(other, "192.0.2.10", 8080))
	assert.NoError(t, talk(given, podAddr(t, ro), 8080))

	require.NoError(t, l.check(list, rt("given", given.Path)))
	require.NoError(t, l.del(list, rt("given", given.Path)))
	require.NoError(t, l.del(list, rt("other", other.Path)))
	l.assertClean("noipam", "given", "other")
}
