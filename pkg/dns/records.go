package dns

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// schemaVersion is the version of the Kubernetes DNS schema served, answered
// at dns-version.<zone>.
const schemaVersion = "1.1.0"

// node holds every record of one owner name. Nodes are built on informer
// events and never modified afterwards, so queries share them without locks
// or copies; the slices are clipped so that an append by a reader copies
// instead of writing into a neighbour's backing array.
type node struct {
	a, aaaa, cname, srv, ptr, txt, soa []dns.RR
	// extra is the additional section of an SRV answer: the addresses of
	// its targets, which saves the client a second round trip.
	extra []dns.RR
	all   []dns.RR
}

// emptyNonTerminal is a name that exists only because names below it do
// (<ns>.svc.<zone>, _tcp.<svc>.<ns>.svc.<zone>): queries for it get NODATA,
// not NXDOMAIN (RFC 8020).
var emptyNonTerminal = &node{}

func (n *node) records(qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return n.a
	case dns.TypeAAAA:
		return n.aaaa
	case dns.TypeSRV:
		return n.srv
	case dns.TypePTR:
		return n.ptr
	case dns.TypeTXT:
		return n.txt
	case dns.TypeCNAME:
		return n.cname
	case dns.TypeSOA:
		return n.soa
	case dns.TypeANY:
		return n.all
	}
	return nil
}

// seal clips every slice and collects them for ANY.
func (n *node) seal() *node {
	for _, rrs := range []*[]dns.RR{&n.a, &n.aaaa, &n.cname, &n.srv, &n.ptr, &n.txt, &n.soa, &n.extra} {
		*rrs = slices.Clip(*rrs)
	}
	n.all = slices.Clip(slices.Concat(n.cname, n.a, n.aaaa, n.srv, n.ptr, n.txt, n.soa))
	return n
}

// serviceRecords is everything one Service contributes to the index. The
// forward names all lie under <svc>.<ns>.svc.<zone> and so belong to this
// Service alone; reverse names may be shared (one pod IP behind two headless
// Services) and are merged by the controller.
type serviceRecords struct {
	names      map[string]*node
	ptrs       map[string][]dns.RR
	clusterIPs []netip.Addr
}

// builder turns API objects into records for one zone.
type builder struct {
	zone string // lower case, fully qualified: "cluster.local."
	ttl  uint32
}

func (b builder) header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: b.ttl}
}

func (b builder) address(name string, ip netip.Addr) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: b.header(name, dns.TypeA), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: b.header(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
}

func (b builder) soa(serial uint32) *dns.SOA {
	// Refresh, retry and expire mean nothing without secondaries; these are
	// CoreDNS's values. The negative TTL is the record TTL so that a name
	// that appears is not hidden longer than a record that changes.
	return &dns.SOA{
		Hdr:     b.header(b.zone, dns.TypeSOA),
		Ns:      "ns.dns." + b.zone,
		Mbox:    "hostmaster." + b.zone,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  b.ttl,
	}
}

func (b builder) serviceName(svc *corev1.Service) string {
	return svc.Name + "." + svc.Namespace + ".svc." + b.zone
}

// service builds the records of svc; endpointSlices are the EndpointSlices labelled
// with its name.
func (b builder) service(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) *serviceRecords {
	rec := &serviceRecords{names: map[string]*node{}, ptrs: map[string][]dns.RR{}}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		b.externalName(rec, svc)
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		b.headless(rec, svc, endpointSlices)
	default:
		b.clusterIP(rec, svc)
	}
	for _, n := range rec.names {
		if n != emptyNonTerminal { // shared by every Service, and already final
			n.seal()
		}
	}
	return rec
}

func (b builder) externalName(rec *serviceRecords, svc *corev1.Service) {
	name := b.serviceName(svc)
	target := strings.ToLower(strings.TrimSuffix(svc.Spec.ExternalName, "."))
	// An IP address in externalName is accepted by the API server but is
	// not a name a CNAME may point at; like CoreDNS, serve nothing for it.
	if _, ok := dns.IsDomainName(target); !ok || target == "" || net.ParseIP(target) != nil {
		rec.names[name] = &node{}
		return
	}
	rec.names[name] = &node{cname: []dns.RR{&dns.CNAME{Hdr: b.header(name, dns.TypeCNAME), Target: dns.Fqdn(target)}}}
}

func (b builder) clusterIP(rec *serviceRecords, svc *corev1.Service) {
	name := b.serviceName(svc)
	svcNode := &node{}
	rec.names[name] = svcNode

	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		rec.clusterIPs = append(rec.clusterIPs, ip)
		rr := b.address(name, ip)
		if ip.Is4() {
			svcNode.a = append(svcNode.a, rr)
		} else {
			svcNode.aaaa = append(svcNode.aaaa, rr)
		}
		reverse := reverseName(ip)
		rec.ptrs[reverse] = append(rec.ptrs[reverse], &dns.PTR{Hdr: b.header(reverse, dns.TypePTR), Ptr: name})
	}

	for _, port := range svc.Spec.Ports {
		if port.Name == "" {
			continue // the spec gives unnamed ports no SRV record
		}
		srvName, protoName := srvNames(port.Name, port.Protocol, name)
		rec.names[protoName] = emptyNonTerminal
		rec.names[srvName] = &node{
			srv: []dns.RR{&dns.SRV{
				Hdr:      b.header(srvName, dns.TypeSRV),
				Priority: 0,
				Weight:   100,
				Port:     uint16(port.Port),
				Target:   name,
			}},
			extra: slices.Concat(svcNode.a, svcNode.aaaa),
		}
	}
}

