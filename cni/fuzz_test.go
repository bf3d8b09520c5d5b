package cni

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tabby","mtu":1400,"ipam":{"type":"tabby-ipam","pools":[{"name":"p","cidr":"10.0.0.0/24","gateway":"10.0.0.1"}]}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tabby","ipam":{"type":"host-local"},"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/32"}]}}`))
	f.Add([]byte(`{"cniVersion":"0.3.1","name":"n","ipam":{"type":"tabby-ipam","routes":[{"dst":"0.0.0.0/0"}]},"annotations":{"pods":{"a/b":{"k":"v"}}}}`))
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tabby","ipam":{"type":"host-local"},"runtimeConfig":{"mac":"1c:0c:0a:c0:ff:ee"}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err == nil && c.runtimeMAC != nil && (len(c.runtimeMAC) != 6 || c.runtimeMAC[0]&1 != 0) {
			t.Fatalf("accepted runtimeConfig.mac %s", c.runtimeMAC)
		}
		if err == nil && (c.Name == "" || c.IPAM.Type == "") {
			t.Fatalf("accepted %q without name or ipam type", data)
		}
		_, _, _ = ParseIPAMConfig(data)
	})
}

func FuzzParseArgs(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;IP=10.0.0.5")
	f.Add("a=b=c;;=")
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseArgs(s) })
}

// FuzzPrevResult runs ADD and CHECK of both plugins, on the fakes, with
// a fuzzed prevResult: an error, never a panic.
func FuzzPrevResult(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/32","interface":0}],"routes":[{"dst":"0.0.0.0/0"}]}`))
	f.Add([]byte(`{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.22.0.5/32","interface":9}]}`))
	f.Add([]byte(`{"cniVersion":"0.3.1","ips":[null],"dns":{"nameservers":["1.1.1.1"]}}`))
	f.Fuzz(func(t *testing.T, prev []byte) {
		var pr map[string]any
		if json.Unmarshal(prev, &pr) != nil {
			return
		}
		e := newEnv(t)
		e.wm.AddNetns("/run/netns/x")
		var m map[string]any
		if err := json.Unmarshal(conf(t, "1.1.0", nil, nil), &m); err != nil {
			t.Fatal(err)
		}
		if v, ok := pr["cniVersion"]; ok {
			m["cniVersion"] = v
		}
		m["prevResult"] = pr
		c, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		a := &skel.CmdArgs{ContainerID: "x", Netns: "/run/netns/x", IfName: "eth0", StdinData: c}
		if r, err := e.p.Add(t.Context(), a); err == nil {
			_, _ = json.Marshal(r)
		}
		_ = e.p.Check(t.Context(), a)
		ip := NewIPAMPlugin(WithIPAM(e.m), WithHostname(func() (string, error) { return "node1", nil }))
		_ = ip.Check(t.Context(), a)
		_ = e.p.Del(t.Context(), a)
	})
}
