package server

import (
	"context"
	"fmt"
	"sync"
	_ "unsafe" // go:linkname

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdkubernetes "go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apiserver/pkg/storage"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	"k8s.io/apiserver/pkg/storage/storagebackend"
)

// The API server makes an etcd client, each with its own gRPC connection,
// for every resource it stores, and more for its compactor and health
// checks: about 65 connections to one etcd, each with its transport's
// buffers and goroutines at both ends. That buys throughput a one-binary
// cluster never needs, at a cost in memory it does pay for. stead shares one
// connection per etcd transport among them.
//
// The stores' watches share the connection's one Watcher too, and so one
// gRPC watch stream, as etcd's client multiplexes watches that carry the
// same metadata (the stores' all require a leader): a stream per store cost
// nine goroutines at the two ends and etcd's per-stream buffers, about 60
// times over. A watch still ends with the client of the store that opened
// it, and closing one store's client (its Close cancels its context) ends
// nothing of another's. The connection closes with the last client that
// shares it.

//go:linkname newETCD3Client k8s.io/apiserver/pkg/storage/storagebackend/factory.newETCD3Client
var newETCD3Client func(storagebackend.TransportConfig) (*etcdkubernetes.Client, error)

var shareETCDConnectionsOnce sync.Once

// shareETCDConnections makes the API server's storage factory share one
// etcd connection per transport from now on.
func shareETCDConnections() {
	shareETCDConnectionsOnce.Do(func() {
		newETCD3Client = (&etcdConnections{dial: newETCD3Client, shared: map[string]*etcdConnection{}}).client
	})
}

type etcdConnections struct {
	dial func(storagebackend.TransportConfig) (*etcdkubernetes.Client, error)

	mu     sync.Mutex
	shared map[string]*etcdConnection
}

type etcdConnection struct {
	client  *clientv3.Client
	watcher clientv3.Watcher
	clients int
}

// client returns a client of its own over the connection shared by every
// client of the same transport, dialled by the first of them.
func (p *etcdConnections) client(transport storagebackend.TransportConfig) (*etcdkubernetes.Client, error) {
	// As upstream's compactor tells transports apart: servers, files, and
	// the egress and tracing hooks.
	key := fmt.Sprintf("%v", transport)
	p.mu.Lock()
	defer p.mu.Unlock()
	conn := p.shared[key]
	if conn == nil {
		dialled, err := p.dial(transport)
		if err != nil {
			return nil, err
		}
		conn = &etcdConnection{client: dialled.Client, watcher: dialled.Watcher}
		p.shared[key] = conn
		// The stores ask this of their own clients, and those have no
		// endpoints to check: the connection does.
		etcdfeature.DefaultFeatureSupportChecker.CheckClient(conn.client.Ctx(), conn.client, storage.RequestWatchProgress)
	}
	conn.clients++

	c := clientv3.NewCtxClient(context.Background(), clientv3.WithZapLogger(conn.client.GetLogger()))
	c.Cluster = clientv3.NewCluster(conn.client)
	c.KV = clientv3.NewKV(conn.client)
	c.Lease = clientv3.NewLease(conn.client)
	c.Watcher = clientWatcher{Watcher: conn.watcher, client: c.Ctx()}
	c.Auth = clientv3.NewAuth(conn.client)
	c.Maintenance = clientv3.NewMaintenance(conn.client)
	context.AfterFunc(c.Ctx(), func() { p.release(key, conn) })

	kc := &etcdkubernetes.Client{Client: c}
	kc.Kubernetes = kc
	return kc, nil
}

func (p *etcdConnections) release(key string, conn *etcdConnection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn.clients--
	if conn.clients == 0 {
		delete(p.shared, key)
		conn.client.Close()
	}
}

// clientWatcher is one client's hand on its connection's shared Watcher.
type clientWatcher struct {
	clientv3.Watcher
	client context.Context // done when the client closes
}

// Watch watches until ctx or the client is done. The merged context carries
// ctx's metadata, which picks the stream.
func (w clientWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	ctx, cancel := context.WithCancel(ctx)
	stopCancelling := context.AfterFunc(w.client, cancel)
	context.AfterFunc(ctx, func() { stopCancelling() })
	return w.Watcher.Watch(ctx, key, opts...)
}

// Close leaves the shared Watcher to the connection: the client's Close has
// cancelled its context before it closes its Watcher, which ends the
// client's watches.
func (clientWatcher) Close() error { return nil }
