package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/steadhq/stead/pkg/internal/netnstest"
)

// signallingNFT tells, after each transaction, what it held.
type signallingNFT struct {
	knftables.Interface
	runs chan string
	// run applies a transaction; Interface.Run if nil.
	run func(context.Context, *knftables.Transaction) error
}

func (n *signallingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	var err error
	if n.run != nil {
		err = n.run(ctx, tx)
	} else {
		err = n.Interface.Run(ctx, tx)
	}
	if err == nil {
		n.runs <- tx.String()
	}
	return err
}

// BenchmarkEndpointChangeToRules measures how long an EndpointSlice change
// takes to reach the node's rules: from the API's update (a fake
// clientset) to the end of the transaction that holds the new endpoint,
// that is the informer's delivery, one rebuild of the table and, with the
// real nft, `nft -f` applying it in a network namespace of the
// benchmark's own. Changes are spaced past minSyncInterval, as a lone
// change is; a burst is applied once per interval instead.
//
//	go test -run '^$' -bench EndpointChangeToRules -benchtime 30x ./pkg/proxy
func BenchmarkEndpointChangeToRules(b *testing.B) {
	for _, services := range []int{1, 1000} {
		b.Run(fmt.Sprintf("nft=fake/services=%d", services), func(b *testing.B) {
			nft := &signallingNFT{Interface: knftables.NewFake(knftables.IPv4Family, DefaultTable), runs: make(chan string, 100)}
			benchmarkEndpointChange(b, nft, services)
		})
		b.Run(fmt.Sprintf("nft=real/services=%d", services), func(b *testing.B) {
			ns, real := nftInNamespace(b, "stead-proxy-bench")
			nft := &signallingNFT{Interface: real, runs: make(chan string, 100)}
			nft.run = func(ctx context.Context, tx *knftables.Transaction) error {
				return netnstest.Do(ns, func() error { return real.Run(ctx, tx) })
			}
			benchmarkEndpointChange(b, nft, services)
		})
	}
}

func benchmarkEndpointChange(b *testing.B, nft *signallingNFT, services int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := discoveryv1.EndpointPort{Name: ptr.To("web"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}
	var objects []k8sruntime.Object
	for i := range services {
		name := fmt.Sprintf("svc%d", i)
		objects = append(objects,
			service(name, fmt.Sprintf("10.43.%d.%d", 1+i/250, 1+i%250), corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}),
			slice(name, name+"-1", port,
				ep(fmt.Sprintf("10.44.%d.%d", i/250, 1+i%250), true),
				ep(fmt.Sprintf("10.45.%d.%d", i/250, 1+i%250), true),
				ep(fmt.Sprintf("10.46.%d.%d", i/250, 1+i%250), true)))
	}
	client := fake.NewClientset(objects...)
	factory := informers.NewSharedInformerFactory(client, 0)
	p := New(nft, netip.MustParsePrefix("10.43.0.0/16"), factory)
	factory.Start(ctx.Done())
	go p.Run(ctx)
	awaitRules(b, nft, "10.46.") // the first full build

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		time.Sleep(minSyncInterval + 10*time.Millisecond)
		ip := fmt.Sprintf("10.42.%d.%d", 1+i/250%250, 1+i%250)
		s := slice("svc0", "svc0-1", port, ep(ip, true))
		b.StartTimer()
		began := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		awaitRules(b, nft, "dnat to "+ip+":8080")
		total += time.Since(began)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/change")
}

// awaitRules waits for a transaction that holds want.
func awaitRules(b *testing.B, nft *signallingNFT, want string) {
	b.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case tx := <-nft.runs:
			if strings.Contains(tx, want) {
				return
			}
		case <-timeout:
			b.Fatalf("no transaction with %q in 30 s", want)
		}
	}
}

// nftInNamespace makes a network namespace for the test and the proxy's
// nft in it. Run transactions inside the namespace (netnstest.Run or Do):
// the nft process joins the namespace of the thread that starts it.
func nftInNamespace(t testing.TB, name string) (string, knftables.Interface) {
	t.Helper()
	ns := netnstest.New(t, fmt.Sprintf("%s-%d", name, os.Getpid()))
	var nft knftables.Interface
	var err error
	netnstest.Run(t, ns, func() { nft, err = NewNFTables(DefaultTable) })
	if err != nil {
		t.Fatal(err)
	}
	return ns, nft
}
