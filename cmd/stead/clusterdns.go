package main

import (
	"context"
	"fmt"
	"net"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/steadhq/stead/pkg/dns"
)

// startClusterDNS serves the cluster's DNS on a loopback address, for
// people and benchmarks on the host; pods reach it through the network
// that the node sets up. The sockets are bound before it returns, so a port
// in use is an error now rather than a log line later.
func startClusterDNS(ctx context.Context, cfg *rest.Config, listen, zone string, done func(error)) (net.Addr, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-dns-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--cluster-dns-listen %q: must be a loopback address such as 127.0.0.1:1053", listen)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	upstreams, err := dns.ResolvConfUpstreams("/etc/resolv.conf")
	if err != nil {
		// Names outside the cluster then get REFUSED; the cluster's own
		// names still resolve.
		klog.InfoS("cluster DNS: no upstream resolvers", "err", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	server, err := dns.New(dns.Config{Zone: zone, Upstreams: upstreams}, factory)
	if err != nil {
		return nil, err
	}
	ln, pcs, err := dns.Listen(listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-dns-listen: %w", err)
	}
	factory.Start(ctx.Done())
	go func() { done(server.Serve(ctx, ln, pcs...)) }()
	return ln.Addr(), nil
}
