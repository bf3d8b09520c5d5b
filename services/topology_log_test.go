package services_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// hintLog is one "ignoring topology hints" (Reason set) or "topology
// hints no longer ignored" line of a Tracker's JSON log.
type hintLog struct {
	Msg, Service, Family, Reason, Node, Zone string
}

// hintLogs returns the topology-hint lines of logs, in order.
func hintLogs(t *testing.T, logs *bytes.Buffer) []hintLog {
	t.Helper()
	var out []hintLog
	for _, line := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var l hintLog
		require.NoError(t, json.Unmarshal(line, &l), "%s", line)
		if l.Msg == "ignoring topology hints" || l.Msg == "topology hints no longer ignored" {
			out = append(out, l)
		}
	}
	return out
}

func dualStack(s *v1.Service) { s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00::1") }

// ipv6Slice is st.Slice with addressType IPv6.
func ipv6Slice(name string, eps ...st.Endpoint) *discovery.EndpointSlice {
	s := st.Slice("ns", "s", name, tcp80, eps...)
	s.AddressType = discovery.AddressTypeIPv6
	return s
}

// The Tracker logs why Categorize ignores topology hints, per family,
// with kube-proxy's reasons (topologyModeFromHints): only when some
// ready endpoint of the family has hints and they are not used.
func TestTrackerTopologyHintsIgnored(t *testing.T) {
	const (
		nodeMissing = "one or more ready endpoints is missing a node hint"
		noNode      = "no ready endpoint is hinted for this node"
		zoneMissing = "one or more ready endpoints is missing a zone hint"
		noZone      = "the node has no zone (TrackerConfig.Zone is empty)"
		noZoneHint  = "no ready endpoint is hinted for this node's zone"
	)
	tests := []struct {
		name        string
		zone        string
		v4, v6      []st.Endpoint
		want4, wnt6 string // reason logged for IPv4 / IPv6, "" none
	}{
		{name: "no hints: nothing to report", zone: "a", v4: []st.Endpoint{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}},
		{name: "zone hints used", zone: "a", v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2", Zones: []string{"b"}}}},
		{name: "node hints used", zone: "a", v4: []st.Endpoint{{IP: "10.0.0.1", Nodes: []string{"me"}}, {IP: "10.0.0.2", Nodes: []string{"n2"}}}},
		{name: "node hints not for this node, zone hints used", zone: "a",
			v4: []st.Endpoint{{IP: "10.0.0.1", Nodes: []string{"n1"}, Zones: []string{"a"}}, {IP: "10.0.0.2", Nodes: []string{"n2"}, Zones: []string{"b"}}}},
		{name: "partial zone hints", zone: "a", v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2"}}, want4: zoneMissing},
		{name: "no hint for this zone", zone: "c", v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2", Zones: []string{"b"}}}, want4: noZoneHint},
		{name: "node without a zone", v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}}, want4: noZone},
		{name: "partial node hints", zone: "a", v4: []st.Endpoint{{IP: "10.0.0.1", Nodes: []string{"me"}}, {IP: "10.0.0.2"}}, want4: nodeMissing},
		{name: "node and zone hints both unusable", zone: "c",
			v4:    []st.Endpoint{{IP: "10.0.0.1", Nodes: []string{"n1"}, Zones: []string{"a"}}, {IP: "10.0.0.2", Nodes: []string{"n2"}, Zones: []string{"b"}}},
			want4: noNode + "; " + noZoneHint},
		{name: "a not-ready endpoint's missing hint does not count", zone: "a",
			v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2", NotReady: true}}},
		{name: "only not-ready endpoints have hints", zone: "c",
			v4: []st.Endpoint{{IP: "10.0.0.1"}, {IP: "10.0.0.2", NotReady: true, Zones: []string{"a"}}}},
		{name: "per family: IPv6 hints unusable, IPv4 used", zone: "a",
			v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}},
			v6: []st.Endpoint{{IP: "fd00:244::1", Zones: []string{"a"}}, {IP: "fd00:244::2"}}, wnt6: zoneMissing},
		{name: "per family: both unusable", zone: "c",
			v4: []st.Endpoint{{IP: "10.0.0.1", Zones: []string{"a"}}},
			v6: []st.Endpoint{{IP: "fd00:244::1", Nodes: []string{"n1"}}}, want4: noZoneHint, wnt6: noNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tr := services.NewTracker(services.TrackerConfig{NodeName: "me", Zone: tt.zone}, slog.New(slog.NewJSONHandler(&logs, nil)))
			tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), dualStack))
			tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-4", tcp80, tt.v4...))
			if tt.v6 != nil {
				tr.OnEndpointSliceUpdate(ipv6Slice("s-6", tt.v6...))
			}
			require.NotNil(t, tr.Changes()[spn("ns", "s", "http", v1.ProtocolTCP)])
			var want []hintLog
			for _, w := range []struct{ fam, reason string }{{"IPv4", tt.want4}, {"IPv6", tt.wnt6}} {
				if w.reason != "" {
					want = append(want, hintLog{Msg: "ignoring topology hints", Service: "ns/s:http/TCP", Family: w.fam, Reason: w.reason, Node: "me", Zone: tt.zone})
				}
			}
			assert.Equal(t, want, hintLogs(t, &logs))
		})
	}
}

