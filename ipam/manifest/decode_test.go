package manifest

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/selector"
)

const head = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.244.0.0/16\n"

func v4(mod func(*ipam.IPPool)) ipam.IPPool {
	p := ipam.IPPool{Name: "p", CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26,
		IPIPMode: ipam.EncapNever, VXLANMode: ipam.EncapNever, NodeSelector: "all()",
		AllowedUses: []ipam.Use{ipam.UseWorkload, ipam.UseTunnel}}
	if mod != nil {
		mod(&p)
	}
	return p
}

func TestDecodeFields(t *testing.T) {
	tests := []struct {
		name string
		spec string // lines appended to head's spec
		want ipam.IPPool
	}{
		{"defaults", "", v4(nil)},
		{"blockSize", "  blockSize: 28\n", v4(func(p *ipam.IPPool) { p.BlockSize = 28 })},
		{"ipipMode", "  ipipMode: CrossSubnet\n", v4(func(p *ipam.IPPool) { p.IPIPMode = ipam.EncapCrossSubnet })},
		{"vxlanMode", "  vxlanMode: Always\n", v4(func(p *ipam.IPPool) { p.VXLANMode = ipam.EncapAlways })},
		{"natOutgoing", "  natOutgoing: true\n", v4(func(p *ipam.IPPool) { p.NATOutgoing = true })},
		{"natOutgoing YAML 1.1 yes", "  natOutgoing: yes\n", v4(func(p *ipam.IPPool) { p.NATOutgoing = true })},
		{"disabled", "  disabled: true\n", v4(func(p *ipam.IPPool) { p.Disabled = true })},
		{"nodeSelector canonical", "  nodeSelector: zone  == 'a'\n", v4(func(p *ipam.IPPool) { p.NodeSelector = `zone == "a"` })},
		{"allowedUses", "  allowedUses: [Tunnel]\n", v4(func(p *ipam.IPPool) { p.AllowedUses = []ipam.Use{ipam.UseTunnel} })},
		{"allowedUses empty is default", "  allowedUses: []\n", v4(nil)},
		{"priority", "  priority: 10\n", v4(func(p *ipam.IPPool) { p.Priority = 10 })},
		{"blockSize 28.0 is 28, as calicoctl reads it", "  blockSize: 28.0\n", v4(func(p *ipam.IPPool) { p.BlockSize = 28 })},
		{"priority 1e2 is 100", "  priority: 1e2\n", v4(func(p *ipam.IPPool) { p.Priority = 100 })},
		{"null is absent", "  blockSize:\n  nodeSelector: null\n", v4(nil)},
		{"assignmentMode Automatic", "  assignmentMode: Automatic\n", v4(nil)},
		{"disableBGPExport false", "  disableBGPExport: false\n", v4(nil)},
		{"namespaceSelector all()", "  namespaceSelector: all()\n", v4(nil)},
		{"nat-outgoing false", "  nat-outgoing: false\n", v4(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePools(strings.NewReader(head + tc.spec))
			require.NoError(t, err)
			assert.Equal(t, []ipam.IPPool{tc.want}, got)
		})
	}
}

func TestDecodeIPv6Defaults(t *testing.T) {
	got, err := DecodePools(strings.NewReader(`{"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
	"metadata": {"name": "v6"}, "spec": {"cidr": "fd00:244::/56", "vxlanMode": "Always"}}`))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, ipam.DefaultBlockSizeV6, got[0].BlockSize)
	assert.Equal(t, ipam.EncapAlways, got[0].VXLANMode)
	assert.Equal(t, ipam.EncapNever, got[0].IPIPMode)
}

