package services_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

func TestStaleFlows(t *testing.T) {
	resolveSvc := func(svc *v1.Service, proto v1.Protocol, eps ...st.Endpoint) *services.Resolved {
		tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
		tr.OnServiceUpdate(svc)
		ports := []st.SlicePort{{Name: "dns", Proto: proto, Port: 5353}}
		tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-1", ports, eps...))
		for _, r := range tr.Changes() {
			return r
		}
		return nil
	}
	resolve := func(proto v1.Protocol, eps ...st.Endpoint) *services.Resolved {
		return resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", proto, 53, 30053)), proto, eps...)
	}
	a, b := st.Endpoint{IP: "10.244.0.1"}, st.Endpoint{IP: "10.244.0.2"}
	str := func(s []services.StaleFlow) []string {
		var out []string
		for _, x := range s {
			out = append(out, x.String())
		}
		return out
	}
	tests := []struct {
		name     string
		old, cur *services.Resolved
		want     []string
	}{
		{"endpoint replaced", resolve("UDP", a), resolve("UDP", b), []string{"UDP *:30053 -> 10.244.0.1:5353", "UDP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		{"endpoint kept", resolve("UDP", a), resolve("UDP", a, b), nil},
		{"last endpoint gone", resolve("UDP", a), resolve("UDP"), []string{"UDP *:30053 -> 10.244.0.1:5353", "UDP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		{"sctp endpoint replaced", resolve("SCTP", a), resolve("SCTP", b), []string{"SCTP *:30053 -> 10.244.0.1:5353", "SCTP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		{"first endpoint: unDNATed flows", resolve("UDP"), resolve("UDP", a), []string{"UDP *:30053 -> (not DNATed)", "UDP 10.96.0.10:53 -> (not DNATed)"}},
		{"service deleted", resolve("UDP", a), nil, []string{"UDP *:30053 -> 10.244.0.1:5353", "UDP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		// A destination the port no longer has: its flows keep reaching
		// the old endpoint until they time out, and once the address or
		// node port goes to another Service, its clients' flows too.
		{"service re-created with another cluster IP", resolve("UDP", a),
			resolveSvc(st.Service("ns", "s", "10.96.0.20", st.Port("dns", "UDP", 53, 30053)), "UDP", a),
			[]string{"UDP 10.96.0.10:53 -> 10.244.0.1:5353", "UDP 10.96.0.20:53 -> (not DNATed)"}},
		{"external IP removed", resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 0), st.ExternalIPs("192.0.2.1")), "UDP", a, b),
			resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 0)), "UDP", a, b),
			[]string{"UDP 192.0.2.1:53 -> 10.244.0.1:5353", "UDP 192.0.2.1:53 -> 10.244.0.2:5353"}},
		{"node port changed, endpoint replaced", resolve("UDP", a),
			resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 30054)), "UDP", b),
			[]string{"UDP *:30053 -> 10.244.0.1:5353", "UDP *:30054 -> (not DNATed)", "UDP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		// A destination the port gained while it has endpoints: flows
		// to it that were not DNATed (to whatever the address or port
		// was before) would bypass the service.
		{"external IP added", resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 0)), "UDP", a),
			resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 0), st.ExternalIPs("192.0.2.1")), "UDP", a),
			[]string{"UDP 192.0.2.1:53 -> (not DNATed)"}},
		{"node port added, no endpoint", resolveSvc(st.Service("ns", "s", "10.96.0.10", st.Port("dns", "UDP", 53, 0)), "UDP"),
			resolve("UDP"), nil},
		// Like kube-proxy, flows to an endpoint that still serves are
		// kept whatever the sets balance over now: a terminating one
		// drains (KEP-1669), one topology hints leave out keeps its
		// flows; they go once it stops serving or is gone.
		{"endpoint terminating, still serving", resolve("UDP", a, b), resolve("UDP", st.Endpoint{IP: "10.244.0.1", Terminating: true}, b), nil},
		{"terminating endpoint stops serving", resolve("UDP", st.Endpoint{IP: "10.244.0.1", Terminating: true}, b),
			resolve("UDP", st.Endpoint{IP: "10.244.0.1", Terminating: true, NotServing: true}, b),
			[]string{"UDP *:30053 -> 10.244.0.1:5353", "UDP 10.96.0.10:53 -> 10.244.0.1:5353"}},
		{"endpoint left out by topology hints", resolve("UDP", a, b),
			resolve("UDP", st.Endpoint{IP: "10.244.0.1", Nodes: []string{"n1"}}, st.Endpoint{IP: "10.244.0.2", Nodes: []string{"me"}}), nil},
		{"tcp ignored", resolve("TCP", a), resolve("TCP", b), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := str(services.StaleFlows(tt.old, tt.cur, false))
			assert.Equal(t, tt.want, got)
		})
	}
}
