package statefulset

import (
	"context"
	"errors"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	consistencyutil "k8s.io/kubernetes/pkg/controller/util/consistency"
	"k8s.io/kubernetes/test/utils/ktesting"
)

// notReadyStore answers EnsureReady with err, whatever was written.
type notReadyStore struct {
	consistencyutil.ConsistencyStore
	err error
}

func (s notReadyStore) EnsureReady(types.NamespacedName) error { return s.err }

// A sync that finds its cache behind its own last write is retried as a
// failed one is, but only a real failure reaches the error handlers (the
// log at error level).
func TestStaleCacheIsRequeuedWithoutAnError(t *testing.T) {
	stale := &consistencyutil.ConsistencyError{ReadRV: "7", WroteRV: "9", GroupResource: schema.GroupResource{Resource: "pods"}}
	for _, tt := range []struct {
		name     string
		err      error
		reported bool
	}{
		{"cache behind the last write", stale, false},
		{"a real failure", errors.New("etcd unavailable"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ktesting.Init(t)
			ssc, _, _, _ := newFakeStatefulSetController(ctx)
			ssc.consistencyStore = notReadyStore{ssc.consistencyStore, tt.err}
			var reported []error
			handlers := utilruntime.ErrorHandlers
			utilruntime.ErrorHandlers = []utilruntime.ErrorHandler{func(_ context.Context, err error, _ string, _ ...interface{}) {
				reported = append(reported, err)
			}}
			t.Cleanup(func() { utilruntime.ErrorHandlers = handlers })

			ssc.queue.Add("default/web")
			ssc.processNextWorkItem(ctx)
			if got := slices.ContainsFunc(reported, func(err error) bool { return errors.Is(err, tt.err) }); got != tt.reported {
				t.Errorf("reported to the error handlers: %v (%v), want %v", got, reported, tt.reported)
			}
			if n := ssc.queue.NumRequeues("default/web"); n != 1 {
				t.Errorf("requeued %d times, want 1 (rate-limited)", n)
			}
		})
	}
}
