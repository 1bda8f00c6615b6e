package proxy

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// masqueradeMark marks connections that a pod makes to a Service that sends
// them back to the same pod: without masquerading, the pod would answer
// itself directly and the reply would not match the connection it opened.
const masqueradeMark = "0x4000"

// servicePort is one port of one Service with the endpoints it balances to.
type servicePort struct {
	namespace, name, portName string
	protocol                  corev1.Protocol
	clusterIPs                []netip.Addr
	port                      int32
	nodePort                  int32
	endpoints                 []endpoint
}

type endpoint struct {
	ip   netip.Addr
	port int32
}

// servicePorts turns Services and their EndpointSlices into the ports that
// need rules. Headless and ExternalName Services get none: DNS serves them.
func servicePorts(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) []servicePort {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range endpointSlices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		bySvc[s.Namespace+"/"+svc] = append(bySvc[s.Namespace+"/"+svc], s)
	}
	var out []servicePort
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		var ips []netip.Addr
		for _, s := range svc.Spec.ClusterIPs {
			if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
				ips = append(ips, ip)
			}
		}
		for _, p := range svc.Spec.Ports {
			sp := servicePort{
				namespace: svc.Namespace, name: svc.Name, portName: p.Name, protocol: p.Protocol,
				clusterIPs: ips, port: p.Port, nodePort: p.NodePort,
			}
			sp.endpoints = readyEndpoints(bySvc[svc.Namespace+"/"+svc.Name], p.Name, p.Protocol)
			out = append(out, sp)
		}
	}
	return out
}

// readyEndpoints are the ready addresses serving the named port. Ready is
// what the EndpointSlice says: nil counts as ready, as the API defines.
func readyEndpoints(endpointSlices []*discoveryv1.EndpointSlice, portName string, protocol corev1.Protocol) []endpoint {
	var out []endpoint
	seen := map[endpoint]bool{}
	for _, s := range endpointSlices {
		var port int32
		for _, p := range s.Ports {
			name, proto := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == portName && proto == protocol && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				e := endpoint{ip: ip, port: port}
				if !seen[e] {
					seen[e] = true
					out = append(out, e)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int {
		if c := a.ip.Compare(b.ip); c != 0 {
			return c
		}
		return int(a.port - b.port)
	})
	return out
}

// chainName is short (nft limits names) and stable for one service port.
func chainName(prefix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return prefix + "-" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:16])
}

func protoName(p corev1.Protocol) string { return strings.ToLower(string(p)) }

// hostPort is a pod's containerPort published on the node (hostPort).
type hostPort struct {
	protocol      corev1.Protocol
	hostIP        netip.Addr // the zero Addr: every address of the node
	port          int32
	podIP         netip.Addr
	containerPort int32
	pod           string // namespace/name, for the rule's comment
}

// hostPorts are the published ports of the pods that run on the node, as
// the CNI portmap plugin publishes them for the kubelet. A port two pods
// claim (the scheduler's NodePorts filter prevents it) goes to the first
// by name.
func hostPorts(pods []*corev1.Pod) []hostPort {
	var out []hostPort
	taken := map[string]bool{}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	for _, pod := range pods {
		podIP, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil || !podIP.Is4() || pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.HostPort == 0 {
					continue
				}
				hp := hostPort{protocol: cmp.Or(p.Protocol, corev1.ProtocolTCP), port: p.HostPort, podIP: podIP, containerPort: p.ContainerPort, pod: pod.Namespace + "/" + pod.Name}
				if ip, err := netip.ParseAddr(p.HostIP); err == nil && ip.Is4() && !ip.IsUnspecified() {
					hp.hostIP = ip
				}
				key := fmt.Sprint(hp.protocol, hp.port)
				if taken[key] {
					continue
				}
				taken[key] = true
				out = append(out, hp)
			}
		}
	}
	return out
}

// ruleSet is everything the table is built from.
type ruleSet struct {
	serviceCIDR netip.Prefix
	// clusterCIDR, when valid, is the pods' range: their connections to
	// anywhere outside it leave with the node's address (masquerade).
	clusterCIDR netip.Prefix
	ports       []servicePort
	hostPorts   []hostPort
}

// writeRules replaces the whole table with the rules of rs in one
// transaction.
func writeRules(tx *knftables.Transaction, rs ruleSet) {
	newTableContent(rs).writeAll(tx)
}

// tableContent is what the table holds, in two parts: the base (hooks,
// maps, hostPorts, the refusal of untranslated Service IPs), small and
// rebuilt whole whenever its inputs change; and the chains and map elements
// of the Service ports, which a change of one Service touches only a few
// of, so that the transaction after an EndpointSlice update, and the time
// nft takes to apply it, does not grow with the cluster (kube-proxy's
// nftables mode syncs partially for the same reason).
type tableContent struct {
	serviceCIDR, clusterCIDR netip.Prefix
	hostPorts                []hostPort
	chains                   map[string]chainContent
	elements                 map[string]*knftables.Element // by map and key
}

