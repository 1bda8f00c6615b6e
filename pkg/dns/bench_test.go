package dns

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// benchCluster has 300 Services in 10 namespaces: 200 with a ClusterIP and
// two named ports, 100 headless with three StatefulSet-style endpoints.
func benchCluster() []runtime.Object {
	var objects []runtime.Object
	for n := range 10 {
		objects = append(objects, namespace(fmt.Sprintf("ns%d", n)))
	}
	for i := range 200 {
		objects = append(objects, clusterIPService(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("svc%d", i),
			[]string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			port("http", 80, corev1.ProtocolTCP), port("grpc", 9090, corev1.ProtocolTCP)))
	}
	for i := range 100 {
		ns, name := fmt.Sprintf("ns%d", i%10), fmt.Sprintf("db%d", i)
		objects = append(objects, headlessService(ns, name, port("sql", 5432, corev1.ProtocolTCP)))
		var endpoints []endpoint
		for p := range 3 {
			endpoints = append(endpoints, endpoint{
				ip:       fmt.Sprintf("10.244.%d.%d", i, p+1),
				hostname: fmt.Sprintf("%s-%d", name, p),
				ready:    ptr.To(true),
			})
		}
		objects = append(objects, endpointSlice(ns, name+"-x", name, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{slicePort("sql", 5432)}, endpoints...))
	}
	return objects
}

func BenchmarkServeDNS(b *testing.B) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(benchCluster()...), 0)
	s, err := New(Config{}, factory)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	factory.Start(ctx.Done())
	defer func() {
		cancel() // the informers stop on this, and Shutdown waits for them
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), s.HasSynced) {
		b.Fatal("informers did not sync")
	}

	kinds := []struct {
		name  string
		qname func(i int) string
		qtype uint16
		rcode int
	}{
		{"ClusterIP-A", func(i int) string { return fmt.Sprintf("svc%d.ns%d.svc.cluster.local.", i%200, i%200%10) }, dns.TypeA, dns.RcodeSuccess},
		{"headless-A", func(i int) string { return fmt.Sprintf("db%d.ns%d.svc.cluster.local.", i%100, i%100%10) }, dns.TypeA, dns.RcodeSuccess},
		{"pod-hostname-A", func(i int) string {
			return fmt.Sprintf("db%d-1.db%d.ns%d.svc.cluster.local.", i%100, i%100, i%100%10)
		}, dns.TypeA, dns.RcodeSuccess},
		{"headless-SRV", func(i int) string { return fmt.Sprintf("_sql._tcp.db%d.ns%d.svc.cluster.local.", i%100, i%100%10) }, dns.TypeSRV, dns.RcodeSuccess},
		// What a pod's search path produces before the name that exists.
		{"search-path-NXDOMAIN", func(i int) string {
			return fmt.Sprintf("svc%d.ns%d.svc.ns%d.svc.cluster.local.", i%200, i%200%10, i%10)
		}, dns.TypeA, dns.RcodeNameError},
		{"PTR", func(i int) string { return fmt.Sprintf("%d.%d.96.10.in-addr.arpa.", i%200%250+1, i%200/250) }, dns.TypePTR, dns.RcodeSuccess},
	}

	// Check every query once so that the numbers measure real answers.
	for _, kind := range kinds {
		for i := range 200 {
			m := new(dns.Msg)
			m.SetQuestion(kind.qname(i), kind.qtype)
			w := &recorder{}
			s.ServeDNS(w, m)
			if w.msg == nil || w.msg.Rcode != kind.rcode || (kind.rcode == dns.RcodeSuccess && len(w.msg.Answer) == 0) {
				b.Fatalf("%s %s: %v", kind.name, m.Question[0].Name, w.msg)
			}
		}
	}

	for _, kind := range kinds {
		b.Run(kind.name+"/ServeDNS", func(b *testing.B) {
			queries := make([]*dns.Msg, 200)
			for i := range queries {
				queries[i] = new(dns.Msg)
				queries[i].SetQuestion(kind.qname(i), kind.qtype)
				queries[i].SetEdns0(1232, false)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var w discard
				i := 0
				for pb.Next() {
					s.ServeDNS(&w, queries[i%len(queries)])
					i++
				}
			})
		})
		// The UDP fast path: the packet parsed by hand and the reply
		// copied from its socket's cache.
		b.Run(kind.name+"/fast", func(b *testing.B) {
			packets := make([][]byte, 200)
			for i := range packets {
				m := new(dns.Msg)
				m.SetQuestion(kind.qname(i), kind.qtype)
				m.SetEdns0(1232, false)
				packets[i], _ = m.Pack()
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c := newAnswerCache()
				q := fastQuery{name: make([]byte, 0, 256)}
				out := make([]byte, 0, 512)
				i := 0
				for pb.Next() {
					var ok bool
					if out, ok = c.answer(s, packets[i%len(packets)], &q, out[:0]); !ok {
						b.Fatal("not taken by the fast path")
					}
					i++
				}
			})
		})
	}
}

// discard is a dns.ResponseWriter that drops the reply, as a socket write
// would from the handler's point of view.
type discard struct{ n int }

func (d *discard) LocalAddr() net.Addr         { return serverAddr }
func (d *discard) RemoteAddr() net.Addr        { return clientAddr }
func (d *discard) WriteMsg(*dns.Msg) error     { d.n++; return nil }
func (d *discard) Write(b []byte) (int, error) { d.n++; return len(b), nil }
func (d *discard) Close() error                { return nil }
func (d *discard) TsigStatus() error           { return nil }
func (d *discard) TsigTimersOnly(bool)         {}
func (d *discard) Hijack()                     {}