func TestDecodeShapes(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		names []string
	}{
		{"multi-document YAML", "---\n" + head + "---\n---\n" + strings.Replace(strings.Replace(head, "name: p", "name: q", 1), "10.244.", "10.245.", 1) +
			"  blockSize: 26\n" + "---\n", []string{"p", "q"}},
		{"IPPoolList", `apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata:
  resourceVersion: "42"
items:
- metadata: {name: a, uid: x, creationTimestamp: "2024-01-01T00:00:00Z", resourceVersion: "7"}
  spec: {cidr: 10.1.0.0/16}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: b, labels: {x: y}}
  spec: {cidr: 10.2.0.0/16}
`, []string{"a", "b"}},
		{"kubectl List", `{"apiVersion": "v1", "kind": "List", "items": [
	{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}}]}`,
			[]string{"a"}},
		{"JSON with tabs", "{\n\t\"apiVersion\": \"projectcalico.org/v3\",\n\t\"kind\": \"IPPool\",\n\t\"metadata\": {\"name\": \"j\"},\n\t\"spec\": {\"cidr\": \"10.3.0.0/16\", \"natOutgoing\": true}\n}\n",
			[]string{"j"}},
		{"empty input", "", nil},
		{"only separators", "---\n---\n", nil},
		{"empty list", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: []\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePools(strings.NewReader(tc.in))
			require.NoError(t, err)
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			assert.Equal(t, tc.names, names)
		})
	}
}

