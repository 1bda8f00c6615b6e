package network

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/steadhq/stead/pkg/internal/netnstest"
)

// TestRoutesAppliedAndRemoved runs ApplyRoutes and RemoveRoutes in a
// namespace of the test's own, on a veth pair (both ends there) standing in for the LAN.
func TestRoutesAppliedAndRemoved(t *testing.T) {
	name := fmt.Sprintf("stead-test-routes-%d", os.Getpid())
	ns := netnstest.New(t, name)
	netnstest.Exec(t, name, "sh", "-c", "ip link add lan type veth peer name lan-peer && ip addr add 192.168.77.1/24 dev lan && ip link set lan up && ip link set lan-peer up")
	route := func(cidr, via string) NodeRoute {
		return NodeRoute{CIDR: netip.MustParsePrefix(cidr), Via: netip.MustParseAddr(via)}
	}
	// stead's routes in the namespace, as "cidr via gw".
	steadRoutes := func() []string {
		var got []string
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			got = append(got, r.Dst.String()+" via "+r.Gw.String())
		}
		slices.Sort(got)
		return got
	}
	for _, step := range []struct {
		name string
		do   func() error
		want []string
	}{
		{"two nodes", func() error {
			return ApplyRoutes([]NodeRoute{route("10.50.1.0/24", "192.168.77.2"), route("10.50.2.0/24", "192.168.77.3")})
		}, []string{"10.50.1.0/24 via 192.168.77.2", "10.50.2.0/24 via 192.168.77.3"}},
		{"one gone, one moved", func() error {
			return ApplyRoutes([]NodeRoute{route("10.50.1.0/24", "192.168.77.4")})
		}, []string{"10.50.1.0/24 via 192.168.77.4"}},
		{"another cluster's route beside", func() error {
			return netlink.RouteAdd(&netlink.Route{Dst: ipNet(netip.MustParseAddr("10.60.0.0"), 24), Gw: []byte{192, 168, 77, 9}, Protocol: routeProtocol})
		}, []string{"10.50.1.0/24 via 192.168.77.4", "10.60.0.0/24 via 192.168.77.9"}},
		{"this cluster's removed", func() error {
			return RemoveRoutes(netip.MustParsePrefix("10.50.0.0/16"))
		}, []string{"10.60.0.0/24 via 192.168.77.9"}},
	} {
		var got []string
		netnstest.Run(t, ns, func() {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			got = steadRoutes()
		})
		if !slices.Equal(got, step.want) {
			t.Errorf("%s: routes %q, want %q", step.name, got, step.want)
		}
	}
}
