package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// index is what queries read: every owner name of the zone and every
// reverse name the cluster answers, each with its records prebuilt.
type index struct {
	mu         sync.RWMutex
	names      map[string]*node // forward names, lower case, fully qualified
	ptrs       map[string]*node // in-addr.arpa / ip6.arpa names
	clusterIPs map[netip.Addr]struct{}
	soa        []dns.RR // the zone SOA, for the authority section of negative answers
	// generation counts the changes, each made under mu for writing: an
	// answer packed from the index is current while it stays the same.
	generation atomic.Uint64
}

// lookup returns the node at name (lower case), or nil, and the zone SOA.
func (idx *index) lookup(name string) (*node, []dns.RR) {
	idx.mu.RLock()
	n, soa := idx.names[name], idx.soa
	idx.mu.RUnlock()
	return n, soa
}

func (idx *index) lookupPTR(name string) *node {
	idx.mu.RLock()
	n := idx.ptrs[name]
	idx.mu.RUnlock()
	return n
}

func (idx *index) isClusterIP(ip netip.Addr) bool {
	idx.mu.RLock()
	_, ok := idx.clusterIPs[ip]
	idx.mu.RUnlock()
	return ok
}

// controller keeps the index in step with the informers. Its own state is
// the latest object of each kind, guarded by mu so that the three informers'
// handlers, which run on separate goroutines, rebuild one Service at a time.
type controller struct {
	mu  sync.Mutex
	b   builder
	idx *index

	services      map[string]*corev1.Service                       // by namespace/name
	slices        map[string]map[string]*discoveryv1.EndpointSlice // service key → slice key → slice
	sliceService  map[string]string                                // slice key → service key
	namespaces    map[string]bool
	servicesPerNS map[string]int
	built         map[string]*serviceRecords     // service key → what it put in the index
	ptrOwners     map[string]map[string][]dns.RR // reverse name → service key → PTRs
	serial        uint32
}

func newController(b builder) *controller {
	c := &controller{
		b: b,
		idx: &index{
			names:      map[string]*node{},
			ptrs:       map[string]*node{},
			clusterIPs: map[netip.Addr]struct{}{},
		},
		services:      map[string]*corev1.Service{},
		slices:        map[string]map[string]*discoveryv1.EndpointSlice{},
		sliceService:  map[string]string{},
		namespaces:    map[string]bool{},
		servicesPerNS: map[string]int{},
		built:         map[string]*serviceRecords{},
		ptrOwners:     map[string]map[string][]dns.RR{},
	}
	c.idx.names["dns-version."+b.zone] = (&node{txt: []dns.RR{&dns.TXT{
		Hdr: b.header("dns-version."+b.zone, dns.TypeTXT),
		Txt: []string{schemaVersion},
	}}}).seal()
	c.idx.names["svc."+b.zone] = emptyNonTerminal
	c.idx.names["pod."+b.zone] = emptyNonTerminal
	c.bumpSerialLocked()
	return c
}

// bumpSerialLocked moves the SOA serial forward, as secondaries and caches
// that compare serials expect after any change. Callers hold idx.mu for
// writing, or own the index exclusively.
func (c *controller) bumpSerialLocked() {
	serial := uint32(time.Now().Unix())
	if serial <= c.serial {
		serial = c.serial + 1
	}
	c.serial = serial
	soa := []dns.RR{c.b.soa(serial)}
	c.idx.soa = soa
	c.idx.names[c.b.zone] = (&node{soa: soa}).seal()
	c.idx.generation.Add(1)
}

func (c *controller) handlers() (services, endpointSlices, namespaces cache.ResourceEventHandler) {
	services = cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.setService(obj.(*corev1.Service)) },
		UpdateFunc: func(_, obj any) { c.setService(obj.(*corev1.Service)) },
		DeleteFunc: func(obj any) {
			if svc, ok := untombstone(obj).(*corev1.Service); ok {
				c.deleteService(svc.Namespace, svc.Name)
			}
		},
	}
	endpointSlices = cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.setSlice(obj.(*discoveryv1.EndpointSlice)) },
		UpdateFunc: func(_, obj any) { c.setSlice(obj.(*discoveryv1.EndpointSlice)) },
		DeleteFunc: func(obj any) {
			if slice, ok := untombstone(obj).(*discoveryv1.EndpointSlice); ok {
				c.deleteSlice(slice.Namespace, slice.Name)
			}
		},
	}
	namespaces = cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.setNamespace(obj.(*corev1.Namespace).Name, true) },
		UpdateFunc: func(_, obj any) { c.setNamespace(obj.(*corev1.Namespace).Name, true) },
		DeleteFunc: func(obj any) {
			if ns, ok := untombstone(obj).(*corev1.Namespace); ok {
				c.setNamespace(ns.Name, false)
			}
		},
	}
	return services, endpointSlices, namespaces
}

// untombstone unwraps the object of a delete the informer learnt of only by
// relisting.
func untombstone(obj any) any {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tombstone.Obj
	}
	return obj
}

func (c *controller) setService(svc *corev1.Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := svc.Namespace + "/" + svc.Name
	if c.services[key] == nil {
		c.servicesPerNS[svc.Namespace]++
	}
	c.services[key] = svc
	c.syncLocked(key, svc.Namespace)
}

