package server

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/steadhq/stead/pkg/join"
)

// steadControllerRole is what stead's own controllers may do: the upstream
// StatefulSet controller's rights (plus PVC patch, for resizing claims from
// the template), the local-path provisioner's, and reading what the cluster
// DNS serves.
const steadControllerRole = "system:stead-controller"

func steadControllerRules() []rbacv1.PolicyRule {
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/status", "statefulsets/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"pods", "persistentvolumeclaims"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"pods/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"services", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "update", "patch"}},
		// The cluster DNS Service's endpoints: one per node (clusterdns.go);
		// failing over fenced nodes (pkg/failover): their Leases and taint.
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}},
		// Electing the server that runs these controllers (leader.go).
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{steadControllersLease}, Verbs: []string{"update"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"create", "update"}},
		// The kubernetes Service's endpoints (apiendpoint.go).
		{APIGroups: []string{""}, Resources: []string{"endpoints"}, ResourceNames: []string{apiServiceName}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"endpoints"}, Verbs: []string{"create"}},
		// Nodes' kubelet API serving certificates (pkg/join's approver).
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{certificatesv1.KubeletServingSignerName}, Verbs: []string{"approve"}},
	}
}

// steadNodeRole is what a joined node (`stead agent`, group system:nodes)
// may do beyond what the Node authorizer gives every kubelet: read what its
// Service proxy and cluster DNS serve (as kube-proxy and CoreDNS do), see
// the other nodes to route to their pods (as flannel does), and provision
// local volumes on itself (as the local-path provisioner does).
const steadNodeRole = "system:stead-node"

func steadNodeRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "namespaces", "nodes"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: read},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "update", "patch"}},
	}
}

func groupSubject(name string) []rbacv1.Subject {
	return []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: name}}
}

func clusterRoleBinding(name, role string, subjects []rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

// ensureRBAC grants stead's identities their roles; it runs at every start,
// so that an upgrade that adds a rule takes effect.
func ensureRBAC(ctx context.Context, client kubernetes.Interface) error {
	roles := client.RbacV1().ClusterRoles()
	for _, role := range []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: steadControllerRole}, Rules: steadControllerRules()},
		{ObjectMeta: metav1.ObjectMeta{Name: steadNodeRole}, Rules: steadNodeRules()},
	} {
		if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			old, err := roles.Get(ctx, role.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("cluster role %s: %w", role.Name, err)
			}
			old.Rules = role.Rules
			if _, err := roles.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("cluster role %s: %w", role.Name, err)
			}
		} else if err != nil {
			return fmt.Errorf("cluster role %s: %w", role.Name, err)
		}
	}
	bindings := []*rbacv1.ClusterRoleBinding{
		clusterRoleBinding(steadControllerRole, steadControllerRole,
			[]rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: SteadControllerUser}}),
		// The API server reaches nodes' kubelet API (exec, logs,
		// port-forward) as kubeletClientUser; nodes ask the API server
		// whether it may.
		clusterRoleBinding("system:stead:kube-apiserver-kubelet-client", "system:kubelet-api-admin",
			[]rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: kubeletClientUser}}),
		clusterRoleBinding(steadNodeRole, steadNodeRole, groupSubject("system:nodes")),
		// An agent's join token may ask for a node client certificate,
		// which upstream's csrapproving controller then approves, as for
		// kubeadm's kubelets; a node may renew its own.
		clusterRoleBinding("system:stead:agent-bootstrapper", "system:node-bootstrapper", groupSubject(join.AgentGroup)),
		clusterRoleBinding("system:stead:agent-autoapprove", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", groupSubject(join.AgentGroup)),
		clusterRoleBinding("system:stead:node-autorenew", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", groupSubject("system:nodes")),
	}
	for _, b := range bindings {
		_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cluster role binding %s: %w", b.Name, err)
		}
	}
	return nil
}