type chainContent struct {
	comment string // "" for none; set when the chain is made, as its name says the same
	rules   []string
}

func newTableContent(rs ruleSet) *tableContent {
	c := &tableContent{
		serviceCIDR: rs.serviceCIDR,
		clusterCIDR: rs.clusterCIDR,
		hostPorts:   rs.hostPorts,
		chains:      map[string]chainContent{},
		elements:    map[string]*knftables.Element{},
	}
	for _, sp := range rs.ports {
		if len(sp.endpoints) == 0 {
			continue
		}
		svcChain := chainName("svc", sp.namespace, sp.name, sp.portName, string(sp.protocol))
		var choices []string
		for i, ep := range sp.endpoints {
			epChain := chainName("ep", sp.namespace, sp.name, sp.portName, string(sp.protocol), ep.ip.String(), fmt.Sprint(ep.port))
			c.chains[epChain] = chainContent{rules: []string{
				fmt.Sprintf("ip saddr %s meta mark set meta mark | %s", ep.ip, masqueradeMark),
				fmt.Sprintf("meta l4proto %s dnat to %s:%d", protoName(sp.protocol), ep.ip, ep.port),
			}}
			choices = append(choices, fmt.Sprintf("%d : goto %s", i, epChain))
		}
		c.chains[svcChain] = chainContent{
			comment: fmt.Sprintf("%s/%s:%s", sp.namespace, sp.name, sp.portName),
			rules:   []string{fmt.Sprintf("numgen random mod %d vmap { %s }", len(choices), strings.Join(choices, " , "))},
		}
		for _, ip := range sp.clusterIPs {
			c.addElement(&knftables.Element{Map: "service-ips", Key: []string{ip.String(), protoName(sp.protocol), fmt.Sprint(sp.port)}, Value: []string{"goto " + svcChain}})
		}
		if sp.nodePort != 0 {
			c.addElement(&knftables.Element{Map: "service-nodeports", Key: []string{protoName(sp.protocol), fmt.Sprint(sp.nodePort)}, Value: []string{"goto " + svcChain}})
		}
	}
	return c
}

func (c *tableContent) addElement(e *knftables.Element) {
	c.elements[e.Map+" "+strings.Join(e.Key, " . ")] = e
}

// sameBase reports whether old's base is c's, so that only Service chains
// and elements differ.
func (c *tableContent) sameBase(old *tableContent) bool {
	return old.serviceCIDR == c.serviceCIDR && old.clusterCIDR == c.clusterCIDR && slices.Equal(old.hostPorts, c.hostPorts)
}

// writeAll replaces the whole table: the kernel switches from the old rules
// to the new at once, and a rebuild is idempotent.
func (c *tableContent) writeAll(tx *knftables.Transaction) {
	c.writeBase(tx)
	names := slices.Sorted(maps.Keys(c.chains))
	// Every chain is declared before any rule names it in a jump.
	for _, name := range names {
		tx.Add(c.chain(name))
	}
	for _, name := range names {
		c.writeChainRules(tx, name)
	}
	for _, key := range slices.Sorted(maps.Keys(c.elements)) {
		tx.Add(c.elements[key])
	}
}

