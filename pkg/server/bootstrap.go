package server

import (
	"context"
	"fmt"
	"time"
	_ "unsafe" // go:linkname

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	schedulingapiv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// The API server's two bootstrap hooks, which make the default RBAC roles
// and the system priority classes, begin with wait.Poll(1s, …): they first
// sleep a second, and /readyz waits for them, so every start took a second
// longer than its work. stead disables them and runs the same work at
// once, then every bootstrapRetry until it succeeds, under hooks of its own
// that /readyz waits for in the same way.
var (
	upstreamBootstrapHooks = []string{rbacrest.PostStartHookName, schedulingrest.PostStartHookName}
	bootstrapHooks         = map[string]func(context.Context, kubernetes.Interface) (bool, error){
		"stead/rbac-bootstrap-roles":    ensureBootstrapRBAC,
		"stead/system-priority-classes": ensureSystemPriorityClasses,
	}
)

const (
	bootstrapRetry   = 100 * time.Millisecond
	bootstrapTimeout = 30 * time.Second // upstream's: past it, the API server stops
)

// addBootstrapHooks adds stead's bootstrap hooks to s.
func addBootstrapHooks(s *genericapiserver.GenericAPIServer) error {
	for name, ensure := range bootstrapHooks {
		err := s.AddPostStartHook(name, func(hookContext genericapiserver.PostStartHookContext) error {
			client, err := kubernetes.NewForConfig(hookContext.LoopbackClientConfig)
			if err != nil {
				return err
			}
			err = wait.PollUntilContextTimeout(hookContext, bootstrapRetry, bootstrapTimeout, true, func(ctx context.Context) (bool, error) {
				return ensure(ctx, client)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ensureRBACPolicy is upstream's reconciliation of the bootstrap roles,
// role bindings and their migrations, the body of the hook's poll. A test
// (TestBootstrapRBAC) calls it, so that a change of its signature in a new
// Kubernetes version fails there rather than at a start.
//
//go:linkname ensureRBACPolicy k8s.io/kubernetes/pkg/registry/rbac/rest.ensureRBACPolicy
func ensureRBACPolicy(p *rbacrest.PolicyData, client kubernetes.Interface) (done bool, err error)

// ensureBootstrapRBAC reconciles the same policy as upstream's hook.
func ensureBootstrapRBAC(_ context.Context, client kubernetes.Interface) (bool, error) {
	return ensureRBACPolicy(&rbacrest.PolicyData{
		ClusterRoles:               append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...),
		ClusterRoleBindings:        append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...),
		Roles:                      bootstrappolicy.NamespaceRoles(),
		RoleBindings:               bootstrappolicy.NamespaceRoleBindings(),
		ClusterRolesToAggregate:    bootstrappolicy.ClusterRolesToAggregate(),
		ClusterRoleBindingsToSplit: bootstrappolicy.ClusterRoleBindingsToSplit(),
	}, client)
}

// ensureSystemPriorityClasses creates system-cluster-critical and
// system-node-critical if they are missing, as upstream's hook does.
func ensureSystemPriorityClasses(ctx context.Context, client kubernetes.Interface) (bool, error) {
	for _, pc := range schedulingapiv1.SystemPriorityClasses() {
		_, err := client.SchedulingV1().PriorityClasses().Get(ctx, pc.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			klog.Warningf("unable to get PriorityClass %s: %v; retrying", pc.Name, err)
			return false, nil
		}
		_, err = client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{})
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			klog.Infof("created PriorityClass %s with value %d", pc.Name, pc.Value)
		case apierrors.IsServiceUnavailable(err):
			return false, nil // storage not ready yet
		default:
			return false, err
		}
	}
	return true, nil
}
