package server

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// etcdStopTimeout bounds shutdown: embed.Etcd.Close can wait on in-flight
// requests forever, and a stuck stop must not keep the data dir locked.
const etcdStopTimeout = 10 * time.Second

// startEtcd runs the embedded etcd on loopback, on ports the kernel picks so
// that several clusters can run side by side (tests do), with mutual TLS so
// that no other local user can read the cluster's secrets from it.
func startEtcd(ctx context.Context, dataDir string, creds *credentials, logFile string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "stead"
	cfg.Dir = filepath.Join(dataDir, "etcd")
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{logFile}
	loopback := url.URL{Scheme: "https", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{loopback}
	cfg.AdvertiseClientUrls = []url.URL{loopback}
	cfg.ListenPeerUrls = []url.URL{loopback}
	cfg.AdvertisePeerUrls = []url.URL{loopback}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	tls := func() (ti transport.TLSInfo) {
		ti.CertFile, ti.KeyFile, ti.TrustedCAFile, ti.ClientCertAuth = creds.etcdCert, creds.etcdKey, creds.ca.CertFile, true
		return ti
	}
	cfg.ClientTLSInfo = tls()
	cfg.PeerTLSInfo = tls()
	// Compact history the API server no longer needs; it also compacts, but
	// an embedded etcd must not grow without bound if that ever stops.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	// A smaller snapshot interval keeps the raft log, and so memory, small.
	cfg.SnapshotCount = 5000
	// A lone member elects itself after its randomised election timeout,
	// less the ticks etcd skips for a single node: between one tick and
	// one timeout, 0.1-1.1 s with the defaults (100 ms, 1 s), on every
	// start. With no peer to hear from, a short timeout costs nothing, and
	// the start waits 20-220 ms.
	cfg.TickMs = 20
	cfg.ElectionMs = 200

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, "", ctx.Err()
	}
	return e, "https://" + e.Clients[0].Addr().String(), nil
}

func stopEtcd(e *embed.Etcd) {
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(etcdStopTimeout):
	}
}
