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

// startClusterDNS serves the cluster's DNS on addrs: the bridge's address
// for pods, and an optional loopback address (--cluster-dns-listen) for
// people and benchmarks on the host. Sockets are bound before it returns,
// so a port in use is an error now rather than a log line later. The
// server's informers come from factory, which the caller starts after.
func startClusterDNS(ctx context.Context, factory informers.SharedInformerFactory, addrs []string, zone string, progress func(string)) error {
	upstreams, err := dns.ResolvConfUpstreams("/etc/resolv.conf")
	if err != nil {
		// Names outside the cluster then get REFUSED; the cluster's own
		// names still resolve.
		klog.InfoS("cluster DNS: no upstream resolvers", "err", err)
	}
	server, err := dns.New(dns.Config{Zone: zone, Upstreams: upstreams}, factory)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		ln, pcs, err := dns.Listen(addr)
		if err != nil {
			return fmt.Errorf("cluster DNS on %s: %w", addr, err)
		}
		go func() {
			if err := server.Serve(ctx, ln, pcs...); err != nil {
				klog.ErrorS(err, "cluster DNS", "addr", addr)
			}
		}()
		progress("cluster DNS answering on " + ln.Addr().String() + " (zone " + zone + ")")
	}
	return nil
}

// startHostClusterDNS serves the cluster's DNS on addr alone, for a server
// without a node of its own, from informers of its own.
func startHostClusterDNS(ctx context.Context, cfg *rest.Config, addr, zone string, progress func(string)) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	if err := startClusterDNS(ctx, factory, []string{addr}, zone, progress); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	return nil
}

// checkDNSListen accepts only loopback addresses for --cluster-dns-listen:
// load from tests and benchmarks must stay on this machine.
func checkDNSListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--cluster-dns-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--cluster-dns-listen %q: must be a loopback address such as 127.0.0.1:1053", addr)
	}
	return nil
}
