package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/agent"
	"github.com/steadhq/stead/pkg/image"
	"github.com/steadhq/stead/pkg/kubeletapi"
	"github.com/steadhq/stead/pkg/network"
	"github.com/steadhq/stead/pkg/proxy"
	"github.com/steadhq/stead/pkg/runtime"
	"github.com/steadhq/stead/pkg/server"
	"github.com/steadhq/stead/pkg/storage"
)

// The stead binary is its containers' init.
func init() { runtime.Init() }

// startNode makes this machine a node of the cluster in this process: it
// registers the Node, sets up the pod network, Service rules, cluster DNS
// for pods, the kubelet API and the pod runtime, then reports Ready.
func startNode(ctx context.Context, srv *server.Server, f *serverFlags, progress func(string)) error {
	cfg := srv.Config()
	nodeIP := net.ParseIP(f.nodeIP)
	if f.nodeIP == "" {
		nodeIP = net.ParseIP(cfg.BindAddress)
		if nodeIP.IsUnspecified() {
			nodeIP = net.IPv4(127, 0, 0, 1)
		}
	} else if nodeIP == nil {
		return fmt.Errorf("--node-ip %q is not an IP address", f.nodeIP)
	}
	kubeconfig := filepath.Join(cfg.DataDir, "cred", "node.kubeconfig")
	if err := srv.WriteKubeconfig(kubeconfig, "system:node:"+f.nodeName, []string{"system:nodes"}); err != nil {
		return err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	// The kubelet's defaults (kubeAPIQPS 50, burst 100); client-go's own
	// 5 and 10 starve a node that starts many pods at once: each needs a
	// token, the cluster CA, a Service lookup and a few status writes.
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	controllerClient, err := kubernetes.NewForConfig(srv.ControllerConfig())
	if err != nil {
		return err
	}

	ready := make(chan struct{})
	runtimeStatus := func() agent.RuntimeStatus {
		select {
		case <-ready:
			return agent.RuntimeStatus{Ready: true}
		default:
			return agent.RuntimeStatus{Reason: "PodRuntimeStarting", Message: "the pod network and runtime are being set up"}
		}
	}
	node, err := agent.NewNode(client, agent.Config{
		NodeName: f.nodeName, NodeIP: nodeIP, DataDir: cfg.DataDir, MaxPods: f.maxPods,
		KubeletPort: int32(f.kubeletPort), Version: version.Get().GitVersion, Runtime: runtimeStatus,
	})
	if err != nil {
		return err
	}
	if err := node.Register(ctx); err != nil {
		return err
	}
	go node.Run(ctx)

	podCIDR, err := waitForPodCIDR(ctx, client, f.nodeName)
	if err != nil {
		return err
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	pods, err := network.Setup(network.Config{Bridge: f.bridge, PodCIDR: podCIDR, StateDir: filepath.Join(cfg.DataDir, "network", "addresses")})
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	images, err := image.Open(filepath.Join(cfg.DataDir, "images"))
	if err != nil {
		return err
	}
	containers, err := runtime.New(filepath.Join(cfg.DataDir, "run"), "stead")
	if err != nil {
		return err
	}

	// Services: rules from the controller identity's view of the cluster.
	controllerFactory := informers.NewSharedInformerFactory(controllerClient, 0)
	table := proxy.DefaultTable
	if f.bridge != "stead0" {
		table += "-" + f.bridge // another cluster's node on this machine
	}
	nft, err := proxy.NewNFTables(table)
	if err != nil {
		return err
	}
	serviceProxy := proxy.New(nft, netip.MustParsePrefix(cfg.ServiceCIDR), controllerFactory)
	volumes := storage.NewLocalPath(f.nodeName, filepath.Join(cfg.DataDir, "storage"), controllerClient, controllerFactory)

	// Cluster DNS for pods: on the bridge's address, behind the kube-dns
	// Service's ClusterIP that every pod's resolv.conf names.
	dnsAddrs := []string{net.JoinHostPort(pods.Gateway().String(), "53")}
	if f.clusterDNSListen != "" {
		dnsAddrs = append(dnsAddrs, f.clusterDNSListen)
	}
	if err := startClusterDNS(ctx, srv.ControllerConfig(), dnsAddrs, cfg.ClusterDomain, progress); err != nil {
		return err
	}
	// kube-system appears a moment after the API server: retry until then.
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		lastErr = ensureDNSService(ctx, srv.AdminClient, cfg.ClusterDNSIP().String(), pods.Gateway().String())
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("publish the cluster DNS service: %w (last error: %v)", err, lastErr)
	}

	nodeRuntime := &agent.NodeRuntime{
		Images: images, Network: pods, Containers: containers, Client: client,
		PodsDir: filepath.Join(cfg.DataDir, "pods"), ClusterDNS: cfg.ClusterDNSIP().String(), ClusterDomain: cfg.ClusterDomain,
	}
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", f.nodeName).String()
	}))
	podManager := agent.NewPodManager(f.nodeName, nodeIP.String(), client, nodeRuntime, nodeFactory.Core().V1().Pods())

	cert, err := srv.IssueServingCertificate(f.nodeName, []string{f.nodeName, "localhost"}, []net.IP{nodeIP})
	if err != nil {
		return err
	}
	cas := x509.NewCertPool()
	cas.AddCert(srv.CA())
	kubeletAPI := kubeletapi.New(kubeletapi.Config{
		NodeName: f.nodeName, ClientCAs: cas, Certificate: cert, Client: client, Pods: nodeFactory.Core().V1().Pods().Lister(),
	}, agent.Streaming{Node: nodeRuntime})

	controllerFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	go serviceProxy.Run(ctx)
	go volumes.Run(ctx, 2)
	go podManager.Run(ctx, 8)
	go func() {
		if err := kubeletAPI.ListenAndServe(ctx, net.JoinHostPort(nodeIP.String(), fmt.Sprint(f.kubeletPort))); err != nil {
			klog.ErrorS(err, "kubelet API")
		}
	}()
	close(ready)
	if err := node.Register(ctx); err != nil { // write Ready now, not at the next status tick
		return err
	}
	progress(fmt.Sprintf("node %s Ready (pod network %s on %s)", f.nodeName, podCIDR, f.bridge))
	return nil
}

