package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"

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

// nodeOptions are the flags of a node, in `stead up` and `stead agent`.
type nodeOptions struct {
	nodeName         string
	nodeIP           string
	maxPods          int
	bridge           string
	kubeletPort      int
	clusterDNSListen string
	cleanup          bool
}

func (o *nodeOptions) register(fs *pflag.FlagSet, nodeIPHelp string) {
	fs.StringVar(&o.nodeName, "node-name", agent.DefaultNodeName(), "name of this node")
	fs.StringVar(&o.nodeIP, "node-ip", "", "address of this node "+nodeIPHelp)
	fs.IntVar(&o.maxPods, "max-pods", 1100, "pods this node accepts")
	fs.StringVar(&o.bridge, "node-bridge", "stead0", "the node's bridge for pods (several clusters on one machine need one each)")
	fs.IntVar(&o.kubeletPort, "kubelet-port", 10250, "port of the node's kubelet API")
	fs.BoolVar(&o.cleanup, "cleanup", false, "on stopping, remove what the node otherwise leaves running for the next start to adopt: its pods' containers and mounts, its bridge, routes and Service rules (nft table)")
}

// nodeCluster is what a node needs of the cluster it is part of: its
// identity there and the cluster's settings.
type nodeCluster struct {
	dataDir string
	nodeIP  net.IP
	// client is the node's own identity, system:node:<name>.
	client *rest.Config
	// services reads what the Service proxy and cluster DNS serve and
	// provisions local volumes: stead's controller identity in `stead up`,
	// the node's own (with the system:stead-node role) in `stead agent`.
	services *rest.Config
	ca       *x509.Certificate
	// servingCertificate is the kubelet API's, for the node's name and IP.
	servingCertificate func(ctx context.Context, client kubernetes.Interface) (tls.Certificate, error)
	// rotateCertificates renews the node's certificates as they come due
	// while ctx lasts, handing each new serving one to serve.
	rotateCertificates func(ctx context.Context, client kubernetes.Interface, serve func(tls.Certificate))
	clusterDNSIP       string
	clusterDomain      string
	serviceCIDR        netip.Prefix
	clusterCIDR        netip.Prefix
	// selfFencing makes the node kill its pods when its Lease renewals
	// stop (pkg/agent/fence.go), so that the server may fail them over.
	selfFencing bool
	// publishAPI, in `stead up`, makes the API server reachable from pods
	// at the node's bridge address, behind the kubernetes Service.
	publishAPI func(ctx context.Context, bridge netip.Addr) error
	// assignPodCIDR, in `stead up`, gives the first node of a new cluster
	// its podCIDR without waiting for the controller manager.
	assignPodCIDR func(ctx context.Context, node string) error
}

// podCgroupParent is the cgroup under which a node's pods have theirs.
const podCgroupParent = "stead"

