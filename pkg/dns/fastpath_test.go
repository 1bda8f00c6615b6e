package dns

import (
	"fmt"
	"slices"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFastPathMatchesServeDNS asks the fast path and ServeDNS the same
// queries: the fast path must take every plain query that the index
// answers, give the same reply, and leave the rest to ServeDNS.
func TestFastPathMatchesServeDNS(t *testing.T) {
	upstream := fakeUpstream(t)
	c := startCluster(t, Config{Upstreams: []string{upstream}}, clusterObjects()...)

	type edns struct {
		size uint16
		do   bool
	}
	for _, tt := range []struct {
		qname string
		qtype uint16
		fast  bool
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, true},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, true}, // NODATA
		{"web.default.svc.cluster.local.", dns.TypeANY, true},
		{"web.default.svc.cluster.local.", dns.TypeMX, true},
		{"dual.default.svc.cluster.local.", dns.TypeAAAA, true},
		{"nginx.default.svc.cluster.local.", dns.TypeA, true},
		{"web-0.nginx.default.svc.cluster.local.", dns.TypeA, true},
		{"_web._tcp.nginx.default.svc.cluster.local.", dns.TypeSRV, true},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, true},
		{"missing.default.svc.cluster.local.", dns.TypeA, true}, // NXDOMAIN
		{"default.svc.cluster.local.", dns.TypeA, true},         // empty non-terminal
		{"cluster.local.", dns.TypeSOA, true},
		{"dns-version.cluster.local.", dns.TypeTXT, true},
		{"10-1-0-10.default.pod.cluster.local.", dns.TypeA, true},
		{"10-1-0-10.nowhere.pod.cluster.local.", dns.TypeA, true},
		{mustReverse("10.96.0.10"), dns.TypePTR, true},
		{mustReverse("10.1.0.10"), dns.TypePTR, true},
		{"alias.default.svc.cluster.local.", dns.TypeA, true}, // ExternalName to a cluster name
		{"unready.default.svc.cluster.local.", dns.TypeA, true},
		{"a.v6.default.svc.cluster.local.", dns.TypeAAAA, true},
		// The general path's own: upper case, upstream answers.
		{"WEB.default.svc.cluster.local.", dns.TypeA, false},
		{"ext.default.svc.cluster.local.", dns.TypeA, false},
		{"example.org.", dns.TypeA, false},
		{mustReverse("192.0.2.1"), dns.TypePTR, false},
	} {
		for _, e := range []*edns{nil, {1232, false}, {4096, true}, {100, false}} {
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			m.Id = 0xbeef
			m.RecursionDesired = true
			m.CheckingDisabled = e != nil && e.do
			if e != nil {
				m.SetEdns0(e.size, e.do)
			}
			pkt, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			name := dns.TypeToString[tt.qtype] + " " + tt.qname
			if e != nil {
				name += " EDNS"
			}

			var q fastQuery
			out, ok := newAnswerCache().answer(c.server, pkt, &q, nil)
			if ok != tt.fast {
				t.Errorf("%s: fast path took it: %v, want %v", name, ok, tt.fast)
				continue
			}
			if !ok {
				continue
			}
			fast := new(dns.Msg)
			if err := fast.Unpack(out); err != nil {
				t.Fatalf("%s: fast reply does not parse: %v", name, err)
			}
			w := &recorder{}
			c.server.ServeDNS(w, m)
			general := w.msg
			if fast.MsgHdr != general.MsgHdr {
				t.Errorf("%s: header\n%+v, ServeDNS gives\n%+v", name, fast.MsgHdr, general.MsgHdr)
			}
			for _, section := range []struct {
				name          string
				fast, general []dns.RR
			}{{"answer", fast.Answer, general.Answer}, {"authority", fast.Ns, general.Ns}, {"additional", fast.Extra, general.Extra}} {
				if got, want := rrStrings(section.fast), rrStrings(section.general); !slices.Equal(got, want) {
					t.Errorf("%s: %s %q, ServeDNS gives %q", name, section.name, got, want)
				}
			}
			if got, want := fast.IsEdns0() != nil, general.IsEdns0() != nil; got != want {
				t.Errorf("%s: OPT in the fast reply %v, ServeDNS %v", name, got, want)
			}
		}
	}
}

// TestFastPathFollowsTheIndex checks that a kept reply goes when the index
// changes and that several addresses take turns.
func TestFastPathFollowsTheIndex(t *testing.T) {
	c := startCluster(t, Config{}, clusterObjects()...)
	cache := newAnswerCache()
	ask := func(name string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		pkt, _ := m.Pack()
		var q fastQuery
		out, ok := cache.answer(c.server, pkt, &q, nil)
		if !ok {
			t.Fatalf("%s: not taken by the fast path", name)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatal(err)
		}
		return resp
	}

	first := map[string]bool{}
	for range 3 {
		resp := ask("nginx.default.svc.cluster.local.")
		first[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(first) != 3 {
		t.Errorf("first addresses over 3 queries: %v, want each of the 3 endpoints once", first)
	}

	if resp := ask("late.default.svc.cluster.local."); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("before the Service: rcode %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
	svc := clusterIPService("default", "late", []string{"10.96.0.99"}, port("http", 80, corev1.ProtocolTCP))
	if _, err := c.client.CoreV1().Services("default").Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		resp := ask("late.default.svc.cluster.local.")
		if got, want := rrStrings(resp.Answer), []string{"late.default.svc.cluster.local. 5 IN A 10.96.0.99"}; !slices.Equal(got, want) {
			return fmt.Errorf("answer %q (rcode %s), want %q", got, dns.RcodeToString[resp.Rcode], want)
		}
		return nil
	})
}