func TestDecodeRefusals(t *testing.T) {
	other := strings.Replace(strings.Replace(head, "name: p", "name: q", 1), "10.244.0.0/16", "10.245.0.0/16", 1)
	tests := []struct {
		name   string
		in     string
		doc    int
		field  string
		err    error
		detail string
	}{
		{"assignmentMode Manual", head + "  assignmentMode: Manual\n", 1, "spec.assignmentMode", ErrUnsupported, "Manual is not supported"},
		{"assignmentMode unknown", head + "  assignmentMode: Sometimes\n", 1, "spec.assignmentMode", ErrDecode, "Automatic or Manual"},
		{"disableBGPExport true", head + "  disableBGPExport: true\n", 1, "spec.disableBGPExport", ErrUnsupported, "true is not supported"},
		{"namespaceSelector", head + "  namespaceSelector: team == 'a'\n", 1, "spec.namespaceSelector", ErrUnsupported, "select nodes only"},
		{"namespaceSelector bad", head + "  namespaceSelector: '=='\n", 1, "spec.namespaceSelector", selector.ErrInvalid, ""},
		{"LoadBalancer use", head + "  allowedUses: [Workload, LoadBalancer]\n", 1, "spec.allowedUses[1]", ErrUnsupported, "LoadBalancer"},
		{"unknown use", head + "  allowedUses: [Pods]\n", 1, "spec.allowedUses", ipam.ErrInvalid, "unknown allowed use"},
		{"deprecated ipip", head + "  ipip: {enabled: true}\n", 1, "spec.ipip", ErrUnsupported, "use ipipMode"},
		{"deprecated nat-outgoing", head + "  nat-outgoing: true\n", 1, "spec.nat-outgoing", ErrUnsupported, "use natOutgoing"},
		{"unknown spec field", head + "  cidrs: [10.0.0.0/8]\n", 1, "spec.cidrs", ErrDecode, "unknown field"},
		{"unknown top field", head + "status: {}\n", 1, "status", ErrDecode, "unknown field"},
		{"unknown metadata field", strings.Replace(head, "  name: p\n", "  name: p\n  colour: red\n", 1), 1, "metadata.colour", ErrDecode, "unknown field"},
		{"namespace", strings.Replace(head, "  name: p\n", "  name: p\n  namespace: default\n", 1), 1, "metadata.namespace", ErrDecode, "cluster-scoped"},
		{"wrong apiVersion", strings.Replace(head, "projectcalico.org/v3", "crd.projectcalico.org/v1", 1), 1, "apiVersion", ErrDecode, "must be projectcalico.org/v3"},
		{"wrong kind", strings.Replace(head, "kind: IPPool", "kind: IPReservation", 1), 1, "kind", ErrDecode, "must be IPPool"},
		{"no kind", "a: 1\n", 1, "kind", ErrDecode, ""},
		{"missing name", strings.Replace(head, "  name: p\n", "  labels: {}\n", 1), 1, "metadata.name", ErrDecode, "required"},
		{"missing spec", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n", 1, "spec", ErrDecode, "required"},
		{"missing cidr", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {natOutgoing: true}\n", 1, "spec.cidr", ErrDecode, "required"},
		{"bad cidr", strings.Replace(head, "10.244.0.0/16", "10.244.0.0", 1), 1, "spec.cidr", ErrDecode, "not a CIDR"},
		{"host bits", strings.Replace(head, "10.244.0.0/16", "10.244.0.1/16", 1), 1, "spec.cidr", ipam.ErrInvalid, "host bits"},
		{"link-local", strings.Replace(head, "10.244.0.0/16", "169.254.0.0/16", 1), 1, "spec.cidr", ipam.ErrInvalid, "link-local"},
		{"blockSize range", head + "  blockSize: 19\n", 1, "spec.blockSize", ipam.ErrInvalid, "outside 20-32"},
		{"blockSize type", head + "  blockSize: \"26\"\n", 1, "spec.blockSize", ErrDecode, "must be an integer"},
		{"blockSize float", head + "  blockSize: 26.5\n", 1, "spec.blockSize", ErrDecode, "must be an integer"},
		{"blockSize float says the number", head + "  blockSize: 26.5\n", 1, "spec.blockSize", ErrDecode, "got the number 26.5"},
		{"blockSize NaN", head + "  blockSize: .nan\n", 1, "spec.blockSize", ErrDecode, "must be an integer"},
		{"blockSize huge", head + "  blockSize: 99999999999999999999\n", 1, "spec.blockSize", ErrDecode, "1e+20 is out of range"},
		{"name a YAML 1.1 boolean", strings.Replace(head, "name: p", "name: y", 1), 1, "metadata.name", ErrDecode,
			"must be a string, got the boolean true (YAML 1.1 reads unquoted y, yes, on, n, no, off, true and false as booleans: quote the value)"},
		{"tab indent", strings.Replace(head, "  name: p", "\tname: p", 1), 1, "", ErrDecode,
			"found character that cannot start any token (line 4 holds a tab: YAML indents with spaces only)"},
		{"tab in a later document", head + "---\n" + strings.Replace(head, "  cidr:", "\tcidr:", 1), 2, "", ErrDecode,
			"(line 13 holds a tab: YAML indents with spaces only)"},
		{"natOutgoing type", head + "  natOutgoing: \"true\"\n", 1, "spec.natOutgoing", ErrDecode, "true or false"},
		{"mode unknown", head + "  ipipMode: always\n", 1, "spec.ipipMode", ipam.ErrInvalid, "unknown encapsulation"},
		{"both modes", head + "  ipipMode: Always\n  vxlanMode: Always\n", 1, "spec.vxlanMode", ipam.ErrInvalid, "cannot both"},
		{"bad nodeSelector", head + "  nodeSelector: 'a =='\n", 1, "spec.nodeSelector", selector.ErrInvalid, ""},
		{"duplicate key", head + "  cidr: 10.0.0.0/8\n", 1, "", ErrDecode, `document 1: malformed YAML: line 7: key "cidr" already set in map`},
		{"malformed YAML", head + "---\nspec: [\n", 2, "", ErrDecode, "malformed YAML"},
		{"not a mapping", "- a\n", 1, "", ErrDecode, "must be a mapping"},
		{"duplicate name", head + "---\n" + strings.Replace(head, "10.244.0.0/16", "10.9.0.0/16", 1), 2, "metadata.name", ErrDuplicate, "document 1"},
		{"overlap", head + "---\n" + other + "---\n" + strings.Replace(head, "name: p", "name: r", 1) + "  blockSize: 27\n",
			3, "spec.cidr", ipam.ErrOverlap, `overlaps pool "p"`},
		{"list item error", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16, disableBGPExport: true}\n",
			1, "items[0].spec.disableBGPExport", ErrUnsupported, ""},
		{"list item wrong kind", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- kind: Node\n  metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16}\n",
			1, "items[0].kind", ErrDecode, "must be IPPool"},
		{"v1 List item without apiVersion", "apiVersion: v1\nkind: List\nitems:\n- kind: IPPool\n  metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16}\n",
			1, "items[0].apiVersion", ErrDecode, "projectcalico.org/v3"},
		{"items not a list", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: {}\n", 1, "items", ErrDecode, "must be a list"},
		{"list overlap", "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: a}\n  spec: {cidr: 10.1.0.0/16}\n- metadata: {name: b}\n  spec: {cidr: 10.1.0.0/24}\n",
			1, "items[1].spec.cidr", ipam.ErrOverlap, "document 1 items[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePools(strings.NewReader(tc.in))
			require.Error(t, err)
			assert.Nil(t, got)
			assert.ErrorIs(t, err, tc.err)
			assert.ErrorIs(t, err, ipam.ErrInvalid, "every problem is ErrInvalid")
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.NotEmpty(t, de.Errors)
			f := de.Errors[0]
			assert.Equal(t, tc.doc, f.Document)
			assert.Equal(t, tc.field, f.Field)
			assert.Contains(t, f.Error(), tc.detail)
		})
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	in := head + "  blockSize: x\n  assignmentMode: Manual\n---\n" + strings.Replace(head, "kind: IPPool", "kind: Pool", 1)
	_, err := DecodePools(strings.NewReader(in))
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	var got []string
	for _, f := range de.Errors {
		got = append(got, f.Error())
	}
	assert.Equal(t, []string{
		`document 1: IPPool "p": spec.blockSize: must be an integer, got the string "x"`,
		`document 1: IPPool "p": spec.assignmentMode: Manual is not supported: tabby assigns from every enabled pool that selects the node (disable the pool, or give it a nodeSelector)`,
		`document 2: kind: must be IPPool, IPPoolList or List, got "Pool"`,
	}, got)
	assert.True(t, strings.HasPrefix(err.Error(), "3 problems:\n"))

	// A duplicate key does not stop the stream.
	_, err = DecodePools(strings.NewReader(head + "  cidr: 10.0.0.0/8\n---\n" + head + "  colour: red\n"))
	require.ErrorAs(t, err, &de)
	require.Len(t, de.Errors, 2)
	assert.Equal(t, 1, de.Errors[0].Document)
	assert.Equal(t, "spec.colour", de.Errors[1].Field)
	assert.Equal(t, 2, de.Errors[1].Document)
}

// TestRoundTripThroughIPAM hands decoded pools to CreatePool and reads them
// back unchanged: the decoder's defaults and checks are ipam's.
func TestRoundTripThroughIPAM(t *testing.T) {
	// calicoctl get ippools -o yaml, abridged.
	in := `apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata: {resourceVersion: "1234"}
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: pods-v4, uid: 5e1c, resourceVersion: "99", creationTimestamp: "2026-01-01T00:00:00Z"}
  spec: {cidr: 10.244.0.0/16, blockSize: 24, ipipMode: CrossSubnet, natOutgoing: true, nodeSelector: all(),
    allowedUses: [Workload, Tunnel], disableBGPExport: false, assignmentMode: Automatic}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: pods-v6}
  spec: {cidr: "fd00:10:244::/64", allowedUses: [Workload], nodeSelector: "kubernetes.io/os == 'linux'", priority: 5}
`
	pools, err := DecodePools(strings.NewReader(in))
	require.NoError(t, err)
	ctx := context.Background()
	s, err := store.NewMemory()
	require.NoError(t, err)
	a, err := ipam.New(s)
	require.NoError(t, err)
	for _, p := range pools {
		created, err := a.CreatePool(ctx, p)
		require.NoError(t, err)
		assert.Equal(t, p, created, "CreatePool changes nothing DecodePools returned")
	}
	stored, err := a.Pools(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, pools, stored)

	// A pool overlapping a stored one decodes (the input alone is fine)
	// and CreatePool refuses it.
	more, err := DecodePools(strings.NewReader(strings.Replace(head, "10.244.0.0/16", "10.244.64.0/18", 1)))
	require.NoError(t, err)
	_, err = a.CreatePool(ctx, more[0])
	assert.True(t, errors.Is(err, ipam.ErrOverlap), "%v", err)
}

// TestDecodeOneProblemEach: a problem is reported once, and a hint only where
// it applies (a metadata.name of the wrong type is not also "required"; a
// syntax error on a line without a tab gets no tab hint).
func TestDecodeOneProblemEach(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"name of the wrong type", strings.Replace(head, "name: p", "name: 12", 1),
			[]string{"document 1: metadata.name: must be a string, got the integer 12"}},
		{"syntax error without a tab", strings.Replace(head, "name: p", "name: @p", 1),
			[]string{"document 1: malformed YAML: yaml: line 4: found character that cannot start any token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePools(strings.NewReader(tc.in))
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			var got []string
			for _, f := range de.Errors {
				got = append(got, f.Error())
			}
			assert.Equal(t, tc.want, got)
		})
	}
}
