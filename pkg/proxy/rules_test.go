package proxy

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/steadhq/stead/pkg/internal/netnstest"
)

var serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")

func service(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports, Type: corev1.ServiceTypeClusterIP},
	}
	if clusterIP == corev1.ClusterIPNone {
		svc.Spec.ClusterIPs = nil
	}
	return svc
}

func slice(svc, name string, port discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{port},
		Endpoints:   eps,
	}
}

func ep(ip string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
}

func TestServicePorts(t *testing.T) {
	web := corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}
	sliceWeb := discoveryv1.EndpointPort{Name: ptr.To("web"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}
	for _, tc := range []struct {
		name     string
		services []*corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     []string // clusterIP:port -> endpoints
	}{
		{
			name:     "ready endpoints only, sorted, deduplicated across slices",
			services: []*corev1.Service{service("front", "10.43.0.20", web)},
			slices: []*discoveryv1.EndpointSlice{
				slice("front", "a", sliceWeb, ep("10.42.0.9", true), ep("10.42.0.8", false)),
				slice("front", "b", sliceWeb, ep("10.42.0.5", true), ep("10.42.0.9", true)),
			},
			want: []string{"10.43.0.20:80 -> 10.42.0.5:8080 10.42.0.9:8080"},
		},
		{
			name:     "headless services get no rules",
			services: []*corev1.Service{service("nginx", corev1.ClusterIPNone, web)},
			slices:   []*discoveryv1.EndpointSlice{slice("nginx", "a", sliceWeb, ep("10.42.0.5", true))},
			want:     nil,
		},
		{
			name:     "ports are matched by name",
			services: []*corev1.Service{service("two", "10.43.0.21", web, corev1.ServicePort{Name: "admin", Port: 9000, Protocol: corev1.ProtocolTCP})},
			slices: []*discoveryv1.EndpointSlice{
				slice("two", "a", sliceWeb, ep("10.42.0.5", true)),
				slice("two", "b", discoveryv1.EndpointPort{Name: ptr.To("admin"), Port: ptr.To[int32](9090), Protocol: ptr.To(corev1.ProtocolTCP)}, ep("10.42.0.5", true)),
			},
			want: []string{"10.43.0.21:80 -> 10.42.0.5:8080", "10.43.0.21:9000 -> 10.42.0.5:9090"},
		},
		{
			name:     "a service without endpoints has a port with none",
			services: []*corev1.Service{service("empty", "10.43.0.22", web)},
			want:     []string{"10.43.0.22:80 ->"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, sp := range servicePorts(tc.services, tc.slices) {
				line := sp.clusterIPs[0].String() + ":" + itoa(sp.port) + " ->"
				for _, e := range sp.endpoints {
					line += " " + e.ip.String() + ":" + itoa(e.port)
				}
				got = append(got, line)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

func TestRulesTranslateClusterIPAndNodePort(t *testing.T) {
	nft := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	ports := []servicePort{{
		namespace: "default", name: "front", portName: "web", protocol: corev1.ProtocolTCP,
		clusterIPs: []netip.Addr{netip.MustParseAddr("10.43.0.20")}, port: 80, nodePort: 30080,
		endpoints: []endpoint{{netip.MustParseAddr("10.42.0.5"), 8080}, {netip.MustParseAddr("10.42.0.9"), 8080}},
	}}
	for range 2 { // a rebuild over existing rules gives the same table
		tx := nft.NewTransaction()
		writeRules(tx, ruleSet{serviceCIDR: serviceCIDR, ports: ports})
		if err := nft.Run(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
	}
	dump := nft.Dump()
	for _, want := range []string{
		"10.43.0.20 . tcp . 80 : goto svc-",
		"tcp . 30080 : goto svc-",
		"numgen random mod 2 vmap { 0 : goto ep-",
		"dnat to 10.42.0.5:8080",
		"dnat to 10.42.0.9:8080",
		"ip saddr 10.42.0.5 meta mark set meta mark | 0x4000",
		"ip daddr 10.43.0.0/16 ct status & dnat == 0",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("rules lack %q:\n%s", want, dump)
		}
	}
	if n := strings.Count(dump, "dnat to 10.42.0.5:8080"); n != 1 {
		t.Errorf("endpoint rule appears %d times after a rebuild, want 1", n)
	}
}

func TestHostPortsAndMasquerade(t *testing.T) {
	pod := func(name, ip string, phase corev1.PodPhase, ports ...corev1.ContainerPort) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
			Status:     corev1.PodStatus{PodIP: ip, Phase: phase},
		}
	}
	pods := []*corev1.Pod{
		pod("web-1", "10.42.0.6", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 80, HostPort: 8080}),
		pod("web-0", "10.42.0.5", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 80, HostPort: 8080},
			corev1.ContainerPort{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP, HostIP: "192.168.1.2"}),
		pod("plain", "10.42.0.7", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 80}),
		pod("done", "10.42.0.8", corev1.PodSucceeded, corev1.ContainerPort{ContainerPort: 80, HostPort: 9090}),
		pod("no-ip-yet", "", corev1.PodPending, corev1.ContainerPort{ContainerPort: 80, HostPort: 9091}),
	}
	hps := hostPorts(pods)
	var got []string
	for _, hp := range hps {
		got = append(got, fmt.Sprintf("%s %v:%d -> %s:%d (%s)", hp.protocol, hp.hostIP, hp.port, hp.podIP, hp.containerPort, hp.pod))
	}
	want := []string{
		"TCP invalid IP:8080 -> 10.42.0.5:80 (default/web-0)",
		"UDP 192.168.1.2:5353 -> 10.42.0.5:53 (default/web-0)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hostPorts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	nft := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	tx := nft.NewTransaction()
	writeRules(tx, ruleSet{serviceCIDR: serviceCIDR, clusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), hostPorts: hps})
	if err := nft.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	dump := nft.Dump()
	for _, want := range []string{
		"ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade",
		"tcp . 8080 : goto hp-",
		"dnat to 10.42.0.5:80",
		"ip daddr 192.168.1.2 meta l4proto udp th dport 5353 goto hp-",
		"dnat to 10.42.0.5:53",
		"fib daddr type local meta l4proto . th dport vmap @host-ports",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("rules lack %q:\n%s", want, dump)
		}
	}
	if strings.Contains(dump, "10.42.0.6") || strings.Contains(dump, "9090") || strings.Contains(dump, "9091") {
		t.Errorf("rules publish a port taken, finished or without an address:\n%s", dump)
	}
}

