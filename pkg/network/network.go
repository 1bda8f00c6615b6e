// Package network gives each pod its place on the node's network: a bridge
// per node, a veth pair per pod with the pod's end as eth0 in the pod's
// network namespace, and an address from the node's podCIDR that stays the
// pod's for as long as the pod exists (kept on disk, so an agent restart
// hands out nothing twice).
package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config describes the node's pod network.
type Config struct {
	// Bridge is the node's bridge; stead0 by default.
	Bridge string
	// PodCIDR is the node's share of the cluster's pod range.
	PodCIDR netip.Prefix
	// StateDir keeps the address of every pod, one file per address.
	StateDir string
	MTU      int
}

// Network is one node's pod network.
type Network struct {
	cfg     Config
	gateway netip.Addr
	bridge  netlink.Link

	mu sync.Mutex // guards what follows
	// owners and used mirror StateDir, read once: allocation stays cheap
	// when a node runs a thousand pods.
	owners map[string]netip.Addr
	used   map[netip.Addr]bool
	// last is the address given out last: the search for a free one
	// starts after it, as CNI's host-local IPAM does, so that a pod's
	// replacement does not get the address its predecessor just freed
	// while other pods' ARP caches still hold the old interface's MAC.
	last netip.Addr
}

// lastReservedFile keeps n.last across restarts (the name host-local uses).
const lastReservedFile = "last_reserved_ip"

// Setup makes the bridge (idempotently) with the first address of the
// podCIDR as the pods' gateway.
func Setup(cfg Config) (*Network, error) {
	if cfg.Bridge == "" {
		cfg.Bridge = "stead0"
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() || cfg.PodCIDR.Bits() > 30 {
		return nil, fmt.Errorf("pod CIDR %q: want an IPv4 prefix of /30 or larger", cfg.PodCIDR)
	}
	cfg.PodCIDR = cfg.PodCIDR.Masked()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	n := &Network{cfg: cfg, gateway: cfg.PodCIDR.Addr().Next()}
	br, err := netlink.LinkByName(cfg.Bridge)
	if _, notFound := err.(netlink.LinkNotFoundError); notFound {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = cfg.Bridge, cfg.MTU
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: %w", cfg.Bridge, err)
		}
		br, err = netlink.LinkByName(cfg.Bridge)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", cfg.Bridge, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: a %s link of that name exists", cfg.Bridge, br.Type())
	}
	gw := &netlink.Addr{IPNet: ipNet(n.gateway, cfg.PodCIDR.Bits())}
	if err := netlink.AddrReplace(br, gw); err != nil {
		return nil, fmt.Errorf("bridge %s address %s: %w", cfg.Bridge, gw, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bridge %s up: %w", cfg.Bridge, err)
	}
	n.bridge = br
	return n, nil
}

// Gateway is the bridge's address, the pods' default route.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Attach puts the pod on the bridge: a veth pair with its pod end as eth0
// in the namespace at netnsPath, the pod's address and a default route.
// Attaching an attached pod returns its address and changes nothing.
func (n *Network) Attach(podUID, netnsPath string) (netip.Addr, error) {
	addr, err := n.allocate(podUID)
	if err != nil {
		return netip.Addr{}, err
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pod network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	inPod, err := netlink.NewHandleAt(ns)
	if err != nil {
		return netip.Addr{}, err
	}
	defer inPod.Close()

	hostName := vethName(podUID)
	if _, err := inPod.LinkByName("eth0"); err != nil {
		// A half-made pair from an interrupted attach goes first.
		if old, err := netlink.LinkByName(hostName); err == nil {
			_ = netlink.LinkDel(old)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.MasterIndex = hostName, n.cfg.MTU, n.bridge.Attrs().Index
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		if err := netlink.LinkAdd(veth); err != nil {
			return netip.Addr{}, fmt.Errorf("veth %s: %w", hostName, err)
		}
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("veth %s: %w", hostName, err)
	}
	// Hairpin: a pod that reaches itself through a Service IP gets its
	// own packets back out of the bridge port they came in on.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return netip.Addr{}, fmt.Errorf("veth %s hairpin: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return netip.Addr{}, err
	}
	eth0, err := inPod.LinkByName("eth0")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("eth0 in %s: %w", netnsPath, err)
	}
	if err := inPod.AddrReplace(eth0, &netlink.Addr{IPNet: ipNet(addr, n.cfg.PodCIDR.Bits())}); err != nil {
		return netip.Addr{}, fmt.Errorf("eth0 address %s: %w", addr, err)
	}
	if err := inPod.LinkSetUp(eth0); err != nil {
		return netip.Addr{}, err
	}
	if lo, err := inPod.LinkByName("lo"); err == nil {
		_ = inPod.LinkSetUp(lo)
	}
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.gateway.AsSlice(), Dst: nil}
	if err := inPod.RouteReplace(route); err != nil {
		return netip.Addr{}, fmt.Errorf("default route via %s: %w", n.gateway, err)
	}
	return addr, nil
}

