package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Pods reach the API server through the `kubernetes` Service in default,
// whose ClusterIP every pod is given (KUBERNETES_SERVICE_HOST) and in-cluster
// clients connect to. Its endpoints are the API server's own business:
// upstream's endpoint reconciler writes them, with a lease per server when
// several share an etcd. With the embedded etcd there is one server, and a
// server that listens on loopback only is not reachable from another
// machine, so it has no peers to share the endpoints with: stead runs the
// reconciler "none" then (see apiServerArgs) and writes the endpoints
// itself, naming an address the pods can reach.

const (
	apiServiceName = "kubernetes"
	apiPortName    = "https"
	// apiEndpointResync is how often the endpoints are written again if
	// someone changed or deleted them.
	apiEndpointResync = 30 * time.Second
)

// leaseReconciled tells whether upstream's lease reconciler keeps the
// endpoints: for servers that share an external etcd and listen where
// others reach them. Upstream would publish a loopback-bound server at the
// host's default address, where it does not listen.
func (s *Server) leaseReconciled() bool {
	bind, err := netip.ParseAddr(s.cfg.BindAddress)
	return len(s.cfg.EtcdServers) != 0 && err == nil && !bind.IsLoopback()
}

// ReachableAddress is the address at which pods on other machines can reach
// this API server: its bind address, or the host's default one when it
// binds all; none (ok false) when it listens on loopback only.
func (s *Server) ReachableAddress() (addr netip.Addr, ok bool) {
	bind, err := netip.ParseAddr(s.cfg.BindAddress)
	switch {
	case err != nil || bind.IsLoopback():
		return addr, false
	case bind.IsUnspecified():
		host, err := utilnet.ChooseHostInterface()
		if err != nil {
			return addr, false
		}
		addr, ok = netip.AddrFromSlice(host)
		return addr.Unmap(), ok
	}
	return bind, true
}

// PublishAPIEndpoint makes addr the `kubernetes` Service's endpoint, kept
// until ctx ends, when the API server's own reconciler does not (that is,
// with the embedded etcd). An API server that does not listen on addr is
// relayed to from there: `stead up` publishes its node's bridge address,
// where its pods reach it, while the API server listens on loopback.
func (s *Server) PublishAPIEndpoint(ctx context.Context, addr netip.Addr) error {
	if s.leaseReconciled() {
		return nil // the lease reconciler publishes every server
	}
	port := s.cfg.HTTPSPort
	bind, err := netip.ParseAddr(s.cfg.BindAddress)
	if err != nil {
		return fmt.Errorf("--bind-address: %w", err)
	}
	if !bind.IsUnspecified() && bind != addr {
		listen := netip.AddrPortFrom(addr, uint16(port)).String()
		target := netip.AddrPortFrom(bind, uint16(port)).String()
		if err := relay(ctx, listen, target); err != nil {
			return fmt.Errorf("API server relay for pods: %w", err)
		}
	}
	client, err := kubernetes.NewForConfig(s.ControllerConfig())
	if err != nil {
		return err
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := ensureAPIEndpoints(ctx, client, addr, int32(port)); err != nil {
			klog.ErrorS(err, "kubernetes Service endpoints")
		}
	}, apiEndpointResync)
	return nil
}

// ensureAPIEndpoints writes the `kubernetes` Service's EndpointSlice and,
// for the clients that still read them, its Endpoints (marked not to be
// mirrored into a second slice), as upstream's reconciler does; only what
// differs from what is there.
func ensureAPIEndpoints(ctx context.Context, client kubernetes.Interface, addr netip.Addr, port int32) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: apiServiceName, Namespace: metav1.NamespaceDefault, Labels: map[string]string{
			discoveryv1.LabelServiceName: apiServiceName, discoveryv1.LabelManagedBy: "stead",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(apiPortName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if addr.Is6() {
		slice.AddressType = discoveryv1.AddressTypeIPv6
	}
	if err := applyEndpointSlice(ctx, client, slice); err != nil {
		return err
	}

	endpoints := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: apiServiceName, Namespace: metav1.NamespaceDefault, Labels: map[string]string{
			discoveryv1.LabelSkipMirror: "true",
		}},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: addr.String()}},
			Ports:     []corev1.EndpointPort{{Name: apiPortName, Port: port, Protocol: corev1.ProtocolTCP}},
		}},
	}
	legacy := client.CoreV1().Endpoints(metav1.NamespaceDefault)
	old, err := legacy.Get(ctx, apiServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = legacy.Create(ctx, endpoints, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	if reflect.DeepEqual(old.Subsets, endpoints.Subsets) && old.Labels[discoveryv1.LabelSkipMirror] == "true" {
		return nil
	}
	if old.Labels == nil {
		old.Labels = map[string]string{}
	}
	old.Labels[discoveryv1.LabelSkipMirror] = "true"
	old.Subsets = endpoints.Subsets
	_, err = legacy.Update(ctx, old, metav1.UpdateOptions{})
	return err
}

// relay accepts TCP connections on listen and joins each to a connection
// of its own to target, until ctx ends. TLS passes through untouched: the
// API server's certificate names its Service.
func relay(ctx context.Context, listen, target string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				klog.ErrorS(err, "API server relay: accept")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			go splice(ctx, conn, target)
		}
	}()
	return nil
}

func splice(ctx context.Context, conn net.Conn, target string) {
	defer conn.Close()
	var d net.Dialer
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	up, err := d.DialContext(dialCtx, "tcp", target)
	cancel()
	if err != nil {
		klog.ErrorS(err, "API server relay: dial", "target", target)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close(); up.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, conn)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(conn, up)
	_ = conn.(*net.TCPConn).CloseWrite()
	<-done
}
