// Package proxy makes Services' virtual IPs work on a node: connections to
// a ClusterIP (or to the node's own address on a NodePort) are translated
// by nftables to one ready endpoint, chosen at random, as kube-proxy's
// nftables mode does. Each change of the informers' view is applied in
// one atomic transaction that rewrites only the Service chains and map
// elements that differ (the whole table at first, after a failure, and when
// hostPorts or the ranges change).
package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/knftables"
)

// DefaultTable is the nftables table (family ip) that the proxy owns.
const DefaultTable = "stead-proxy"

// minSyncInterval batches bursts of changes (a scale-out touches many
// EndpointSlices) into one rebuild.
const minSyncInterval = 100 * time.Millisecond

// Proxy keeps the node's Service rules in line with the API.
type Proxy struct {
	nft         knftables.Interface
	serviceCIDR netip.Prefix
	services    corelisters.ServiceLister
	slices      discoverylisters.EndpointSliceLister
	clusterCIDR netip.Prefix
	pods        corelisters.PodLister // the node's pods, for hostPorts; nil for none
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	lastSync time.Time // when the last rebuild began

	// applied is what the table holds after the last successful sync,
	// which the next one changes only where it differs; nil forces a
	// rebuild of the whole table (at first, and after any failure, since
	// the table is then not known).
	applied *tableContent
}

// New returns a Proxy writing to nft (see NewNFTables), fed by factory's
// Service and EndpointSlice informers; start the factory after New.
func New(nft knftables.Interface, serviceCIDR netip.Prefix, factory informers.SharedInformerFactory) *Proxy {
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	p := &Proxy{
		nft:         nft,
		serviceCIDR: serviceCIDR,
		services:    svcInformer.Lister(),
		slices:      sliceInformer.Lister(),
		synced:      []cache.InformerSynced{svcInformer.Informer().HasSynced, sliceInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](minSyncInterval, 30*time.Second),
			),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "proxy"}),
	}
	changed := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.changed() },
		UpdateFunc: func(any, any) { p.changed() },
		DeleteFunc: func(any) { p.changed() },
	}
	_, _ = svcInformer.Informer().AddEventHandler(changed)
	_, _ = sliceInformer.Informer().AddEventHandler(changed)
	return p
}

// ForNode makes the proxy a node's: pods' connections leaving clusterCIDR
// are masqueraded, and the hostPorts of the node's pods (from pods, an
// informer of those pods alone) are published. Call it before the
// informers start.
func (p *Proxy) ForNode(clusterCIDR netip.Prefix, pods coreinformers.PodInformer) *Proxy {
	p.clusterCIDR, p.pods = clusterCIDR, pods.Lister()
	p.synced = append(p.synced, pods.Informer().HasSynced)
	_, _ = pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.changed() },
		UpdateFunc: func(old, cur any) {
			o, c := old.(*corev1.Pod), cur.(*corev1.Pod)
			if o.Status.PodIP != c.Status.PodIP || o.Status.Phase != c.Status.Phase {
				p.changed()
			}
		},
		DeleteFunc: func(any) { p.changed() },
	})
	return p
}

// changed schedules a rebuild: at once if none began in the last
// minSyncInterval, else at the end of that interval, so that a lone change
// is applied without delay and a burst (a scale-out touches many
// EndpointSlices) costs one rebuild per interval.
func (p *Proxy) changed() {
	p.mu.Lock()
	delay := time.Until(p.lastSync.Add(minSyncInterval))
	p.mu.Unlock()
	if delay > 0 {
		p.queue.AddAfter("sync", delay)
		return
	}
	p.queue.Add("sync")
}

// NewNFTables opens the proxy's table in the calling thread's network
// namespace.
func NewNFTables(table string) (knftables.Interface, error) {
	nft, err := knftables.New(knftables.IPv4Family, table)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return nft, nil
}

// Run syncs until ctx ends. The rules stay: pods outlive the agent.
func (p *Proxy) Run(ctx context.Context) {
	defer p.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return
	}
	p.queue.Add("sync")
	go wait.UntilWithContext(ctx, p.worker, time.Second)
	<-ctx.Done()
}

func (p *Proxy) worker(ctx context.Context) {
	for {
		key, quit := p.queue.Get()
		if quit {
			return
		}
		p.mu.Lock()
		p.lastSync = time.Now()
		p.mu.Unlock()
		if err := p.Sync(ctx); err != nil {
			utilruntime.HandleErrorWithContext(ctx, err, "sync Service rules")
			p.queue.AddRateLimited(key)
		} else {
			p.queue.Forget(key)
		}
		p.queue.Done(key)
	}
}

// Sync brings the rules in line with the listers' current view. It is
// called by one goroutine at a time (the worker's, or a test's).
func (p *Proxy) Sync(ctx context.Context) error {
	services, err := p.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := p.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	rs := ruleSet{serviceCIDR: p.serviceCIDR, clusterCIDR: p.clusterCIDR, ports: servicePorts(services, slices)}
	if p.pods != nil {
		pods, err := p.pods.List(labels.Everything())
		if err != nil {
			return err
		}
		rs.hostPorts = hostPorts(pods)
	}
	return p.apply(ctx, rs)
}

// apply writes rs to the table, as a change of what it last applied when
// it can.
func (p *Proxy) apply(ctx context.Context, rs ruleSet) error {
	content := newTableContent(rs)
	tx := p.nft.NewTransaction()
	if p.applied == nil || !content.sameBase(p.applied) {
		content.writeAll(tx)
	} else if !content.writeChanges(tx, p.applied) {
		return nil
	}
	p.applied = nil
	if err := p.nft.Run(ctx, tx); err != nil {
		return err
	}
	p.applied = content
	return nil
}

// Cleanup removes the proxy's table, for a node leaving the cluster.
func Cleanup(ctx context.Context, nft knftables.Interface) error {
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	return nft.Run(ctx, tx)
}
