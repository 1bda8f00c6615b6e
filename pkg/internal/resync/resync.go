// Package resync runs a sync of a whole state (a node's routes, one
// EndpointSlice) whenever an informer reports a change, for the loops that
// rebuild everything they own from a lister rather than object by object.
package resync

import (
	"context"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

const (
	firstRetry = 100 * time.Millisecond
	maxRetry   = 10 * time.Second
)

// OnChange calls sync once the informer has synced and again after each
// change it reports, bursts coalesced into one call; a failed sync is
// retried with back-off (100 ms doubling to 10 s) until one succeeds. It
// returns at once; the loop ends with ctx. Register it before the
// informer's factory starts.
func OnChange(ctx context.Context, informer cache.SharedIndexInformer, what string, sync func(context.Context) error) {
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	})
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			return
		}
		poke(nil)
		retry := time.NewTimer(time.Hour)
		retry.Stop()
		backoff := firstRetry
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-retry.C:
			}
			if err := sync(ctx); err != nil {
				klog.ErrorS(err, what, "retryIn", backoff)
				retry.Reset(backoff)
				backoff = min(2*backoff, maxRetry)
				continue
			}
			retry.Stop()
			backoff = firstRetry
		}
	}()
}
