package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a real etcd on loopback, as an operator's external cluster.
func startEtcd(t *testing.T) string {
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(t.TempDir(), "etcd.log")}
	client, _ := url.Parse("http://127.0.0.1:0")
	peer, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready")
	}
	return "http://" + e.Clients[0].Addr().String()
}

func TestExternalEtcd(t *testing.T) {
	etcd := startEtcd(t)
	first := newCluster(t, "--etcd-servers", etcd)
	first.mustKubectl("", "create", "configmap", "kept-in-external-etcd", "--from-literal=k=1")
	first.stop()
	if entries, _ := os.ReadDir(first.dataDir); len(entries) > 0 {
		for _, e := range entries {
			if strings.Contains(e.Name(), "etcd") && e.IsDir() {
				t.Errorf("embedded etcd data %s written although --etcd-servers was given", filepath.Join(first.dataDir, e.Name()))
			}
		}
	}
	// A server on another data dir, same etcd: the objects are there.
	// Its node, pod and Service ranges are the cluster's, stored in etcd.
	second := newClusterWithFlags(t, first.extra)
	second.mustKubectl("", "get", "configmap", "kept-in-external-etcd")
	// Bound to loopback, it has no peers to share the endpoints with, and
	// upstream's lease reconciler would publish an address it does not
	// listen on.
	if err := second.importTestImages(); err != nil {
		t.Fatal(err)
	}
	podsReachTheAPIServer(t, second)
}