func (c *controller) deleteService(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := namespace + "/" + name
	if c.services[key] == nil {
		return
	}
	delete(c.services, key)
	if c.servicesPerNS[namespace]--; c.servicesPerNS[namespace] <= 0 {
		delete(c.servicesPerNS, namespace)
	}
	c.syncLocked(key, namespace)
}

func (c *controller) setSlice(slice *discoveryv1.EndpointSlice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sliceKey := slice.Namespace + "/" + slice.Name
	svcKey := ""
	if name := slice.Labels[discoveryv1.LabelServiceName]; name != "" {
		svcKey = slice.Namespace + "/" + name
	}
	if old := c.sliceService[sliceKey]; old != "" && old != svcKey {
		c.forgetSliceLocked(old, sliceKey)
		c.syncLocked(old, slice.Namespace)
	}
	if svcKey == "" {
		delete(c.sliceService, sliceKey)
		return
	}
	c.sliceService[sliceKey] = svcKey
	if c.slices[svcKey] == nil {
		c.slices[svcKey] = map[string]*discoveryv1.EndpointSlice{}
	}
	c.slices[svcKey][sliceKey] = slice
	c.syncLocked(svcKey, slice.Namespace)
}

func (c *controller) deleteSlice(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sliceKey := namespace + "/" + name
	svcKey := c.sliceService[sliceKey]
	if svcKey == "" {
		return
	}
	delete(c.sliceService, sliceKey)
	c.forgetSliceLocked(svcKey, sliceKey)
	c.syncLocked(svcKey, namespace)
}

func (c *controller) forgetSliceLocked(svcKey, sliceKey string) {
	delete(c.slices[svcKey], sliceKey)
	if len(c.slices[svcKey]) == 0 {
		delete(c.slices, svcKey)
	}
}

func (c *controller) setNamespace(name string, exists bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exists {
		c.namespaces[name] = true
	} else {
		delete(c.namespaces, name)
	}
	c.idx.mu.Lock()
	c.syncNamespaceLocked(name)
	c.idx.mu.Unlock()
}

// syncNamespaceLocked publishes <ns>.svc.<zone> and <ns>.pod.<zone> while the
// namespace exists, so that they answer NODATA rather than NXDOMAIN and so
// that pod names in it resolve. A Service seen before its Namespace counts
// as proof of the namespace: the informers do not deliver in order.
func (c *controller) syncNamespaceLocked(ns string) {
	svcName, podName := ns+".svc."+c.b.zone, ns+".pod."+c.b.zone
	if c.namespaces[ns] || c.servicesPerNS[ns] > 0 {
		c.idx.names[svcName] = emptyNonTerminal
		c.idx.names[podName] = emptyNonTerminal
	} else {
		delete(c.idx.names, svcName)
		delete(c.idx.names, podName)
	}
	c.bumpSerialLocked()
}

// syncLocked rebuilds the records of one Service and swaps them into the
// index. The build runs before the index lock is taken so that queries
// wait only for the map updates.
func (c *controller) syncLocked(key, namespace string) {
	old := c.built[key]
	rec := &serviceRecords{}
	if svc := c.services[key]; svc != nil {
		rec = c.b.service(svc, c.sliceList(key))
	}

	ptrNodes := map[string]*node{}
	touch := func(reverse string) {
		owners := c.ptrOwners[reverse]
		if rrs, ok := rec.ptrs[reverse]; ok {
			if owners == nil {
				owners = map[string][]dns.RR{}
				c.ptrOwners[reverse] = owners
			}
			owners[key] = rrs
		} else {
			delete(owners, key)
		}
		if len(owners) == 0 {
			delete(c.ptrOwners, reverse)
			ptrNodes[reverse] = nil
			return
		}
		keys := make([]string, 0, len(owners))
		for k := range owners {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		n := &node{}
		for _, k := range keys {
			n.ptr = append(n.ptr, owners[k]...)
		}
		ptrNodes[reverse] = n.seal()
	}
	if old != nil {
		for reverse := range old.ptrs {
			touch(reverse)
		}
	}
	for reverse := range rec.ptrs {
		if _, done := ptrNodes[reverse]; !done {
			touch(reverse)
		}
	}

	c.idx.mu.Lock()
	defer c.idx.mu.Unlock()
	if old != nil {
		for name := range old.names {
			delete(c.idx.names, name)
		}
		for _, ip := range old.clusterIPs {
			delete(c.idx.clusterIPs, ip)
		}
	}
	for name, n := range rec.names {
		c.idx.names[name] = n
	}
	for _, ip := range rec.clusterIPs {
		c.idx.clusterIPs[ip] = struct{}{}
	}
	for reverse, n := range ptrNodes {
		if n == nil {
			delete(c.idx.ptrs, reverse)
		} else {
			c.idx.ptrs[reverse] = n
		}
	}
	if len(rec.names) == 0 && len(rec.ptrs) == 0 {
		delete(c.built, key)
	} else {
		c.built[key] = rec
	}
	c.syncNamespaceLocked(namespace)
}

// sliceList returns the EndpointSlices of a Service in name order, which
// keeps the records stable across rebuilds.
func (c *controller) sliceList(svcKey string) []*discoveryv1.EndpointSlice {
	bySlice := c.slices[svcKey]
	list := make([]*discoveryv1.EndpointSlice, 0, len(bySlice))
	for _, slice := range bySlice {
		list = append(list, slice)
	}
	slices.SortFunc(list, func(x, y *discoveryv1.EndpointSlice) int { return strings.Compare(x.Name, y.Name) })
	return list
}