// Detach removes the pod's veth pair and frees its address. Detaching a
// pod that is not attached is not an error.
func (n *Network) Detach(podUID string) error {
	if link, err := netlink.LinkByName(vethName(podUID)); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			return fmt.Errorf("veth %s: %w", link.Attrs().Name, err)
		}
	}
	return n.release(podUID)
}

// RemoveBridge deletes the node's bridge; pods' veths on it go with it.
func (n *Network) RemoveBridge() error {
	return netlink.LinkDel(n.bridge)
}

// RemoveBridgeNamed deletes the bridge called name if it exists, for a node
// that leaves this machine (--cleanup) without a Network at hand.
func RemoveBridgeNamed(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	} else if err != nil {
		return err
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s is a %s, not a bridge: left alone", name, link.Type())
	}
	return netlink.LinkDel(link)
}

// vethName is the host end's name: derived from the pod's UID so that an
// agent restart finds it, and short enough for IFNAMSIZ.
func vethName(podUID string) string {
	sum := sha256.Sum256([]byte(podUID))
	return "veth" + hex.EncodeToString(sum[:])[:11]
}

func ipNet(addr netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// allocate returns the pod's address, taking the lowest free one for a pod
// that has none. An address is taken by creating its file exclusively, so
// two allocators never hand out one address twice, even across processes.
func (n *Network) allocate(podUID string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.load(); err != nil {
		return netip.Addr{}, err
	}
	if addr, ok := n.owners[podUID]; ok {
		return addr, nil
	}
	first, broadcast := n.gateway.Next(), lastAddr(n.cfg.PodCIDR)
	start := first
	if n.last.IsValid() && n.last.Next().Less(broadcast) && !n.last.Less(first) {
		start = n.last.Next()
	}
	next := start
	for range addressCount(first, broadcast) {
		a := next
		if next = next.Next(); !next.Less(broadcast) {
			next = first
		}
		if n.used[a] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(n.cfg.StateDir, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			n.used[a] = true
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, err = f.WriteString(podUID)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
			return netip.Addr{}, err
		}
		n.owners[podUID], n.used[a], n.last = a, true, a
		// Only a hint: losing it means reusing addresses sooner, no more.
		_ = os.WriteFile(filepath.Join(n.cfg.StateDir, lastReservedFile), []byte(a.String()), 0o600)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s has no free address", n.cfg.PodCIDR)
}

// load reads the allocations on disk once.
func (n *Network) load() error {
	if n.owners != nil {
		return nil
	}
	entries, err := os.ReadDir(n.cfg.StateDir)
	if err != nil {
		return err
	}
	owners, used := map[string]netip.Addr{}, map[netip.Addr]bool{}
	for _, e := range entries {
		addr, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // a temporary or foreign file
		}
		owner, err := os.ReadFile(filepath.Join(n.cfg.StateDir, e.Name()))
		if err != nil {
			return err
		}
		used[addr] = true
		if uid := strings.TrimSpace(string(owner)); uid != "" {
			owners[uid] = addr
		}
	}
	n.owners, n.used = owners, used
	if data, err := os.ReadFile(filepath.Join(n.cfg.StateDir, lastReservedFile)); err == nil {
		n.last, _ = netip.ParseAddr(strings.TrimSpace(string(data)))
	}
	return nil
}

// addressCount is how many addresses lie in [first, end).
func addressCount(first, end netip.Addr) int {
	f, e := first.As4(), end.As4()
	return int(uint32(e[0])<<24|uint32(e[1])<<16|uint32(e[2])<<8|uint32(e[3])) -
		int(uint32(f[0])<<24|uint32(f[1])<<16|uint32(f[2])<<8|uint32(f[3]))
}

func (n *Network) release(podUID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.load(); err != nil {
		return err
	}
	addr, ok := n.owners[podUID]
	if !ok {
		return nil
	}
	if err := os.Remove(filepath.Join(n.cfg.StateDir, addr.String())); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(n.owners, podUID)
	delete(n.used, addr)
	return nil
}

// lastAddr is the prefix's broadcast address, which no pod may have.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<hostBits - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Address is the pod's address, if it has one.
func (n *Network) Address(podUID string) (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.load() != nil {
		return netip.Addr{}, false
	}
	addr, ok := n.owners[podUID]
	return addr, ok
}
