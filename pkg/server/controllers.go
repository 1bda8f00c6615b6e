package server

import (
	"context"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/steadhq/stead/pkg/failover"
	"github.com/steadhq/stead/pkg/join"
	"github.com/steadhq/stead/pkg/statefulset"
)

// statefulSetWorkers is the upstream controller manager's default
// --concurrent-statefulset-syncs.
const statefulSetWorkers = 5

// statefulSetResync is how often every StatefulSet is synced even when
// nothing about it changed. Upstream relies on events alone (its informers
// resync every 12 to 24 hours), so a sync that failed on a stale cache
// (the StaleControllerConsistency check) and was put back with an
// exponential back-off can leave a rollout idle for minutes once the events
// stop. A sync of a settled set is reads from the cache and no writes.
const statefulSetResync = 30 * time.Second

// runSteadControllers runs stead's own control-plane controllers, in place
// of the upstream ones disabledControllers turns off, under stead's
// controller identity; with --leader-elect, only while this server holds
// their Lease.
func (s *Server) runSteadControllers(ctx context.Context) error {
	client, err := kubernetes.NewForConfig(s.ControllerConfig())
	if err != nil {
		return err
	}
	if !s.cfg.LeaderElect {
		return runSteadControllers(ctx, client, s.cfg.StatefulSetController)
	}
	// Renewals on a client of their own, which the controllers' requests
	// cannot hold up behind its rate limit.
	electionClient, err := kubernetes.NewForConfig(rest.AddUserAgent(s.ControllerConfig(), "leader-election"))
	if err != nil {
		return err
	}
	return runElected(ctx, electionClient, steadControllersLease, defaultElection, func(ctx context.Context) error {
		return runSteadControllers(ctx, client, s.cfg.StatefulSetController)
	})
}

func runSteadControllers(ctx context.Context, client kubernetes.Interface, statefulSetController string) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithCustomResyncConfig(map[metav1.Object]time.Duration{&appsv1.StatefulSet{}: statefulSetResync}))
	// Everything stops before this returns: a server that loses its
	// election gives the Lease up only then.
	var running sync.WaitGroup
	defer running.Wait()
	defer factory.Shutdown()
	runDNSEndpoints(ctx, client, factory)
	approver := join.NewServingApprover(client, factory)
	running.Go(func() { approver.Run(ctx) })
	fail := failover.New(client, factory)
	running.Go(func() { fail.Run(ctx) })
	if statefulSetController == "none" {
		factory.Start(ctx.Done())
		// Returning early would count as the component failing.
		<-ctx.Done()
		return nil
	}
	sets := statefulset.NewStatefulSetController(ctx,
		factory.Core().V1().Pods(),
		factory.Apps().V1().StatefulSets(),
		factory.Core().V1().PersistentVolumeClaims(),
		factory.Apps().V1().ControllerRevisions(),
		client,
	)
	factory.Start(ctx.Done())
	sets.Run(ctx, statefulSetWorkers)
	return nil
}
