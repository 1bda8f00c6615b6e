package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/steadhq/stead/pkg/pki"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestAPIEndpointsWrittenAndRestored(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	addr := netip.MustParseAddr("10.42.0.1")
	check := func(when string) {
		t.Helper()
		slice, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if slice.Labels[discoveryv1.LabelServiceName] != "kubernetes" || len(slice.Endpoints) != 1 ||
			slice.Endpoints[0].Addresses[0] != "10.42.0.1" || !*slice.Endpoints[0].Conditions.Ready ||
			*slice.Ports[0].Name != "https" || *slice.Ports[0].Port != 6443 {
			t.Fatalf("%s: slice %+v", when, slice)
		}
		ep, err := client.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if ep.Labels[discoveryv1.LabelSkipMirror] != "true" || ep.Subsets[0].Addresses[0].IP != "10.42.0.1" || ep.Subsets[0].Ports[0].Port != 6443 {
			t.Fatalf("%s: endpoints %+v", when, ep)
		}
	}
	if err := ensureAPIEndpoints(ctx, client, addr, 6443); err != nil {
		t.Fatal(err)
	}
	check("first write")

	// Unchanged, nothing is written: each write would reach every node's
	// Service proxy and cluster DNS.
	client.ClearActions()
	if err := ensureAPIEndpoints(ctx, client, addr, 6443); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("with nothing changed: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	slice, _ := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	slice.Endpoints[0].Addresses = []string{"192.0.2.9"}
	delete(slice.Labels, discoveryv1.LabelServiceName)
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Endpoints("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ensureAPIEndpoints(ctx, client, addr, 6443); err != nil {
		t.Fatal(err)
	}
	check("after a change, a label removed and a deletion")

	// An address of the other family: the slice's addressType is
	// immutable, so the slice is made anew.
	if err := ensureAPIEndpoints(ctx, client, netip.MustParseAddr("fd00::1"), 6443); err != nil {
		t.Fatal(err)
	}
	slice, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || slice.AddressType != discoveryv1.AddressTypeIPv6 || slice.Endpoints[0].Addresses[0] != "fd00::1" {
		t.Fatalf("after an IPv6 address: %v %+v", err, slice)
	}
}

func TestRelayJoinsEachConnectionToTheTarget(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			conn, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				// Echoes until the client closes its side, then says so.
				_, _ = io.Copy(conn, conn)
				_, _ = conn.Write([]byte("bye\n"))
			}()
		}
	}()
	port := freeLoopbackPort(t)
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()
	ctx, cancel := context.WithCancel(context.Background())
	if err := relay(ctx, listen, backend.Addr().String()); err != nil {
		t.Fatal(err)
	}

	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("through the relay: %q %v, want ping", line, err)
	}
	// A half-close reaches the target, and its answer comes back.
	_ = conn.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(r); err != nil || string(rest) != "bye\n" {
		t.Fatalf("after closing our side: %q %v, want bye", rest, err)
	}

	cancel()
	for range 100 {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the relay still accepts after its context ended")
}

func freeLoopbackPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestEndpointReconcilerFollowsWhetherServersHavePeers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		etcdServers []string
		bind        string
		want        string
	}{
		{"embedded etcd", nil, "0.0.0.0", "none"},
		{"embedded etcd, loopback", nil, "127.0.0.1", "none"},
		{"external etcd, loopback", []string{"https://10.0.0.5:2379"}, "127.0.0.1", "none"},
		{"external etcd, IPv6 loopback", []string{"https://10.0.0.5:2379"}, "::1", "none"},
		{"external etcd, all addresses", []string{"https://10.0.0.5:2379"}, "0.0.0.0", "lease"},
		{"external etcd, one address", []string{"https://10.0.0.5:2379"}, "10.0.0.7", "lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{EtcdServers: tc.etcdServers, BindAddress: tc.bind}, creds: &credentials{ca: &pki.CA{}}}
			args := s.apiServerArgs([]string{"https://127.0.0.1:2379"}, "", "", "")
			if !slices.Contains(args, "--endpoint-reconciler-type="+tc.want) {
				t.Errorf("API server args %q, want --endpoint-reconciler-type=%s", args, tc.want)
			}
		})
	}
}