// startNode makes this machine a node of the cluster in this process: it
// registers the Node, sets up the pod network, routes to other nodes'
// pods, Service rules, cluster DNS for pods, the kubelet API and the pod
// runtime, then reports Ready.
func startNode(ctx context.Context, c nodeCluster, o nodeOptions, progress func(string)) error {
	nodeIP := c.nodeIP
	restCfg := rest.CopyConfig(c.client)
	// The kubelet's defaults (kubeAPIQPS 50, burst 100); client-go's own
	// 5 and 10 starve a node that starts many pods at once: each needs a
	// token, the cluster CA, a Service lookup and a few status writes.
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	servicesClient, err := kubernetes.NewForConfig(c.services)
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
	nodeCfg := agent.Config{
		NodeName: o.nodeName, NodeIP: nodeIP, DataDir: c.dataDir, MaxPods: o.maxPods,
		KubeletPort: int32(o.kubeletPort), Version: version.Get().GitVersion, Runtime: runtimeStatus,
	}
	if c.selfFencing {
		nodeCfg.Heartbeat, _, _ = fenceKeeperFiles(c.dataDir)
		if err := ensureFenceKeeper(c.dataDir); err != nil {
			return err
		}
	}
	node, err := agent.NewNode(client, nodeCfg)
	if err != nil {
		return err
	}
	if err := node.Register(ctx); err != nil {
		return err
	}
	go node.Run(ctx)

	if c.assignPodCIDR != nil {
		if err := c.assignPodCIDR(ctx, o.nodeName); err != nil {
			// The node-ipam controller gives it one a moment later.
			klog.ErrorS(err, "Assigning the first node's podCIDR")
		}
	}
	podCIDR, err := waitForPodCIDR(ctx, client, o.nodeName)
	if err != nil {
		return err
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	pods, err := network.Setup(network.Config{Bridge: o.bridge, PodCIDR: podCIDR, StateDir: filepath.Join(c.dataDir, "network", "addresses")})
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	if c.publishAPI != nil {
		if err := c.publishAPI(ctx, pods.Gateway()); err != nil {
			return err
		}
	}
	images, err := image.Open(filepath.Join(c.dataDir, "images"))
	if err != nil {
		return err
	}
	containers, err := runtime.New(filepath.Join(c.dataDir, "run"), podCgroupParent)
	if err != nil {
		return err
	}

	// Services, routes and volumes: from the services identity's view.
	servicesFactory := informers.NewSharedInformerFactory(servicesClient, 0)
	nft, err := proxy.NewNFTables(proxyTable(o.bridge))
	if err != nil {
		return err
	}
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", o.nodeName).String()
	}))
	serviceProxy := proxy.New(nft, c.serviceCIDR, servicesFactory).ForNode(c.clusterCIDR, nodeFactory.Core().V1().Pods())
	volumes := storage.NewLocalPath(o.nodeName, filepath.Join(c.dataDir, "storage"), servicesClient, servicesFactory)
	network.RunRoutes(ctx, o.nodeName, servicesFactory)

	// Cluster DNS for pods: on the bridge's address, which the server
	// publishes behind the kube-dns Service's ClusterIP that every pod's
	// resolv.conf names.
	dnsAddrs := []string{net.JoinHostPort(pods.Gateway().String(), "53")}
	if o.clusterDNSListen != "" {
		dnsAddrs = append(dnsAddrs, o.clusterDNSListen)
	}
	if err := startClusterDNS(ctx, servicesFactory, dnsAddrs, c.clusterDomain, progress); err != nil {
		return err
	}

	nodeRuntime := &agent.NodeRuntime{
		Images: images, Network: pods, Containers: containers, Client: client, NodeIP: nodeIP.String(),
		PodsDir: filepath.Join(c.dataDir, "pods"), ClusterDNS: c.clusterDNSIP, ClusterDomain: c.clusterDomain,
		PrepareMount: volumes.PrepareMount,
	}
	podManager := agent.NewPodManager(o.nodeName, nodeIP.String(), client, nodeRuntime, nodeFactory.Core().V1().Pods())
	if c.selfFencing {
		podManager.FenceWith(node.Fenced)
	}

	cert, err := c.servingCertificate(ctx, client)
	if err != nil {
		return err
	}
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&cert)
	if c.rotateCertificates != nil {
		go c.rotateCertificates(ctx, client, func(cert tls.Certificate) { serving.Store(&cert) })
	}
	cas := x509.NewCertPool()
	cas.AddCert(c.ca)
	kubeletAPI := kubeletapi.New(kubeletapi.Config{
		NodeName: o.nodeName, ClientCAs: cas, Certificate: serving.Load, Client: client, Pods: nodeFactory.Core().V1().Pods().Lister(),
	}, agent.Streaming{Node: nodeRuntime})

	servicesFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	go serviceProxy.Run(ctx)
	go volumes.Run(ctx, 2)
	go podManager.Run(ctx, 8)
	go func() {
		if err := kubeletAPI.ListenAndServe(ctx, net.JoinHostPort(nodeIP.String(), fmt.Sprint(o.kubeletPort))); err != nil {
			klog.ErrorS(err, "kubelet API")
		}
	}()
	close(ready)
	if err := node.Register(ctx); err != nil { // write Ready now, not at the next status tick
		return err
	}
	progress(fmt.Sprintf("node %s Ready (pod network %s on %s)", o.nodeName, podCIDR, o.bridge))
	return nil
}

// inProcessNode is the cluster as the node inside `stead up` sees it:
// credentials issued directly by the server beside it.
func inProcessNode(srv *server.Server, o nodeOptions) (nodeCluster, error) {
	cfg := srv.Config()
	nodeIP := net.ParseIP(o.nodeIP)
	if o.nodeIP == "" {
		nodeIP = net.ParseIP(cfg.BindAddress)
		if nodeIP.IsUnspecified() {
			nodeIP = net.IPv4(127, 0, 0, 1)
		}
	} else if nodeIP == nil {
		return nodeCluster{}, fmt.Errorf("--node-ip %q is not an IP address", o.nodeIP)
	}
	var serving *x509.Certificate // the kubelet API's, once issued
	kubeconfig, err := srv.ClientKubeconfig("node", "system:node:"+o.nodeName, []string{"system:nodes"})
	if err != nil {
		return nodeCluster{}, err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nodeCluster{}, err
	}
	return nodeCluster{
		dataDir:  cfg.DataDir,
		nodeIP:   nodeIP,
		client:   restCfg,
		services: srv.ControllerConfig(),
		ca:       srv.CA(),
		servingCertificate: func(context.Context, kubernetes.Interface) (tls.Certificate, error) {
			cert, err := srv.IssueServingCertificate(o.nodeName, []string{o.nodeName, "localhost"}, []net.IP{nodeIP})
			serving = cert.Leaf
			return cert, err
		},
		// The client certificate is the server's to renew (ClientKubeconfig).
		rotateCertificates: func(ctx context.Context, _ kubernetes.Interface, serve func(tls.Certificate)) {
			srv.RenewServingCertificate(ctx, serving, serve)
		},
		clusterDNSIP:  cfg.ClusterDNSIP().String(),
		clusterDomain: cfg.ClusterDomain,
		serviceCIDR:   netip.MustParsePrefix(cfg.ServiceCIDR),
		clusterCIDR:   netip.MustParsePrefix(cfg.ClusterCIDR),
		publishAPI:    srv.PublishAPIEndpoint,
		assignPodCIDR: srv.AssignFirstPodCIDR,
	}, nil
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