// The reason is logged once per service port and change, not at every
// sync that re-resolves the Service with the same hints; a new reason
// is logged, hints becoming usable again are logged once, and a deleted
// Service forgets its reason (re-created, it is logged again).
func TestTrackerTopologyHintsLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me", Zone: "c"}, slog.New(slog.NewJSONHandler(&logs, nil)))
	svc := st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0))
	elsewhere := st.Slice("ns", "s", "s-4", tcp80, st.Endpoint{IP: "10.0.0.1", Zones: []string{"a"}}, st.Endpoint{IP: "10.0.0.2", Zones: []string{"b"}})
	ignored := func(reason string) hintLog {
		return hintLog{Msg: "ignoring topology hints", Service: "ns/s:http/TCP", Family: "IPv4", Reason: reason, Node: "me", Zone: "c"}
	}
	tr.OnServiceUpdate(svc)
	tr.OnEndpointSliceUpdate(elsewhere)
	tr.Changes()
	want := []hintLog{ignored("no ready endpoint is hinted for this node's zone")}
	require.Equal(t, want, hintLogs(t, &logs))

	// Syncs re-resolving the Service (its slice and the Service updated
	// again, an endpoint added with the same kind of hints) log nothing.
	for range 3 {
		tr.OnServiceUpdate(svc)
		tr.OnEndpointSliceUpdate(elsewhere)
		tr.Changes()
		tr.Changes() // nothing changed: nothing resolved
	}
	tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-4", tcp80, st.Endpoint{IP: "10.0.0.1", Zones: []string{"a"}}, st.Endpoint{IP: "10.0.0.3", Zones: []string{"b"}}))
	tr.Changes()
	require.Equal(t, want, hintLogs(t, &logs))

	// Another reason: logged.
	tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-4", tcp80, st.Endpoint{IP: "10.0.0.1", Zones: []string{"c"}}, st.Endpoint{IP: "10.0.0.2"}))
	tr.Changes()
	want = append(want, ignored("one or more ready endpoints is missing a zone hint"))
	require.Equal(t, want, hintLogs(t, &logs))

	// Usable again: logged once.
	usable := st.Slice("ns", "s", "s-4", tcp80, st.Endpoint{IP: "10.0.0.1", Zones: []string{"c"}}, st.Endpoint{IP: "10.0.0.2", Zones: []string{"b"}})
	tr.OnEndpointSliceUpdate(usable)
	tr.Changes()
	tr.OnEndpointSliceUpdate(usable)
	tr.Changes()
	want = append(want, hintLog{Msg: "topology hints no longer ignored", Service: "ns/s:http/TCP", Family: "IPv4"})
	require.Equal(t, want, hintLogs(t, &logs))

	// Unusable, deleted, re-created: logged at each creation.
	tr.OnEndpointSliceUpdate(elsewhere)
	tr.Changes()
	tr.OnServiceDelete(svc)
	tr.Changes()
	tr.OnServiceUpdate(svc)
	tr.Changes()
	want = append(want, ignored("no ready endpoint is hinted for this node's zone"), ignored("no ready endpoint is hinted for this node's zone"))
	assert.Equal(t, want, hintLogs(t, &logs))
}
