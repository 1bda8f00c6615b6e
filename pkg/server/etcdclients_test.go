package server

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdkubernetes "go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/apiserver/pkg/storage"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	"k8s.io/apiserver/pkg/storage/storagebackend"
)

// plainEtcd runs an etcd of the test's own on loopback, without TLS.
func plainEtcd(t testing.TB) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	// Its complaints as it closes would land amid a benchmark's results.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	loopback := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{loopback}, []url.URL{loopback}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{loopback}, []url.URL{loopback}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready after 30s")
	}
	return "http://" + e.Clients[0].Addr().String()
}

func TestStoresShareOneETCDConnection(t *testing.T) {
	transport := storagebackend.TransportConfig{ServerList: []string{plainEtcd(t)}}
	dials := 0
	connections := &etcdConnections{
		dial: func(c storagebackend.TransportConfig) (*etcdkubernetes.Client, error) {
			dials++
			return etcdkubernetes.New(clientv3.Config{Endpoints: c.ServerList, DialTimeout: 10 * time.Second})
		},
		shared: map[string]*etcdConnection{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var clients []*etcdkubernetes.Client
	for range 3 {
		c, err := connections.client(transport)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if dials != 1 {
		t.Fatalf("3 clients dialled %d connections, want 1", dials)
	}
	shared := connections.shared[fmt.Sprintf("%v", transport)].client
	// The stores' own clients have no endpoints to check the watch-progress
	// feature on; the shared connection is checked in their place, while it
	// lasts (the checker looks at an endpoint once per process).
	deadline := time.Now().Add(10 * time.Second)
	for !etcdfeature.DefaultFeatureSupportChecker.Supports(storage.RequestWatchProgress) {
		if time.Now().After(deadline) {
			t.Fatal("RequestWatchProgress not known supported 10s after the connection was made")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The clients' watches share one stream; closing the first client ends
	// its watch, and neither the others' nor their reads and writes.
	streamsBefore := watchStreams(t)
	watches := make([]clientv3.WatchChan, len(clients))
	for i, c := range clients {
		watches[i] = c.Watch(clientv3.WithRequireLeader(ctx), "/k", clientv3.WithPrefix())
	}
	if _, err := clients[1].Put(ctx, "/k/before", "1"); err != nil {
		t.Fatal(err)
	}
	for i, w := range watches {
		if got := nextKey(t, w); got != "/k/before" {
			t.Fatalf("client %d watched %q, want /k/before", i, got)
		}
	}
	if opened := watchStreams(t) - streamsBefore; opened != 1 {
		t.Fatalf("3 clients' watches opened %v watch streams, want 1", opened)
	}
	clients[0].Close()
	if _, err := clients[2].Put(ctx, "/k/after", "2"); err != nil {
		t.Fatalf("a put after another client closed: %v", err)
	}
	for i, w := range watches[1:] {
		if got := nextKey(t, w); got != "/k/after" {
			t.Fatalf("client %d watched %q after client 0 closed, want /k/after", i+1, got)
		}
	}
	if _, ok := <-watches[0]; ok {
		t.Fatal("the closed client's watch still delivers")
	}
	if shared.Ctx().Err() != nil {
		t.Fatal("the shared connection closed with its first client")
	}

	// A client's release runs once its context is done (context.AfterFunc),
	// on a goroutine of its own: the shared connection closes a moment
	// after its last client.
	clients[1].Close()
	clients[2].Close()
	select {
	case <-shared.Ctx().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the shared connection outlived its last client")
	}
	connections.mu.Lock()
	listed := len(connections.shared)
	connections.mu.Unlock()
	if listed != 0 {
		t.Fatalf("%d connections still listed after their last client closed", listed)
	}
	c, err := connections.client(transport)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if dials != 2 {
		t.Fatalf("a client after the last one closed dialled %d times in all, want 2", dials)
	}
	if _, err := c.Client.Get(ctx, "/k/after"); err != nil {
		t.Fatalf("get on a connection dialled again: %v", err)
	}
}

// TestAPIServerFactoryShares checks that shareETCDConnections reaches the
// API server's storage factory: clients made through its constructor share
// one TCP connection.
func TestAPIServerFactoryShares(t *testing.T) {
	endpoint := plainEtcd(t)
	shareETCDConnections()
	transport := storagebackend.TransportConfig{ServerList: []string{endpoint}}
	for range 5 {
		c, err := newETCD3Client(transport)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Client.Get(context.Background(), "/any"); err != nil {
			t.Fatal(err)
		}
	}
	// The watch-progress check of a new endpoint (etcdclients.go) asks it
	// for its status on a connection of its own, in the background and for
	// a moment: what stays is the clients'.
	port := endpoint[strings.LastIndex(endpoint, ":")+1:]
	n := connectionsTo(t, port)
	for deadline := time.Now().Add(10 * time.Second); n != 1 && time.Now().Before(deadline); n = connectionsTo(t, port) {
		time.Sleep(10 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("5 clients hold %d TCP connections to etcd, want 1", n)
	}
}

// connectionsTo counts this process's established TCP connections to a
// loopback port (given in decimal).
func connectionsTo(t *testing.T, port string) int {
	t.Helper()
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	// The table is the network namespace's, every process's: only the
	// sockets among this process's open files count (another test binary
	// of the same run may be dialling a port this etcd was given again).
	table, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil {
			if inode, ok := strings.CutPrefix(target, "socket:["); ok {
				mine[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	remote := fmt.Sprintf("0100007F:%04X", p)
	n := 0
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[2] == remote && f[3] == "01" && mine[f[9]] { // 01: ESTABLISHED
			n++
		}
	}
	return n
}

// watchStreams reads how many watch streams the etcd servers of this
// process have open.
func watchStreams(t *testing.T) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "etcd_debugging_mvcc_watch_stream_total" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("etcd's watch stream gauge is not registered")
	return 0
}

func nextKey(t *testing.T, w clientv3.WatchChan) string {
	t.Helper()
	select {
	case resp, ok := <-w:
		if !ok || len(resp.Events) == 0 {
			t.Fatalf("watch ended (%v, err %v)", ok, resp.Err())
		}
		return string(resp.Events[0].Kv.Key)
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event in 10s")
	}
	return ""
}

// BenchmarkWatchDelivery measures how long a write takes to reach its
// store's watch when 60 stores watch through one connection, with the
// stores' watches on one shared stream (as etcdConnections makes them) or
// on a stream each (upstream's). Each op is a burst of 200 writes, spread
// over the stores from 8 writers at once.
func BenchmarkWatchDelivery(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "stream-per-store"
		if shared {
			name = "one-shared-stream"
		}
		b.Run(name, func(b *testing.B) { benchmarkWatchDelivery(b, shared) })
	}
}

func benchmarkWatchDelivery(b *testing.B, shared bool) {
	const stores, writers, burst = 60, 8, 200
	endpoint := plainEtcd(b)
	conn, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer cancel()
	sent := make([]sync.Map, stores) // key → time.Time of its put
	var latencies []time.Duration
	var mu sync.Mutex
	var seen sync.WaitGroup
	for i := range stores {
		watcher := conn.Watcher
		if !shared {
			watcher = clientv3.NewWatcher(conn)
			defer watcher.Close()
		}
		w := watcher.Watch(ctx, fmt.Sprintf("/s%02d/", i), clientv3.WithPrefix())
		go func() {
			for resp := range w {
				now := time.Now()
				for _, ev := range resp.Events {
					if at, ok := sent[i].Load(string(ev.Kv.Key)); ok {
						mu.Lock()
						latencies = append(latencies, now.Sub(at.(time.Time)))
						mu.Unlock()
						seen.Done()
					}
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // the watches are open
	value := strings.Repeat("v", 1000)
	n := 0
	b.ResetTimer()
	for range b.N {
		seen.Add(burst)
		var writing sync.WaitGroup
		for w := range writers {
			writing.Go(func() {
				for j := w; j < burst; j += writers {
					store := (n*burst + j) % stores
					key := fmt.Sprintf("/s%02d/%d-%d", store, n, j)
					sent[store].Store(key, time.Now())
					if _, err := conn.Put(ctx, key, value); err != nil {
						b.Error(err)
					}
				}
			})
		}
		writing.Wait()
		seen.Wait()
		n++
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds()), "max-µs")
}
