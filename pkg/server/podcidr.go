package server

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// nodeCIDRBits is the size of each node's share of the cluster's pod
// range: the node-ipam controller's default for IPv4, which stead keeps.
const nodeCIDRBits = 24

// AssignFirstPodCIDR gives node, the first node of a new cluster, the
// first node-sized range of the cluster CIDR: what upstream's node-ipam
// controller gives it too, but only once the controller manager has built
// all its controllers and synced their caches, some half a second into a
// first start that the node spends waiting. The controller takes a podCIDR
// it finds already set as allocated. Once any node has a podCIDR, or if
// node has one, it does nothing: the controller allocates as it does.
func (s *Server) AssignFirstPodCIDR(ctx context.Context, node string) error {
	cluster, err := netip.ParsePrefix(s.cfg.ClusterCIDR)
	if err != nil {
		return err
	}
	return assignFirstPodCIDR(ctx, s.AdminClient, cluster, node)
}

func assignFirstPodCIDR(ctx context.Context, client kubernetes.Interface, cluster netip.Prefix, name string) error {
	if !cluster.Addr().Is4() || cluster.Bits() >= nodeCIDRBits {
		return nil
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var node *corev1.Node
	for i, n := range nodes.Items {
		if n.Spec.PodCIDR != "" || len(n.Spec.PodCIDRs) > 0 {
			return nil
		}
		if n.Name == name {
			node = &nodes.Items[i]
		}
	}
	if node == nil {
		return fmt.Errorf("node %s is not registered", name)
	}
	first := netip.PrefixFrom(cluster.Masked().Addr(), nodeCIDRBits).String()
	node.Spec.PodCIDR, node.Spec.PodCIDRs = first, []string{first}
	// The resourceVersion read above makes this lose to any other writer,
	// the node-ipam controller among them.
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("podCIDR %s for node %s: %w", first, name, err)
	}
	return nil
}
