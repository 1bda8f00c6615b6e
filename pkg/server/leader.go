package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// steadControllersLease is the Lease in kube-system by which several
// servers elect the one that runs stead's controllers, as the upstream
// controller manager and scheduler elect theirs.
const steadControllersLease = "stead-controllers"

// election is a leader election's timing: the component-base defaults
// that the controller manager and scheduler use.
type election struct {
	lease, renewDeadline, retry time.Duration
}

var defaultElection = election{lease: 15 * time.Second, renewDeadline: 10 * time.Second, retry: 2 * time.Second}

// errLostLease ends a component that lost its election while it ran: like
// the upstream controller manager, which exits then, it must stop before
// another server's copy of it starts.
var errLostLease = errors.New("lost its leader election")

// runElected runs run while this process holds the Lease name, once it wins
// it. It returns when ctx ends, giving the Lease up once run has returned
// (so that another server takes over at once, and never alongside), or
// with errLostLease when the Lease was lost.
func runElected(ctx context.Context, client kubernetes.Interface, name string, e election, run func(context.Context) error) error {
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
	}
	// The elector gives the Lease up when its context ends, which must
	// not be before run has stopped: its context is ended by hand, when
	// ctx ends while not leading, or once run has returned.
	electing, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var mu sync.Mutex
	leading := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !leading {
			stopElecting()
		}
	})
	defer stop()
	type ended struct {
		err  error
		lost bool
	}
	ran := make(chan ended, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            name,
		LeaseDuration:   e.lease,
		RenewDeadline:   e.renewDeadline,
		RetryPeriod:     e.retry,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(led context.Context) {
				mu.Lock()
				leading = true
				mu.Unlock()
				work, cancel := context.WithCancel(led)
				stopWork := context.AfterFunc(ctx, cancel)
				err := run(work)
				// led ends only with the Lease: ctx is not its parent.
				lost := led.Err() != nil
				stopWork()
				cancel()
				ran <- ended{err, lost}
				stopElecting()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(electing)
	mu.Lock()
	led := leading
	mu.Unlock()
	if !led {
		return nil // ctx ended before this process ever led
	}
	end := <-ran
	if end.lost && ctx.Err() == nil {
		return fmt.Errorf("%w (lease %s/%s)", errLostLease, metav1.NamespaceSystem, name)
	}
	return end.err
}