// waitForPodCIDR waits for the node IPAM controller to give this node its
// share of the cluster's pod range.
func waitForPodCIDR(ctx context.Context, client kubernetes.Interface, name string) (netip.Prefix, error) {
	var cidr netip.Prefix
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || n.Spec.PodCIDR == "" {
			return false, nil
		}
		cidr, err = netip.ParsePrefix(n.Spec.PodCIDR)
		return err == nil, err
	})
	if err != nil {
		return cidr, fmt.Errorf("node %s got no podCIDR: %w", name, err)
	}
	return cidr, nil
}

// enableForwarding lets the node route pods' traffic to Service IPs and
// makes bridged traffic pass netfilter, so Service rules see pod-to-pod
// connections, as every Kubernetes node needs.
func enableForwarding() error {
	for path, value := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":                "1",
		"/proc/sys/net/bridge/bridge-nf-call-iptables": "1",
	} {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("%s: %w (is the br_netfilter module loaded?)", path, err)
		}
	}
	return nil
}

// ensureDNSService publishes the node's DNS server as kube-system/kube-dns
// at the cluster DNS address that pods' resolv.conf names.
func ensureDNSService(ctx context.Context, client kubernetes.Interface, clusterIP, serverIP string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
		}},
	}
	// Get before Create: creating a Service whose cluster IP is taken, even
	// by this very Service, fails as Invalid rather than AlreadyExists.
	services := client.CoreV1().Services(metav1.NamespaceSystem)
	existing, err := services.Get(ctx, svc.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := services.Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("kube-dns service: %w", err)
		}
	case err != nil:
		return fmt.Errorf("kube-dns service: %w", err)
	case existing.Spec.ClusterIP != clusterIP:
		return fmt.Errorf("kube-dns service has cluster IP %s, but pods are told the cluster DNS is %s: delete the service or start stead with the service CIDR it was made with", existing.Spec.ClusterIP, clusterIP)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-stead", Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "stead",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{serverIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)},
			{Name: ptr.To("dns-tcp"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	slices := client.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem)
	if _, err := slices.Create(ctx, slice, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		old, err := slices.Get(ctx, slice.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		old.Endpoints, old.Ports = slice.Endpoints, slice.Ports
		_, err = slices.Update(ctx, old, metav1.UpdateOptions{})
		return err
	} else if err != nil {
		return fmt.Errorf("kube-dns endpoints: %w", err)
	}
	return nil
}
