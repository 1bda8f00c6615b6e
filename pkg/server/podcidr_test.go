package server

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestAssignFirstPodCIDR(t *testing.T) {
	node := func(name, cidr string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if cidr != "" {
			n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
		}
		return n
	}
	tests := []struct {
		name    string
		cluster string
		nodes   []*corev1.Node
		want    string // vm's podCIDR after
	}{
		{"the first node gets the first range", "10.42.0.0/16", []*corev1.Node{node("vm", "")}, "10.42.0.0/24"},
		{"from the range's start, whatever the address given", "10.42.7.9/16", []*corev1.Node{node("vm", "")}, "10.42.0.0/24"},
		{"a node's own podCIDR stays", "10.42.0.0/16", []*corev1.Node{node("vm", "10.42.5.0/24")}, "10.42.5.0/24"},
		{"not the first node: left to node-ipam", "10.42.0.0/16", []*corev1.Node{node("vm", ""), node("agent", "10.42.0.0/24")}, ""},
		{"a range no larger than a node's: left to node-ipam", "10.42.0.0/24", []*corev1.Node{node("vm", "")}, ""},
		{"IPv6: left to node-ipam", "fd00:42::/48", []*corev1.Node{node("vm", "")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			for _, n := range tt.nodes {
				if _, err := client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := assignFirstPodCIDR(context.Background(), client, netip.MustParsePrefix(tt.cluster), "vm"); err != nil {
				t.Fatal(err)
			}
			vm, err := client.CoreV1().Nodes().Get(context.Background(), "vm", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var cidrs []string
			if tt.want != "" {
				cidrs = []string{tt.want}
			}
			if vm.Spec.PodCIDR != tt.want || len(vm.Spec.PodCIDRs) != len(cidrs) || (len(cidrs) == 1 && vm.Spec.PodCIDRs[0] != tt.want) {
				t.Errorf("podCIDR %q, podCIDRs %q; want %q", vm.Spec.PodCIDR, vm.Spec.PodCIDRs, tt.want)
			}
		})
	}
}
