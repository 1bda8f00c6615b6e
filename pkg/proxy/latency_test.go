package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"
)

// signallingNFT tells, after each transaction, what the table holds.
type signallingNFT struct {
	knftables.Interface
	fake *knftables.Fake
	runs chan string
}

func (n *signallingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	err := n.Interface.Run(ctx, tx)
	n.runs <- n.fake.Dump()
	return err
}

// BenchmarkEndpointChangeToRules measures how long an EndpointSlice change
// takes to reach the node's rules: from the API's update to the
// transaction that holds the new endpoint (the informer's delivery and one
// rebuild; the fake nft takes the real one's place, so the time of a real
// `nft -f` of the table comes on top). Changes are spaced past
// minSyncInterval, as a lone change is; a burst is applied once per
// interval instead.
//
//	go test -run '^$' -bench EndpointChangeToRules ./pkg/proxy
func BenchmarkEndpointChangeToRules(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := discoveryv1.EndpointPort{Name: ptr.To("web"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}
	client := fake.NewClientset(
		service("front", "10.43.0.20", corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}),
		slice("front", "front-1", port, ep("10.42.0.2", true)),
	)
	factory := informers.NewSharedInformerFactory(client, 0)
	f := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	nft := &signallingNFT{Interface: f, fake: f, runs: make(chan string, 100)}
	p := New(nft, netip.MustParsePrefix("10.43.0.0/16"), factory)
	factory.Start(ctx.Done())
	go p.Run(ctx)
	<-nft.runs // the first full build

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		time.Sleep(minSyncInterval + 10*time.Millisecond)
		ip := fmt.Sprintf("10.42.%d.%d", 1+i/250%250, 1+i%250)
		s := slice("front", "front-1", port, ep(ip, true))
		b.StartTimer()
		began := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		for dump := range nft.runs {
			if strings.Contains(dump, "dnat to "+ip+":8080") {
				break
			}
		}
		total += time.Since(began)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/change")
}
