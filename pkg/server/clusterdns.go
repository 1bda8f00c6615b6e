package server

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	nodeutil "k8s.io/kubernetes/pkg/util/node"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/internal/resync"
)

// Every node serves the cluster DNS on its pod bridge's address, the first
// of its podCIDR; the Service kube-system/kube-dns, at the address that
// pods' resolv.conf names, reaches them through one EndpointSlice that
// lists each node's server, ready while the node is.
const (
	dnsServiceName = "kube-dns"
	dnsSliceName   = "kube-dns-stead"
)

var dnsPorts = []discoveryv1.EndpointPort{
	{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)},
	{Name: ptr.To("dns-tcp"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolTCP)},
}

// ensureDNSService publishes kube-system/kube-dns at the cluster DNS address.
func ensureDNSService(ctx context.Context, client kubernetes.Interface, clusterIP string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: dnsServiceName, Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
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
	return nil
}

// dnsEndpoints is the kube-dns endpoint of each node that has a podCIDR,
// in name order so that an unchanged cluster writes nothing.
func dnsEndpoints(nodes []*corev1.Node) []discoveryv1.Endpoint {
	var eps []discoveryv1.Endpoint
	for _, n := range nodes {
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{cidr.Masked().Addr().Next().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(nodeutil.IsNodeReady(n))},
			NodeName:   ptr.To(n.Name),
		})
	}
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return strings.Compare(*a.NodeName, *b.NodeName) })
	return eps
}

// runDNSEndpoints keeps the kube-dns EndpointSlice in line with the nodes.
func runDNSEndpoints(ctx context.Context, client kubernetes.Interface, factory informers.SharedInformerFactory) {
	nodes := factory.Core().V1().Nodes()
	lister := nodes.Lister()
	resync.OnChange(ctx, nodes.Informer(), "kube-dns endpoints", func(ctx context.Context) error {
		return syncDNSSlice(ctx, client, lister)
	})
}

func syncDNSSlice(ctx context.Context, client kubernetes.Interface, lister corelisters.NodeLister) error {
	all, err := lister.List(labels.Everything())
	if err != nil {
		return err
	}
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: dnsSliceName, Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			discoveryv1.LabelServiceName: dnsServiceName, discoveryv1.LabelManagedBy: "stead",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   dnsEndpoints(all),
		Ports:       dnsPorts,
	}
	return applyEndpointSlice(ctx, client, want)
}

// applyEndpointSlice makes the EndpointSlice want.Name hold want's
// addresses and ports, writing only when they differ: every write reaches
// every node's Service proxy and cluster DNS.
func applyEndpointSlice(ctx context.Context, client kubernetes.Interface, want *discoveryv1.EndpointSlice) error {
	slicesAPI := client.DiscoveryV1().EndpointSlices(want.Namespace)
	old, err := slicesAPI.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = slicesAPI.Create(ctx, want, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	if old.AddressType != want.AddressType { // immutable: made anew
		if err := slicesAPI.Delete(ctx, old.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &old.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		_, err = slicesAPI.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	labelled := true
	for k, v := range want.Labels {
		labelled = labelled && old.Labels[k] == v
	}
	if labelled && reflect.DeepEqual(old.Endpoints, want.Endpoints) && reflect.DeepEqual(old.Ports, want.Ports) {
		return nil
	}
	if old.Labels == nil {
		old.Labels = map[string]string{}
	}
	maps.Copy(old.Labels, want.Labels)
	old.Endpoints, old.Ports = want.Endpoints, want.Ports
	_, err = slicesAPI.Update(ctx, old, metav1.UpdateOptions{})
	return err
}
