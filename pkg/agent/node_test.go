package agent

import (
	"context"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func testConfig(rt *RuntimeStatus) Config {
	return Config{
		NodeName: "node-a", NodeIP: net.ParseIP("127.0.0.1"), DataDir: "/", MaxPods: 1100,
		KubeletPort: 10250, Version: "v1.37.2-stead.0",
		Runtime: func() RuntimeStatus { return *rt },
	}
}

// registeredNode is a Node of testConfig(rt) that has registered with a
// fake API server.
func registeredNode(t *testing.T, rt *RuntimeStatus) (*Node, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	n, err := NewNode(client, testConfig(rt))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n, client
}

func readyCondition(t *testing.T, node *corev1.Node) corev1.NodeCondition {
	t.Helper()
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	t.Fatal("node has no Ready condition")
	return corev1.NodeCondition{}
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	rt := &RuntimeStatus{Ready: false, Reason: "RuntimeNotBuilt", Message: "no pod runtime"}
	n, client := registeredNode(t, rt)
	node, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Labels[corev1.LabelHostname]; got != "node-a" {
		t.Errorf("hostname label = %q", got)
	}
	if pods := node.Status.Allocatable.Pods().Value(); pods != 1100 {
		t.Errorf("allocatable pods = %d, want 1100", pods)
	}
	if node.Status.Capacity.Cpu().Value() < 1 || node.Status.Capacity.Memory().Value() < 1<<20 {
		t.Errorf("capacity not read from the machine: %v", node.Status.Capacity)
	}
	if len(node.Status.Addresses) == 0 || node.Status.Addresses[0] != (corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}) {
		t.Errorf("addresses = %v", node.Status.Addresses)
	}
	if node.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port = %d", node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	ready := readyCondition(t, node)
	if ready.Status != corev1.ConditionFalse || ready.Reason != "RuntimeNotBuilt" {
		t.Errorf("Ready = %s/%s, want False/RuntimeNotBuilt while pods cannot run", ready.Status, ready.Reason)
	}

	// The runtime becomes ready: the next status write says so, and the
	// transition time moves while the other conditions' stay.
	before := node.Status.Conditions
	*rt = RuntimeStatus{Ready: true}
	n.now = func() time.Time { return time.Now().Add(time.Minute) }
	if err := n.updateStatus(ctx, node, false); err != nil {
		t.Fatal(err)
	}
	node, _ = client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if ready := readyCondition(t, node); ready.Status != corev1.ConditionTrue || ready.Reason != "KubeletReady" {
		t.Errorf("Ready = %s/%s after the runtime is ready", ready.Status, ready.Reason)
	}
	for i, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady && !c.LastTransitionTime.Equal(&before[i].LastTransitionTime) {
			t.Errorf("%s transition time moved without a transition", c.Type)
		}
	}
}

func TestLeaseIsCreatedThenRenewed(t *testing.T) {
	ctx := context.Background()
	n, client := registeredNode(t, &RuntimeStatus{Ready: true})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{t0, t0.Add(10 * time.Second)} {
		n.now = func() time.Time { return at }
		if err := n.renewLease(ctx); err != nil {
			t.Fatal(err)
		}
		lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !lease.Spec.RenewTime.Time.Equal(at) || *lease.Spec.HolderIdentity != "node-a" || *lease.Spec.LeaseDurationSeconds != 40 {
			t.Fatalf("renewal %d: lease spec %+v", i, lease.Spec)
		}
		if len(lease.OwnerReferences) != 1 || lease.OwnerReferences[0].Kind != "Node" {
			t.Fatalf("lease not owned by its node: %v", lease.OwnerReferences)
		}
	}
}

func TestNodeNameValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"node-a", true}, {"vm.example.com", true}, {"", false}, {"Upper", false}, {"-lead", false}, {"a..b", false}, {"under_score", false},
	} {
		cfg := testConfig(&RuntimeStatus{})
		cfg.NodeName = tc.name
		if _, err := NewNode(fake.NewClientset(), cfg); (err == nil) != tc.ok {
			t.Errorf("NewNode(%q): err = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}

// A node cut off from the server finds, once back, its Ready condition set
// to Unknown by the node lifecycle controller: it must say Ready again at
// once, not at its next periodic report.
func TestStatusRewrittenWhenTheServerMarkedTheNodeUnknown(t *testing.T) {
	ctx := context.Background()
	rt := &RuntimeStatus{Ready: true}
	n, client := registeredNode(t, rt)
	node, _ := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	before := len(client.Actions())
	if err := n.updateStatus(ctx, node, false); err != nil {
		t.Fatal(err)
	}
	if len(client.Actions()) != before {
		t.Fatalf("an unchanged status was written: %v", client.Actions()[before:])
	}

	for i, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			node.Status.Conditions[i].Status, node.Status.Conditions[i].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
		}
	}
	node, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.updateStatus(ctx, node, false); err != nil {
		t.Fatal(err)
	}
	node, _ = client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if c := readyCondition(t, node); c.Status != corev1.ConditionTrue {
		t.Errorf("Ready %s (%s) after the update, want True", c.Status, c.Reason)
	}
}
