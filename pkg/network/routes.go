package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/steadhq/stead/pkg/internal/resync"
)

// routeProtocol marks the routes stead owns (rtm_protocol), so that it
// removes its own stale routes and never touches anyone else's.
const routeProtocol netlink.RouteProtocol = 115

// NodeRoute says that pods of CIDR are reached through Via, a node's
// address on the network the nodes share.
type NodeRoute struct {
	CIDR netip.Prefix
	Via  netip.Addr
}

// WantedRoutes is a route to every other node's podCIDR through its
// InternalIP: nodes on one link route to each other's pods directly, as
// flannel's host-gw does, with no encapsulation and no masquerade.
func WantedRoutes(self string, nodes []*corev1.Node) []NodeRoute {
	var routes []NodeRoute
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if via, err := netip.ParseAddr(a.Address); err == nil && via.Is4() && !via.IsLoopback() {
				routes = append(routes, NodeRoute{CIDR: cidr.Masked(), Via: via})
				break
			}
		}
	}
	return routes
}

// RunRoutes keeps this node's routes to other nodes' pods in line with the
// Nodes in factory (start it after), until ctx ends. The routes stay when
// it stops: pods outlive the agent.
func RunRoutes(ctx context.Context, self string, factory informers.SharedInformerFactory) {
	nodes := factory.Core().V1().Nodes()
	lister := nodes.Lister()
	resync.OnChange(ctx, nodes.Informer(), "routes to other nodes' pods", func(context.Context) error {
		return syncRoutes(self, lister)
	})
}

func syncRoutes(self string, lister corelisters.NodeLister) error {
	all, err := lister.List(labels.Everything())
	if err != nil {
		return err
	}
	return ApplyRoutes(WantedRoutes(self, all))
}

// ApplyRoutes makes stead's routes exactly want: each added or replaced,
// and stead's routes not in want removed.
func ApplyRoutes(want []NodeRoute) error {
	wanted := map[netip.Prefix]bool{}
	var errs []error
	for _, r := range want {
		wanted[r.CIDR] = true
		route := &netlink.Route{
			Dst:      ipNet(r.CIDR.Addr(), r.CIDR.Bits()),
			Gw:       net.IP(r.Via.AsSlice()),
			Protocol: routeProtocol,
		}
		if err := netlink.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", r.CIDR, r.Via, err))
		}
	}
	errs = append(errs, removeRoutes(func(dst netip.Prefix) bool { return !wanted[dst] }))
	return errors.Join(errs...)
}

// RemoveRoutes removes stead's routes to pod ranges within clusterCIDR, for
// a node that leaves this machine (--cleanup); other clusters' are kept.
func RemoveRoutes(clusterCIDR netip.Prefix) error {
	return removeRoutes(func(dst netip.Prefix) bool { return clusterCIDR.Contains(dst.Addr()) })
}

// removeRoutes removes stead's routes whose destination remove selects (an
// invalid prefix for one that is not IPv4).
func removeRoutes(remove func(dst netip.Prefix) bool) error {
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		var dst netip.Prefix
		if addr, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok {
			ones, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(addr, ones)
		}
		if !remove(dst) {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("remove route %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}
