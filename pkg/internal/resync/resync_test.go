package resync

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func TestOnChangeSyncsAtStartOnChangesAndRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	var calls, fail atomic.Int32
	OnChange(ctx, factory.Core().V1().Nodes().Informer(), "test", func(context.Context) error {
		calls.Add(1)
		if fail.Load() > 0 {
			fail.Add(-1)
			return errors.New("not yet")
		}
		return nil
	})
	factory.Start(ctx.Done())
	waitFor := func(what string, n int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d syncs, want %d", what, calls.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first sync", 1)

	fail.Store(2) // the change's sync and its first retry fail
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("a change, two failures and the retry that succeeds", 4)
	time.Sleep(500 * time.Millisecond)
	if n := calls.Load(); n != 4 {
		t.Errorf("%d syncs once settled, want 4: retries go on only while failing", n)
	}
}
