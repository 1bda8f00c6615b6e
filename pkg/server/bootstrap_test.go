package server

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestBootstrapRBAC runs upstream's reconciliation through the linkname
// (a signature that no longer matches would crash here) and checks that
// the roles the cluster depends on are made, then left alone.
func TestBootstrapRBAC(t *testing.T) {
	client := fake.NewClientset()
	for run := range 2 {
		done, err := ensureBootstrapRBAC(t.Context(), client)
		if err != nil || !done {
			t.Fatalf("run %d: done %v, err %v", run, done, err)
		}
	}
	for _, name := range []string{"cluster-admin", "admin", "edit", "view", "system:node", "system:kube-scheduler", "system:controller:endpointslice-controller"} {
		if _, err := client.RbacV1().ClusterRoles().Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("ClusterRole %s: %v", name, err)
		}
	}
	for _, name := range []string{"cluster-admin", "system:kube-controller-manager", "system:basic-user"} {
		if _, err := client.RbacV1().ClusterRoleBindings().Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("ClusterRoleBinding %s: %v", name, err)
		}
	}
	if _, err := client.RbacV1().Roles("kube-system").Get(t.Context(), "extension-apiserver-authentication-reader", metav1.GetOptions{}); err != nil {
		t.Errorf("Role in kube-system: %v", err)
	}
}

func TestSystemPriorityClasses(t *testing.T) {
	client := fake.NewClientset()
	for run := range 2 {
		done, err := ensureSystemPriorityClasses(t.Context(), client)
		if err != nil || !done {
			t.Fatalf("run %d: done %v, err %v", run, done, err)
		}
	}
	for name, value := range map[string]int32{"system-cluster-critical": 2000000000, "system-node-critical": 2000001000} {
		pc, err := client.SchedulingV1().PriorityClasses().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || pc.Value != value {
			t.Errorf("PriorityClass %s: %v %v, want value %d", name, pc, err, value)
		}
	}
}
