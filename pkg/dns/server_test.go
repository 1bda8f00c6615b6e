package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Fixtures -----------------------------------------------------------------

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func clusterIPService(ns, name string, ips []string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  ips[0],
			ClusterIPs: ips,
			Ports:      ports,
		},
	}
}

func headlessService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	svc := clusterIPService(ns, name, []string{corev1.ClusterIPNone}, ports...)
	return svc
}

func port(name string, number int32, protocol corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, Protocol: protocol}
}

type endpoint struct {
	ip       string
	hostname string
	ready    *bool // nil: condition unknown
}

func endpointSlice(ns, name, service string, addressType discoveryv1.AddressType, ports []discoveryv1.EndpointPort, endpoints ...endpoint) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Name:      name,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: addressType,
		Ports:       ports,
	}
	for _, ep := range endpoints {
		e := discoveryv1.Endpoint{Addresses: []string{ep.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ep.ready}}
		if ep.hostname != "" {
			e.Hostname = ptr.To(ep.hostname)
		}
		slice.Endpoints = append(slice.Endpoints, e)
	}
	return slice
}

func slicePort(name string, number int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(number), Protocol: ptr.To(corev1.ProtocolTCP)}
}

// clusterObjects is the cluster most tests query.
func clusterObjects() []runtime.Object {
	ext := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "www.example.com"},
	}
	unready := headlessService("default", "unready")
	unready.Spec.PublishNotReadyAddresses = true
	return []runtime.Object{
		namespace("default"),
		namespace("other"),
		clusterIPService("default", "web", []string{"10.96.0.10"},
			port("http", 80, corev1.ProtocolTCP),
			port("", 8080, corev1.ProtocolTCP),
			port("dns", 53, corev1.ProtocolUDP)),
		clusterIPService("default", "dual", []string{"10.96.0.11", "fd00::11"}, port("http", 80, corev1.ProtocolTCP)),
		headlessService("default", "nginx", port("web", 80, corev1.ProtocolTCP)),
		endpointSlice("default", "nginx-abc", "nginx", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("web", 8080)},
			endpoint{ip: "10.1.0.10", hostname: "web-0", ready: ptr.To(true)},
			endpoint{ip: "10.1.0.11", hostname: "web-1", ready: ptr.To(true)},
			endpoint{ip: "10.1.0.12", ready: ptr.To(false)},
			endpoint{ip: "10.1.0.13"}),
		unready,
		endpointSlice("default", "unready-1", "unready", discoveryv1.AddressTypeIPv4, nil,
			endpoint{ip: "10.2.0.5", ready: ptr.To(false)}),
		headlessService("default", "empty"),
		ext,
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "alias"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "Web.Default.svc.cluster.local."},
		},
		headlessService("default", "v6"),
		endpointSlice("default", "v6-1", "v6", discoveryv1.AddressTypeIPv6,
			[]discoveryv1.EndpointPort{slicePort("db", 5432)},
			endpoint{ip: "fd00::20", hostname: "a", ready: ptr.To(true)}),
	}
}

// Harness ------------------------------------------------------------------

type testCluster struct {
	client *fake.Clientset
	server *Server
	addr   string
}

// startCluster serves objects through a fake clientset on a loopback
// listener. upstreams may name "self", which becomes the server's own
// address.
func startCluster(t testing.TB, cfg Config, objects ...runtime.Object) *testCluster {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	for i, u := range cfg.Upstreams {
		if u == "self" {
			cfg.Upstreams[i] = addr
		}
	}

	client := fake.NewClientset(objects...)
	factory := informers.NewSharedInformerFactory(client, 0)
	server, err := New(cfg, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		factory.Shutdown()
	})

	syncCtx, syncCancel := context.WithTimeout(ctx, 10*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), server.HasSynced) {
		t.Fatal("informers did not sync")
	}
	return &testCluster{client: client, server: server, addr: addr}
}

func exchange(t testing.TB, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, m.Question[0].String(), err)
	}
	return resp
}

func query(t testing.TB, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return exchange(t, addr, "udp", m)
}

// rrStrings renders records with single spaces and sorted, since address
// and SRV answers are rotated per query.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	slices.Sort(out)
	return out
}

// fakeUpstream is a resolver on loopback that knows a few names.
func fakeUpstream(t testing.TB) string {
	t.Helper()
	addr, _ := fakeUpstreamOn(t, "127.0.0.1")
	return addr
}

