package cni

import "testing"

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"tabby","mtu":1400,"ipam":{"type":"tabby-ipam","pools":[{"name":"p","cidr":"10.0.0.0/24","gateway":"10.0.0.1"}]}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tabby","ipam":{"type":"host-local"},"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/32"}]}}`))
	f.Add([]byte(`{"cniVersion":"0.3.1","name":"n","ipam":{"type":"tabby-ipam","routes":[{"dst":"0.0.0.0/0"}]},"annotations":{"pods":{"a/b":{"k":"v"}}}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
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
