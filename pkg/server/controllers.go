package server

import (
	"context"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/steadhq/stead/pkg/statefulset"
)

// statefulSetWorkers is the upstream controller manager's default
// --concurrent-statefulset-syncs.
const statefulSetWorkers = 5

// runSteadControllers runs stead's own control-plane controllers, in place
// of the upstream ones disabledControllers turns off, under stead's
// controller identity.
func (s *Server) runSteadControllers(ctx context.Context) error {
	if s.cfg.StatefulSetController == "none" {
		// Returning early would count as the component failing.
		<-ctx.Done()
		return nil
	}
	client, err := kubernetes.NewForConfig(s.ControllerConfig())
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
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