// fakeUpstreamOn starts a fake upstream on a loopback address and returns
// its address and a count of the queries it received.
func fakeUpstreamOn(t testing.TB, ip string) (string, *atomic.Int32) {
	t.Helper()
	var queries atomic.Int32
	records := map[string]string{
		"www.example.com.": "www.example.com. 300 IN A 192.0.2.53",
		"example.org.":     "example.org. 300 IN A 192.0.2.1",
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if rr, ok := records[strings.ToLower(q.Name)]; ok {
			if q.Qtype == dns.TypeA {
				answer, err := dns.NewRR(rr)
				if err != nil {
					panic(err)
				}
				m.Answer = append(m.Answer, answer)
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &queries
}

// Tests --------------------------------------------------------------------

const soaPrefix = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."

func TestQueries(t *testing.T) {
	upstream := fakeUpstream(t)
	c := startCluster(t, Config{Upstreams: []string{upstream}}, clusterObjects()...)

	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		rcode      int
		answer     []string
		extra      []string
		negativeNS bool // expect the zone SOA in the authority section
	}{
		{
			name: "ClusterIP A", qname: "web.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"},
		},
		{
			name: "mixed case keeps the asked spelling", qname: "WEB.Default.SVC.cluster.local.", qtype: dns.TypeA,
			answer: []string{"WEB.Default.SVC.cluster.local. 5 IN A 10.96.0.10"},
		},
		{
			name: "ClusterIP AAAA on IPv4-only Service is NODATA", qname: "web.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			negativeNS: true,
		},
		{
			name: "dual-stack A", qname: "dual.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"dual.default.svc.cluster.local. 5 IN A 10.96.0.11"},
		},
		{
			name: "dual-stack AAAA", qname: "dual.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			answer: []string{"dual.default.svc.cluster.local. 5 IN AAAA fd00::11"},
		},
		{
			name: "headless A has ready endpoints only", qname: "nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{
				"nginx.default.svc.cluster.local. 5 IN A 10.1.0.10",
				"nginx.default.svc.cluster.local. 5 IN A 10.1.0.11",
				"nginx.default.svc.cluster.local. 5 IN A 10.1.0.13",
			},
		},
		{
			name: "StatefulSet pod hostname", qname: "web-0.nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"web-0.nginx.default.svc.cluster.local. 5 IN A 10.1.0.10"},
		},
		{
			name: "endpoint without hostname by its IP-derived name", qname: "10-1-0-13.nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"10-1-0-13.nginx.default.svc.cluster.local. 5 IN A 10.1.0.13"},
		},
		{
			name: "not-ready endpoint has no name", qname: "10-1-0-12.nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "headless SRV, one per ready endpoint", qname: "_web._tcp.nginx.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{
				"_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 33 8080 10-1-0-13.nginx.default.svc.cluster.local.",
				"_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 33 8080 web-0.nginx.default.svc.cluster.local.",
				"_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 33 8080 web-1.nginx.default.svc.cluster.local.",
			},
			extra: []string{
				"10-1-0-13.nginx.default.svc.cluster.local. 5 IN A 10.1.0.13",
				"web-0.nginx.default.svc.cluster.local. 5 IN A 10.1.0.10",
				"web-1.nginx.default.svc.cluster.local. 5 IN A 10.1.0.11",
			},
		},
		{
			name: "ClusterIP SRV", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"},
		},
		{
			name: "UDP port SRV", qname: "_dns._udp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
			extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.10"},
		},
		{
			name: "SRV name asked for A is NODATA", qname: "_http._tcp.web.default.svc.cluster.local.", qtype: dns.TypeA,
			negativeNS: true,
		},
		{
			name: "protocol label is an empty non-terminal", qname: "_tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			negativeNS: true,
		},
		{
			name: "unknown port name", qname: "_nope._tcp.web.default.svc.cluster.local.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "ClusterIP PTR", qname: "10.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."},
		},
		{
			name: "IPv6 ClusterIP PTR", qname: mustReverse("fd00::11"), qtype: dns.TypePTR,
			answer: []string{mustReverse("fd00::11") + " 5 IN PTR dual.default.svc.cluster.local."},
		},
		{
			name: "headless endpoint PTR", qname: "10.0.1.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.0.1.10.in-addr.arpa. 5 IN PTR web-0.nginx.default.svc.cluster.local."},
		},
		{
			name: "missing Service", qname: "missing.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "namespace with Services is NODATA", qname: "default.svc.cluster.local.", qtype: dns.TypeA,
			negativeNS: true,
		},
		{
			name: "namespace without Services is NODATA", qname: "other.svc.cluster.local.", qtype: dns.TypeA,
			negativeNS: true,
		},
		{
			name: "missing namespace", qname: "nope.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "Service in missing namespace", qname: "web.nope.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "schema version", qname: "dns-version.cluster.local.", qtype: dns.TypeTXT,
			answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`},
		},
		{
			name: "apex A is NODATA", qname: "cluster.local.", qtype: dns.TypeA,
			negativeNS: true,
		},
		{
			name: "ExternalName CNAME", qname: "ext.default.svc.cluster.local.", qtype: dns.TypeCNAME,
			answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME www.example.com."},
		},
		{
			name: "ExternalName A follows the CNAME upstream", qname: "ext.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{
				"ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
				"www.example.com. 300 IN A 192.0.2.53",
			},
		},
		{
			name: "ExternalName to a cluster name is answered locally", qname: "alias.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{
				"alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
				"web.default.svc.cluster.local. 5 IN A 10.96.0.10",
			},
		},
		{
			name: "ExternalName target without the type", qname: "alias.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			answer:     []string{"alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local."},
			negativeNS: true,
		},
		{
			name: "IPv6 headless AAAA", qname: "v6.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			answer: []string{"v6.default.svc.cluster.local. 5 IN AAAA fd00::20"},
		},
		{
			name: "IPv6 headless hostname", qname: "a.v6.default.svc.cluster.local.", qtype: dns.TypeAAAA,
			answer: []string{"a.v6.default.svc.cluster.local. 5 IN AAAA fd00::20"},
		},
		{
			name: "IPv6 headless SRV", qname: "_db._tcp.v6.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_db._tcp.v6.default.svc.cluster.local. 5 IN SRV 0 100 5432 a.v6.default.svc.cluster.local."},
			extra:  []string{"a.v6.default.svc.cluster.local. 5 IN AAAA fd00::20"},
		},
		{
			name: "IPv6 headless endpoint PTR", qname: mustReverse("fd00::20"), qtype: dns.TypePTR,
			answer: []string{mustReverse("fd00::20") + " 5 IN PTR a.v6.default.svc.cluster.local."},
		},
		{
			name: "pod A", qname: "10-1-2-3.default.pod.cluster.local.", qtype: dns.TypeA,
			answer: []string{"10-1-2-3.default.pod.cluster.local. 5 IN A 10.1.2.3"},
		},
		{
			name: "pod AAAA", qname: "fd00--5.default.pod.cluster.local.", qtype: dns.TypeAAAA,
			answer: []string{"fd00--5.default.pod.cluster.local. 5 IN AAAA fd00::5"},
		},
		{
			name: "pod A in a missing namespace", qname: "10-1-2-3.nope.pod.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "pod name that is no address", qname: "not-an-ip.default.pod.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "publishNotReadyAddresses publishes a not-ready endpoint", qname: "unready.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"unready.default.svc.cluster.local. 5 IN A 10.2.0.5"},
		},
		{
			name: "headless Service without endpoints", qname: "empty.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, negativeNS: true,
		},
		{
			name: "outside the zone is forwarded", qname: "example.org.", qtype: dns.TypeA,
			answer: []string{"example.org. 300 IN A 192.0.2.1"},
		},
		{
			name: "upstream NXDOMAIN is passed on", qname: "nothing.example.org.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := query(t, c.addr, tt.qname, tt.qtype)
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if got := rrStrings(resp.Answer); !slices.Equal(got, tt.answer) {
				t.Errorf("answer:\n got %q\nwant %q", got, tt.answer)
			}
			if got := rrStrings(resp.Extra); !slices.Equal(got, tt.extra) {
				t.Errorf("additional:\n got %q\nwant %q", got, tt.extra)
			}
			if tt.negativeNS {
				if len(resp.Ns) != 1 || !strings.HasPrefix(rrStrings(resp.Ns)[0], soaPrefix) {
					t.Errorf("authority = %q, want the zone SOA", rrStrings(resp.Ns))
				}
			}
			if resp.Id == 0 || !resp.Response {
				t.Errorf("malformed reply header %+v", resp.MsgHdr)
			}
		})
	}
}

func mustReverse(ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return name
}

func TestSOA(t *testing.T) {
	c := startCluster(t, Config{}, clusterObjects()...)
	resp := query(t, c.addr, "cluster.local.", dns.TypeSOA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || !resp.Authoritative {
		t.Fatalf("SOA reply: %v", resp)
	}
	soa := resp.Answer[0].(*dns.SOA)
	if soa.Ns != "ns.dns.cluster.local." || soa.Minttl != 5 || soa.Serial == 0 {
		t.Errorf("SOA = %v", soa)
	}
}

func TestUpdates(t *testing.T) {
	c := startCluster(t, Config{TTL: 30}, clusterObjects()...)
	ctx := context.Background()

	nginxA := func() []string {
		return rrStrings(query(t, c.addr, "nginx.default.svc.cluster.local.", dns.TypeA).Answer)
	}
	want := []string{
		"nginx.default.svc.cluster.local. 30 IN A 10.1.0.10",
		"nginx.default.svc.cluster.local. 30 IN A 10.1.0.11",
		"nginx.default.svc.cluster.local. 30 IN A 10.1.0.13",
	}
	if got := nginxA(); !slices.Equal(got, want) {
		t.Fatalf("before: %q, want %q", got, want)
	}

	// The not-ready endpoint becomes ready.
	slice, err := c.client.DiscoveryV1().EndpointSlices("default").Get(ctx, "nginx-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slice.Endpoints[2].Conditions.Ready = ptr.To(true)
	if _, err := c.client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "nginx.default.svc.cluster.local. 30 IN A 10.1.0.12")
	slices.Sort(want)
	eventually(t, func() error {
		if got := nginxA(); !slices.Equal(got, want) {
			return fmt.Errorf("after ready: %q, want %q", got, want)
		}
		return nil
	})
	if resp := query(t, c.addr, "10-1-0-12.nginx.default.svc.cluster.local.", dns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("newly ready endpoint has no name: %v", resp)
	}

	// The Service is deleted: its names and PTR go.
	if err := c.client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if resp := query(t, c.addr, "web.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
			return fmt.Errorf("deleted Service: rcode %s, answer %q", dns.RcodeToString[resp.Rcode], rrStrings(resp.Answer))
		}
		return nil
	})
	for _, name := range []string{"_http._tcp.web.default.svc.cluster.local.", "10.0.96.10.in-addr.arpa."} {
		if resp := query(t, c.addr, name, dns.TypeSRV); len(resp.Answer) != 0 || resp.Rcode == dns.RcodeSuccess {
			t.Errorf("%s after delete: %v", name, resp)
		}
	}

	// All endpoints of the headless Service go: NXDOMAIN, not an empty answer.
	if err := c.client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "nginx-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if resp := query(t, c.addr, "nginx.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
			return fmt.Errorf("headless without slices: %v", resp)
		}
		return nil
	})

	// A new Service in a new namespace appears.
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, namespace("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := clusterIPService("late", "api", []string{"10.96.5.5"})
	if _, err := c.client.CoreV1().Services("late").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		got := rrStrings(query(t, c.addr, "api.late.svc.cluster.local.", dns.TypeA).Answer)
		if want := []string{"api.late.svc.cluster.local. 30 IN A 10.96.5.5"}; !slices.Equal(got, want) {
			return fmt.Errorf("new Service: %q, want %q", got, want)
		}
		return nil
	})

	// Namespace "other" is deleted: its names go.
	if err := c.client.CoreV1().Namespaces().Delete(ctx, "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if resp := query(t, c.addr, "10-0-0-1.other.pod.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
			return fmt.Errorf("pod in deleted namespace: %v", resp)
		}
		return nil
	})
}

func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTruncation(t *testing.T) {
	var endpoints []endpoint
	for i := range 100 {
		endpoints = append(endpoints, endpoint{ip: fmt.Sprintf("10.3.%d.%d", i/200, i%200+1)})
	}
	c := startCluster(t, Config{},
		namespace("default"),
		headlessService("default", "big"),
		endpointSlice("default", "big-1", "big", discoveryv1.AddressTypeIPv4, nil, endpoints...))
	const name = "big.default.svc.cluster.local."

	plain := new(dns.Msg)
	plain.SetQuestion(name, dns.TypeA)
	resp := exchange(t, c.addr, "udp", plain)
	if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= 100 {
		t.Errorf("UDP without EDNS0: TC=%v with %d answers, want TC and a partial answer", resp.Truncated, len(resp.Answer))
	}
	resp.Compress = true // as it came over the wire
	if packed, _ := resp.Pack(); len(packed) > dns.MinMsgSize {
		t.Errorf("UDP reply is %d bytes, over 512", len(packed))
	}

	small := new(dns.Msg)
	small.SetQuestion(name, dns.TypeA)
	small.SetEdns0(1232, false)
	resp = exchange(t, c.addr, "udp", small)
	if !resp.Truncated || resp.IsEdns0() == nil {
		t.Errorf("UDP with EDNS0 1232: TC=%v OPT=%v, want both", resp.Truncated, resp.IsEdns0())
	}

	large := new(dns.Msg)
	large.SetQuestion(name, dns.TypeA)
	large.SetEdns0(4096, true)
	resp = exchange(t, c.addr, "udp", large)
	if resp.Truncated || len(resp.Answer) != 100 {
		t.Errorf("UDP with EDNS0 4096: TC=%v with %d answers, want 100", resp.Truncated, len(resp.Answer))
	}
	if opt := resp.IsEdns0(); opt == nil || !opt.Do() {
		t.Errorf("reply OPT %v: want EDNS0 with the DO bit echoed", opt)
	}

	resp = exchange(t, c.addr, "tcp", plain)
	if resp.Truncated || len(resp.Answer) != 100 {
		t.Errorf("TCP: TC=%v with %d answers, want 100", resp.Truncated, len(resp.Answer))
	}
}

func TestRotation(t *testing.T) {
	c := startCluster(t, Config{}, clusterObjects()...)
	first := map[string]bool{}
	for range 6 {
		resp := query(t, c.addr, "nginx.default.svc.cluster.local.", dns.TypeA)
		if len(resp.Answer) != 3 {
			t.Fatalf("answer %v", resp.Answer)
		}
		first[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(first) != 3 {
		t.Errorf("first addresses over 6 queries: %v, want all 3 endpoints to lead in turn", first)
	}
}

func TestForwardSkipsItself(t *testing.T) {
	upstream := fakeUpstream(t)
	// A host whose resolv.conf names the cluster DNS Service: its ClusterIP
	// (on loopback here, so that a failure of this test sends nothing
	// off the machine) must not be forwarded to, nor the server's own
	// address, or a query would go round in circles.
	clusterDNS, clusterDNSQueries := fakeUpstreamOn(t, "127.0.0.99")
	objects := append(clusterObjects(), clusterIPService("kube-system", "kube-dns", []string{"127.0.0.99"}, port("dns", 53, corev1.ProtocolUDP)))
	c := startCluster(t, Config{Upstreams: []string{"self", clusterDNS, upstream}}, objects...)

	start := time.Now()
	resp := query(t, c.addr, "example.org.", dns.TypeA)
	if got, want := rrStrings(resp.Answer), []string{"example.org. 300 IN A 192.0.2.1"}; !slices.Equal(got, want) {
		t.Errorf("answer %q, want %q", got, want)
	}
	if elapsed := time.Since(start); elapsed > forwardTimeout {
		t.Errorf("forwarding took %v: the server forwarded to itself", elapsed)
	}
	if n := clusterDNSQueries.Load(); n != 0 {
		t.Errorf("the cluster DNS ClusterIP got %d forwarded queries", n)
	}
}

func TestNoUpstream(t *testing.T) {
	c := startCluster(t, Config{}, clusterObjects()...)
	resp := query(t, c.addr, "example.org.", dns.TypeA)
	if resp.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
	if resp.RecursionAvailable {
		t.Error("RA set without upstreams")
	}
}

func TestCustomZone(t *testing.T) {
	c := startCluster(t, Config{Zone: "Example.Internal."}, clusterObjects()...)
	got := rrStrings(query(t, c.addr, "web.default.svc.example.internal.", dns.TypeA).Answer)
	if want := []string{"web.default.svc.example.internal. 5 IN A 10.96.0.10"}; !slices.Equal(got, want) {
		t.Errorf("answer %q, want %q", got, want)
	}
	if resp := query(t, c.addr, "web.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeRefused {
		t.Errorf("cluster.local outside a custom zone: rcode %s, want REFUSED (not ours, nothing to forward to)", dns.RcodeToString[resp.Rcode])
	}
}

func TestNotSyncedIsServfail(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(clusterObjects()...), 0)
	s, err := New(Config{}, factory) // never started
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{}
	m := new(dns.Msg)
	m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	s.ServeDNS(w, m)
	if w.msg == nil || w.msg.Rcode != dns.RcodeServerFailure {
		t.Errorf("before sync: %v, want SERVFAIL", w.msg)
	}
}

func TestMalformedQueries(t *testing.T) {
	s, err := New(Config{}, informers.NewSharedInformerFactory(fake.NewClientset(), 0))
	if err != nil {
		t.Fatal(err)
	}
	noQuestion := new(dns.Msg)
	update := new(dns.Msg)
	update.SetUpdate("cluster.local.")
	for _, tt := range []struct {
		msg   *dns.Msg
		rcode int
	}{{noQuestion, dns.RcodeFormatError}, {update, dns.RcodeNotImplemented}} {
		w := &recorder{}
		s.ServeDNS(w, tt.msg)
		if w.msg == nil || w.msg.Rcode != tt.rcode {
			t.Errorf("%v: reply %v, want %s", tt.msg.MsgHdr, w.msg, dns.RcodeToString[tt.rcode])
		}
	}
}

func TestListenAndServe(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(clusterObjects()...), 0)
	s, err := New(Config{}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	defer func() {
		cancel() // the informers stop on this, and Shutdown waits for them
		factory.Shutdown()
	}()
	cache.WaitForCacheSync(ctx.Done(), s.HasSynced)

	// Borrow a free port. It may be taken again before ListenAndServe binds
	// it (by the probing client itself: a UDP socket whose ephemeral port
	// is the one it sends to talks to itself), so try a few.
	var (
		addr        string
		served      chan error
		serveCtx    context.Context
		cancelServe context.CancelFunc
	)
	for attempt := 0; ; attempt++ {
		probe, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = probe.LocalAddr().String()
		probe.Close()
		served = make(chan error, 1)
		serveCtx, cancelServe = context.WithCancel(ctx)
		go func() { served <- s.ListenAndServe(serveCtx, addr) }()
		err = waitForServer(addr, served)
		if err == nil {
			break
		}
		cancelServe()
		if attempt == 4 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v", attempt, err)
	}
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		if got := rrStrings(exchange(t, addr, network, m).Answer); len(got) != 1 {
			t.Errorf("%s: answer %q", network, got)
		}
	}
	cancelServe()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ListenAndServe returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after its context was cancelled")
	}
}

// waitForServer waits until the server at addr answers, or reports why it
// stopped.
func waitForServer(addr string, served <-chan error) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("dns-version.cluster.local.", dns.TypeTXT)
	var lastErr error
	for range 50 {
		select {
		case err := <-served:
			return fmt.Errorf("ListenAndServe %s: %v", addr, err)
		default:
		}
		resp, _, err := c.Exchange(m, addr)
		if err == nil && resp.Response && len(resp.Answer) == 1 {
			return nil
		}
		lastErr = fmt.Errorf("%v %v", err, resp)
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s: %v", addr, lastErr)
}

func TestResolvConfUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# generated\nsearch example.com\nnameserver 192.0.2.1\nnameserver  2001:db8::1 # v6\n;nameserver 192.0.2.9\nnameserver bogus\noptions ndots:2\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ResolvConfUpstreams(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:53"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := ResolvConfUpstreams(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	if _, err := New(Config{Upstreams: []string{"resolver.example"}}, factory); err == nil {
		t.Error("upstream host name accepted")
	}
	if _, err := New(Config{Zone: "bad..zone"}, factory); err == nil {
		t.Error("bad zone accepted")
	}
}

// recorder is a dns.ResponseWriter that keeps the reply in memory.
type recorder struct {
	msg *dns.Msg
}

var (
	clientAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	serverAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
)

func (r *recorder) LocalAddr() net.Addr  { return serverAddr }
func (r *recorder) RemoteAddr() net.Addr { return clientAddr }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.msg = m
	return nil
}
func (r *recorder) Write(b []byte) (int, error) {
	r.msg = new(dns.Msg)
	return len(b), r.msg.Unpack(b)
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}
