package server

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDNSEndpointsOnePerNodeWithAPodCIDR(t *testing.T) {
	node := func(name, cidr string, ready corev1.ConditionStatus) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		}
		return n
	}
	eps := dnsEndpoints([]*corev1.Node{
		node("node-b", "10.42.1.0/24", corev1.ConditionUnknown),
		node("node-a", "10.42.0.0/24", corev1.ConditionTrue),
		node("new", "", corev1.ConditionTrue),             // no podCIDR yet
		node("v6", "fd00::/64", corev1.ConditionTrue),     // the Service is IPv4
		node("odd", "10.42.2.7/24", corev1.ConditionTrue), // not masked: the bridge still has .1
	})
	var got []string
	for _, ep := range eps {
		got = append(got, fmt.Sprintf("%s %s ready=%v", *ep.NodeName, ep.Addresses[0], *ep.Conditions.Ready))
	}
	want := []string{"node-a 10.42.0.1 ready=true", "node-b 10.42.1.1 ready=false", "odd 10.42.2.1 ready=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
}
