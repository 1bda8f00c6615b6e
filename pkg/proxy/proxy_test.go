package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/steadhq/stead/pkg/internal/netnstest"
	"github.com/steadhq/stead/pkg/network"
)

// TestClusterIPReachesAReadyPod builds a node in a namespace of its own
// (bridge, forwarding, nftables), two pods on it, and a Service in front of
// one of them; then connects as the other pod does, through the Service IP.
func TestClusterIPReachesAReadyPod(t *testing.T) {
	id := os.Getpid()
	nodeName := fmt.Sprintf("stead-proxy-node-%d", id)
	node := netnstest.New(t, nodeName)
	podA := netnstest.New(t, fmt.Sprintf("stead-proxy-a-%d", id))
	podB := netnstest.New(t, fmt.Sprintf("stead-proxy-b-%d", id))
	netnstest.Exec(t, nodeName, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	// The node's uplink: a veth pair (both ends here) holding the default
	// route, so that a Service IP nothing translated would be routed away
	// (into the pair, never off this namespace) if the proxy did not refuse it.
	netnstest.Exec(t, nodeName, "sh", "-c", "ip link add uplink type veth peer name uplink-peer && ip addr add 192.168.250.1/24 dev uplink && ip link set uplink up && ip link set uplink-peer up && ip route add default via 192.168.250.2")

	var addrA, addrB netip.Addr
	var err error
	netnstest.Run(t, node, func() {
		var n *network.Network
		n, err = network.Setup(network.Config{Bridge: "stead0", PodCIDR: netip.MustParsePrefix("10.42.0.0/24"), StateDir: t.TempDir()})
		if err == nil {
			addrA, err = n.Attach("a", podA)
		}
		if err == nil {
			addrB, err = n.Attach("b", podB)
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	client := fake.NewClientset(
		service("front", "10.43.0.20", corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}),
		slice("front", "front-1", discoveryv1.EndpointPort{Name: ptr.To("web"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}, ep(addrB.String(), true)),
		service("nobody", "10.43.0.21", corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}),
	)
	factory := informers.NewSharedInformerFactory(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	netnstest.Run(t, node, func() {
		var nft knftables.Interface
		nft, err = NewNFTables(DefaultTable)
		if err != nil {
			return
		}
		p := New(nft, netip.MustParsePrefix("10.43.0.0/16"), factory)
		factory.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
			err = errors.New("informers did not sync")
			return
		}
		err = p.Sync(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}

	var ln net.Listener
	netnstest.Run(t, podB, func() { ln, err = net.Listen("tcp", net.JoinHostPort(addrB.String(), "8080")) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, "served by b to "+conn.RemoteAddr().(*net.TCPAddr).IP.String())
			conn.Close()
		}
	}()

	get := func(pod, target string) (string, error) {
		var reply []byte
		var err error
		netnstest.Run(t, pod, func() {
			var conn net.Conn
			conn, err = net.DialTimeout("tcp", target, 5*time.Second)
			if err == nil {
				reply, err = io.ReadAll(conn)
				conn.Close()
			}
		})
		return string(reply), err
	}
	if got, err := get(podA, "10.43.0.20:80"); err != nil || got != "served by b to "+addrA.String() {
		t.Fatalf("pod A through the ClusterIP: %q %v; want b's answer, with A's own address kept", got, err)
	}
	// A pod reaching itself through its own Service (hairpin) works too.
	if got, err := get(podB, "10.43.0.20:80"); err != nil || got == "" {
		t.Fatalf("pod B to its own Service: %q %v", got, err)
	}
	// No ready endpoint, or no such port: refused at once, never routed on.
	for _, target := range []string{"10.43.0.21:80", "10.43.0.20:81"} {
		start := time.Now()
		_, err := get(podA, target)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: err = %v after %v, want connection refused", target, err, time.Since(start))
		}
	}
}