// writeChanges turns the table from old's content to c's, which has the same
// base, and reports whether there was anything to change. The order keeps
// every reference valid at each step: chains are made before they are named,
// and emptied before they are removed.
func (c *tableContent) writeChanges(tx *knftables.Transaction, old *tableContent) bool {
	var added, changed, removed []string
	for _, name := range slices.Sorted(maps.Keys(c.chains)) {
		was, ok := old.chains[name]
		switch {
		case !ok:
			added = append(added, name)
		case !slices.Equal(was.rules, c.chains[name].rules):
			changed = append(changed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old.chains)) {
		if _, ok := c.chains[name]; !ok {
			removed = append(removed, name)
		}
	}
	var addElements, deleteElements []*knftables.Element
	for _, key := range slices.Sorted(maps.Keys(c.elements)) {
		e, was := c.elements[key], old.elements[key]
		if was != nil && slices.Equal(was.Value, e.Value) {
			continue
		}
		if was != nil {
			deleteElements = append(deleteElements, was)
		}
		addElements = append(addElements, e)
	}
	for _, key := range slices.Sorted(maps.Keys(old.elements)) {
		if _, ok := c.elements[key]; !ok {
			deleteElements = append(deleteElements, old.elements[key])
		}
	}
	if len(added)+len(changed)+len(removed)+len(addElements)+len(deleteElements) == 0 {
		return false
	}

	for _, name := range added {
		tx.Add(c.chain(name))
	}
	for _, name := range changed {
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, name := range slices.Concat(added, changed) {
		c.writeChainRules(tx, name)
	}
	for _, e := range deleteElements {
		tx.Delete(e)
	}
	for _, e := range addElements {
		tx.Add(e)
	}
	for _, name := range removed {
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, name := range removed {
		tx.Delete(&knftables.Chain{Name: name})
	}
	return true
}

func (c *tableContent) chain(name string) *knftables.Chain {
	chain := &knftables.Chain{Name: name}
	if comment := c.chains[name].comment; comment != "" {
		chain.Comment = knftables.PtrTo(comment)
	}
	return chain
}

func (c *tableContent) writeChainRules(tx *knftables.Transaction, name string) {
	for _, rule := range c.chains[name].rules {
		tx.Add(&knftables.Rule{Chain: name, Rule: rule})
	}
}

// writeBase makes the table anew with everything but the Service ports'
// chains and elements.
func (c *tableContent) writeBase(tx *knftables.Transaction) {
	// Adding then deleting removes whatever the table held, even if it did
	// not exist; it is made again below.
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("stead Service proxy: ClusterIP and NodePort")})

	tx.Add(&knftables.Map{Name: "service-ips", Type: "ipv4_addr . inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Map{Name: "service-nodeports", Type: "inet_proto . inet_service : verdict"})
	tx.Add(&knftables.Chain{Name: "services"})
	tx.Add(&knftables.Rule{Chain: "services", Rule: "ip daddr . meta l4proto . th dport vmap @service-ips"})
	tx.Add(&knftables.Rule{Chain: "services", Rule: "fib daddr type local meta l4proto . th dport vmap @service-nodeports"})

	for _, hook := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{"nat-prerouting", knftables.PreroutingHook}, {"nat-output", knftables.OutputHook}} {
		tx.Add(&knftables.Chain{Name: hook.name, Type: knftables.PtrTo(knftables.NATType), Hook: knftables.PtrTo(hook.hook), Priority: knftables.PtrTo(knftables.DNATPriority)})
		tx.Add(&knftables.Rule{Chain: hook.name, Rule: "jump services"})
	}
	tx.Add(&knftables.Chain{Name: "nat-postrouting", Type: knftables.PtrTo(knftables.NATType), Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	tx.Add(&knftables.Rule{Chain: "nat-postrouting", Rule: "meta mark & " + masqueradeMark + " != 0 masquerade"})
	if c.clusterCIDR.IsValid() {
		// Other nodes route the cluster range back; nothing else does.
		tx.Add(&knftables.Rule{Chain: "nat-postrouting", Rule: fmt.Sprintf("ip saddr %s ip daddr != %s masquerade", c.clusterCIDR, c.clusterCIDR)})
	}

	tx.Add(&knftables.Map{Name: "host-ports", Type: "inet_proto . inet_service : verdict"})
	for _, hp := range c.hostPorts {
		chain := chainName("hp", string(hp.protocol), hp.hostIP.String(), fmt.Sprint(hp.port))
		tx.Add(&knftables.Chain{Name: chain, Comment: knftables.PtrTo(fmt.Sprintf("hostPort %d of %s", hp.port, hp.pod))})
		tx.Add(&knftables.Rule{Chain: chain, Rule: fmt.Sprintf("ip saddr %s meta mark set meta mark | %s", hp.podIP, masqueradeMark)})
		tx.Add(&knftables.Rule{Chain: chain, Rule: fmt.Sprintf("meta l4proto %s dnat to %s:%d", protoName(hp.protocol), hp.podIP, hp.containerPort)})
		if hp.hostIP.IsValid() {
			tx.Add(&knftables.Rule{Chain: "services", Rule: fmt.Sprintf("ip daddr %s meta l4proto %s th dport %d goto %s", hp.hostIP, protoName(hp.protocol), hp.port, chain)})
		} else {
			tx.Add(&knftables.Element{Map: "host-ports", Key: []string{protoName(hp.protocol), fmt.Sprint(hp.port)}, Value: []string{"goto " + chain}})
		}
	}
	tx.Add(&knftables.Rule{Chain: "services", Rule: "fib daddr type local meta l4proto . th dport vmap @host-ports"})

	// A Service IP that no rule translated (no ready endpoint, or a port
	// the Service lacks) is refused here, in the forward and output paths,
	// so it is never routed off the node.
	for _, hook := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{"filter-forward", knftables.ForwardHook}, {"filter-output", knftables.OutputHook}} {
		tx.Add(&knftables.Chain{Name: hook.name, Type: knftables.PtrTo(knftables.FilterType), Hook: knftables.PtrTo(hook.hook), Priority: knftables.PtrTo(knftables.FilterPriority)})
		tx.Add(&knftables.Rule{Chain: hook.name, Rule: fmt.Sprintf("ip daddr %s ct status & dnat == 0 meta l4proto tcp reject with tcp reset", c.serviceCIDR)})
		tx.Add(&knftables.Rule{Chain: hook.name, Rule: fmt.Sprintf("ip daddr %s ct status & dnat == 0 reject", c.serviceCIDR)})
	}
}