// countingNFT counts transactions and their operations.
type countingNFT struct {
	knftables.Interface
	runs, operations int
}

func (n *countingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	n.runs++
	n.operations = tx.NumOperations()
	return n.Interface.Run(ctx, tx)
}

// TestPartialSyncsMatchARebuild applies a series of changes as the proxy
// does (the first whole, the next as differences) and checks after each that
// the table is what a rebuild from scratch makes, with the real nft in a
// namespace of the test's own (which checks that every step's references
// are valid where they are made) and with knftables' fake (which compares
// the tables).
func TestPartialSyncsMatchARebuild(t *testing.T) {
	addr := netip.MustParseAddr
	web := func(nodePort int32, eps ...string) servicePort {
		sp := servicePort{namespace: "default", name: "front", portName: "web", protocol: corev1.ProtocolTCP,
			clusterIPs: []netip.Addr{addr("10.43.0.20")}, port: 80, nodePort: nodePort}
		for _, ip := range eps {
			sp.endpoints = append(sp.endpoints, endpoint{addr(ip), 8080})
		}
		return sp
	}
	other := func(name, clusterIP string, eps ...string) servicePort {
		sp := servicePort{namespace: "default", name: name, portName: "", protocol: corev1.ProtocolUDP,
			clusterIPs: []netip.Addr{addr(clusterIP)}, port: 53}
		for _, ip := range eps {
			sp.endpoints = append(sp.endpoints, endpoint{addr(ip), 5353})
		}
		return sp
	}
	hp := []hostPort{{protocol: corev1.ProtocolTCP, port: 8080, podIP: addr("10.42.0.5"), containerPort: 80, pod: "default/web-0"}}
	steps := []struct {
		name    string
		rs      ruleSet
		partial bool // applied as differences, not a rebuild
		noop    bool // nothing to apply at all
	}{
		{name: "first", rs: ruleSet{ports: []servicePort{web(30080, "10.42.0.5", "10.42.0.9"), other("back", "10.43.0.30", "10.42.0.7")}}},
		{name: "an endpoint replaced", partial: true, rs: ruleSet{ports: []servicePort{web(30080, "10.42.0.5", "10.42.0.11"), other("back", "10.43.0.30", "10.42.0.7")}}},
		{name: "a Service gone, one new, a nodePort moved", partial: true, rs: ruleSet{ports: []servicePort{web(30081, "10.42.0.5", "10.42.0.11"), other("extra", "10.43.0.40", "10.42.0.8", "10.42.0.9")}}},
		{name: "a Service left with no endpoint", partial: true, rs: ruleSet{ports: []servicePort{web(30081), other("extra", "10.43.0.40", "10.42.0.8", "10.42.0.9")}}},
		{name: "the same again", partial: true, noop: true, rs: ruleSet{ports: []servicePort{web(30081), other("extra", "10.43.0.40", "10.42.0.8", "10.42.0.9")}}},
		{name: "a hostPort: the base changes", rs: ruleSet{hostPorts: hp, ports: []servicePort{web(30081, "10.42.0.5"), other("extra", "10.43.0.40", "10.42.0.8")}}},
		{name: "everything gone", partial: true, rs: ruleSet{hostPorts: hp}},
	}

	ns, real := nftInNamespace(t, "stead-proxy-partial")
	var err error
	realNFT := &countingNFT{Interface: real}
	fakeNFT := &countingNFT{Interface: knftables.NewFake(knftables.IPv4Family, DefaultTable)}
	inNamespace := &Proxy{nft: realNFT}
	onFake := &Proxy{nft: fakeNFT}
	var fullOperations int
	for _, step := range steps {
		step.rs.serviceCIDR = serviceCIDR
		runs := realNFT.runs
		netnstest.Run(t, ns, func() { err = inNamespace.apply(t.Context(), step.rs) })
		if err != nil {
			t.Fatalf("%s: real nft: %v", step.name, err)
		}
		if err := onFake.apply(t.Context(), step.rs); err != nil {
			t.Fatalf("%s: fake nft: %v", step.name, err)
		}
		switch {
		case step.noop && realNFT.runs != runs:
			t.Errorf("%s: a transaction of %d operations for no change", step.name, realNFT.operations)
		case !step.noop && realNFT.runs != runs+1:
			t.Errorf("%s: %d transactions, want 1", step.name, realNFT.runs-runs)
		case !step.partial:
			fullOperations = realNFT.operations
		case !step.noop && realNFT.operations >= fullOperations:
			t.Errorf("%s: a change of %d operations, no fewer than a rebuild's %d", step.name, realNFT.operations, fullOperations)
		}

		rebuilt := knftables.NewFake(knftables.IPv4Family, DefaultTable)
		tx := rebuilt.NewTransaction()
		writeRules(tx, step.rs)
		if err := rebuilt.Run(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		if got, want := fakeNFT.Interface.(*knftables.Fake).Dump(), rebuilt.Dump(); got != want {
			t.Errorf("%s: after the change the table is\n%s\nwant, as rebuilt:\n%s", step.name, got, want)
		}

		var chains []string
		netnstest.Run(t, ns, func() { chains, err = real.List(t.Context(), "chains") })
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(chains)
		want := slices.Sorted(maps.Keys(newTableContent(step.rs).chains))
		chains = slices.DeleteFunc(chains, func(c string) bool { return !strings.HasPrefix(c, "svc-") && !strings.HasPrefix(c, "ep-") })
		if !slices.Equal(chains, want) {
			t.Errorf("%s: the kernel's Service chains %q, want %q", step.name, chains, want)
		}
	}
}
