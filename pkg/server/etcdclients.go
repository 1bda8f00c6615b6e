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
// Every client the factory hands out still has a Watcher and a Lease of its
// own over that connection: the store's watches run on their own gRPC
// stream, and closing one store's client (its Close cancels its context and
// closes those two) ends nothing of another's. The connection closes with
// the last client that shares it.

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
		conn = &etcdConnection{client: dialled.Client}
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
	c.Watcher = clientv3.NewWatcher(conn.client)
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
