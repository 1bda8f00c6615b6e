package network

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/steadhq/stead/pkg/internal/netnstest"
)

func setupTestNetwork(t *testing.T) *Network {
	t.Helper()
	bridge := fmt.Sprintf("stt%d", os.Getpid()%100000)
	n, err := Setup(Config{Bridge: bridge, PodCIDR: netip.MustParsePrefix("10.199.7.0/24"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.RemoveBridge(); err != nil {
			t.Errorf("remove bridge: %v", err)
		}
	})
	return n
}

func TestPodsReachEachOtherOverTheBridge(t *testing.T) {
	n := setupTestNetwork(t)
	suffix := fmt.Sprint(os.Getpid())
	pathA, pathB := netnstest.New(t, "stead-test-a-"+suffix), netnstest.New(t, "stead-test-b-"+suffix)

	addrA, err := n.Attach("uid-a", pathA)
	if err != nil {
		t.Fatal(err)
	}
	addrB, err := n.Attach("uid-b", pathB)
	if err != nil {
		t.Fatal(err)
	}
	if addrA != netip.MustParseAddr("10.199.7.2") || addrB != netip.MustParseAddr("10.199.7.3") {
		t.Fatalf("addresses %s, %s; want the lowest free after the gateway", addrA, addrB)
	}
	// Attaching again is a no-op that answers the same address.
	if again, err := n.Attach("uid-a", pathA); err != nil || again != addrA {
		t.Fatalf("re-attach: %s %v, want %s", again, err, addrA)
	}

	// A server in pod B, a client in pod A: traffic crosses the bridge.
	var ln net.Listener
	netnstest.Run(t, pathB, func() {
		ln, err = net.Listen("tcp", net.JoinHostPort(addrB.String(), "8080"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			_, _ = io.WriteString(conn, "hello from b")
			conn.Close()
		}
	}()
	var got []byte
	netnstest.Run(t, pathA, func() {
		var conn net.Conn
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(addrB.String(), "8080"), 5*time.Second)
		if err == nil {
			got, err = io.ReadAll(conn)
			conn.Close()
		}
	})
	if err != nil || string(got) != "hello from b" {
		t.Fatalf("pod A to pod B: %q %v", got, err)
	}

	// The pod's routes: a default route through the bridge's gateway.
	netnstest.Run(t, pathA, func() {
		var routes []netlink.Route
		routes, err = netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if !r.Gw.Equal(n.Gateway().AsSlice()) {
					err = fmt.Errorf("default route via %s, want %s", r.Gw, n.Gateway())
				}
				return
			}
		}
		err = fmt.Errorf("no default route in %v", routes)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDetachFreesTheAddressAndTheVeth(t *testing.T) {
	n := setupTestNetwork(t)
	path := netnstest.New(t, fmt.Sprintf("stead-test-d-%d", os.Getpid()))
	addr, err := n.Attach("uid-d", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Detach("uid-d"); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(vethName("uid-d")); err == nil {
		t.Fatal("host veth left after detach")
	}
	if err := n.Detach("uid-d"); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	// The freed address is not handed out again while others are free:
	// peers may still have the old interface's MAC for it in their caches.
	other := netnstest.New(t, fmt.Sprintf("stead-test-e-%d", os.Getpid()))
	if next, err := n.Attach("uid-e", other); err != nil || next != addr.Next() {
		t.Fatalf("address after detach: %s %v, want %s, the one after the freed %s", next, err, addr.Next(), addr)
	}
}

func TestAllocationSurvivesRestartAndNeverDoubles(t *testing.T) {
	dir := t.TempDir()
	first := &Network{cfg: Config{PodCIDR: netip.MustParsePrefix("10.199.8.0/29"), StateDir: dir}, gateway: netip.MustParseAddr("10.199.8.1")}
	got := map[netip.Addr]string{}
	for _, uid := range []string{"a", "b", "c", "d", "e"} {
		addr, err := first.allocate(uid)
		if err != nil {
			t.Fatal(err)
		}
		if owner, dup := got[addr]; dup {
			t.Fatalf("%s given to %s and %s", addr, owner, uid)
		}
		got[addr] = uid
	}
	// .0 network, .1 gateway, .7 broadcast: a /29 holds five pods.
	if _, err := first.allocate("f"); err == nil {
		t.Fatal("allocated a sixth address in a /29")
	}
	// A new process (an agent restart) sees the same addresses.
	second := &Network{cfg: first.cfg, gateway: first.gateway}
	for addr, uid := range got {
		if again, err := second.allocate(uid); err != nil || again != addr {
			t.Fatalf("after restart %s has %s (%v), want %s", uid, again, err, addr)
		}
	}
	// Once the range is used up, freed addresses come round again, also
	// after a restart, lowest after the last one given first.
	if err := second.release("b"); err != nil {
		t.Fatal(err)
	}
	if err := second.release("d"); err != nil {
		t.Fatal(err)
	}
	third := &Network{cfg: first.cfg, gateway: first.gateway}
	for _, want := range []string{"10.199.8.3", "10.199.8.5"} {
		if addr, err := third.allocate("new-" + want); err != nil || addr.String() != want {
			t.Fatalf("allocation after release: %s %v, want %s", addr, err, want)
		}
	}
}
