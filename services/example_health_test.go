package services_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Serve the healthCheckNodePort of a Local LoadBalancer Service from the
// tracker's changes, as a backend's sync does, and ask it as a cloud
// load balancer would.
func ExampleHealthServer() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // a free port for the example
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	hs := services.NewHealthServer(services.HealthConfig{BindAddress: netip.MustParseAddr("127.0.0.1")}, nil)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a", OnChange: hs.QueuedUpdate}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = hs.Run(ctx) }()

	tr.OnServiceUpdate(st.Service("shop", "frontend", "10.96.5.5", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(port))))
	tr.OnEndpointSliceUpdate(st.Slice("shop", "frontend", "frontend-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}},
		st.Endpoint{IP: "10.244.1.7", Node: "node-a"}, st.Endpoint{IP: "10.244.2.9", Node: "node-b"}))
	// A backend's successful sync:
	hs.Update(tr.Changes())
	hs.Updated()

	for range 100 { // Run opens the listener in its goroutine
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
		break
	}
	// Output:
	// 200 {"service":{"namespace":"shop","name":"frontend"},"localEndpoints":1,"serviceProxyHealthy":true}
}