// readyEndpoint says whether ep is published in DNS. A nil ready condition
// means unknown and is to be read as ready (discovery/v1 API doc).
func readyEndpoint(svc *corev1.Service, ep *discoveryv1.Endpoint) bool {
	if svc.Spec.PublishNotReadyAddresses {
		return true
	}
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

func (b builder) headless(rec *serviceRecords, svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) {
	name := b.serviceName(svc)
	svcNode := &node{}
	hosts := map[string]*node{}
	srvs := map[string]*node{}
	seenIP := map[netip.Addr]bool{}
	type srvKey struct {
		target string
		port   int32
	}
	seenSRV := map[string]map[srvKey]bool{}

	for _, slice := range endpointSlices {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			if !readyEndpoint(svc, ep) {
				continue
			}
			for _, s := range ep.Addresses {
				ip, err := netip.ParseAddr(s)
				if err != nil {
					continue
				}
				ip = ip.Unmap()
				// The spec's hostname: the endpoint's own, else an
				// identifier derived from the address, as CoreDNS does.
				label := ipLabel(ip)
				if ep.Hostname != nil && *ep.Hostname != "" {
					label = strings.ToLower(*ep.Hostname)
				}
				host := label + "." + name

				hostNode := hosts[host]
				if hostNode == nil {
					hostNode = &node{}
					hosts[host] = hostNode
				}
				// The same address may be listed by two slices while
				// the controller moves it; answer it once.
				if !seenIP[ip] {
					seenIP[ip] = true
					appendAddress(svcNode, b.address(name, ip))
					appendAddress(hostNode, b.address(host, ip))
					reverse := reverseName(ip)
					rec.ptrs[reverse] = []dns.RR{&dns.PTR{Hdr: b.header(reverse, dns.TypePTR), Ptr: host}}
				}

				for _, port := range slice.Ports {
					if port.Name == nil || *port.Name == "" || port.Port == nil {
						continue
					}
					protocol := corev1.ProtocolTCP
					if port.Protocol != nil {
						protocol = *port.Protocol
					}
					srvName, protoName := srvNames(*port.Name, protocol, name)
					key := srvKey{host, *port.Port}
					if seenSRV[srvName][key] {
						continue
					}
					if seenSRV[srvName] == nil {
						seenSRV[srvName] = map[srvKey]bool{}
						srvs[srvName] = &node{}
						rec.names[protoName] = emptyNonTerminal
					}
					seenSRV[srvName][key] = true
					srvs[srvName].srv = append(srvs[srvName].srv, &dns.SRV{
						Hdr:    b.header(srvName, dns.TypeSRV),
						Port:   uint16(*port.Port),
						Target: host,
					})
				}
			}
		}
	}

	if len(seenIP) == 0 {
		// Spec 2.4.1: a headless Service without ready endpoints is NXDOMAIN.
		return
	}
	sortAddresses(svcNode.a)
	sortAddresses(svcNode.aaaa)
	rec.names[name] = svcNode
	for host, n := range hosts {
		sortAddresses(n.a)
		sortAddresses(n.aaaa)
		rec.names[host] = n
	}
	for srvName, n := range srvs {
		slices.SortFunc(n.srv, func(x, y dns.RR) int {
			return cmp.Or(strings.Compare(x.(*dns.SRV).Target, y.(*dns.SRV).Target),
				cmp.Compare(x.(*dns.SRV).Port, y.(*dns.SRV).Port))
		})
		// Equal weights spread clients evenly over the endpoints (RFC 2782).
		weight := uint16(max(1, 100/len(n.srv)))
		var targets []string
		for _, rr := range n.srv {
			srv := rr.(*dns.SRV)
			srv.Weight = weight
			if !slices.Contains(targets, srv.Target) {
				targets = append(targets, srv.Target)
				n.extra = append(n.extra, hosts[srv.Target].a...)
				n.extra = append(n.extra, hosts[srv.Target].aaaa...)
			}
		}
		rec.names[srvName] = n
	}
}

func appendAddress(n *node, rr dns.RR) {
	if rr.Header().Rrtype == dns.TypeA {
		n.a = append(n.a, rr)
	} else {
		n.aaaa = append(n.aaaa, rr)
	}
}

// sortAddresses orders A or AAAA records by address so that an unchanged
// set of endpoints always yields the same records.
func sortAddresses(rrs []dns.RR) {
	slices.SortFunc(rrs, func(x, y dns.RR) int {
		return rrAddr(x).Compare(rrAddr(y))
	})
}

func rrAddr(rr dns.RR) netip.Addr {
	switch rr := rr.(type) {
	case *dns.A:
		ip, _ := netip.AddrFromSlice(rr.A.To4())
		return ip
	case *dns.AAAA:
		ip, _ := netip.AddrFromSlice(rr.AAAA)
		return ip
	}
	return netip.Addr{}
}

// srvNames returns _<port>._<proto>.<svc> and its parent _<proto>.<svc>.
func srvNames(port string, protocol corev1.Protocol, service string) (srvName, protoName string) {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	protoName = "_" + strings.ToLower(string(protocol)) + "." + service
	return "_" + strings.ToLower(port) + "." + protoName, protoName
}

// ipLabel is the DNS label CoreDNS derives from an endpoint address when the
// endpoint has no hostname: 10.0.0.7 → 10-0-0-7, fd00::7 → fd00--7.
func ipLabel(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	return strings.ReplaceAll(ip.String(), ":", "-")
}

func reverseName(ip netip.Addr) string {
	name, _ := dns.ReverseAddr(ip.String())
	return name
}

// podAddress parses the first label of <a-b-c-d>.<ns>.pod.<zone> (or the
// IPv6 form with '-' for ':') the way CoreDNS does in "pods insecure" mode.
func podAddress(label string) (netip.Addr, bool) {
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
		return ip, err == nil && ip.Is4()
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	return ip, err == nil && ip.Is6()
}
