package agent

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFenceKeeperKillsOnlyWhenTheHeartbeatIsStale(t *testing.T) {
	hb := Heartbeat(filepath.Join(t.TempDir(), "lease-renewed"))
	var kills atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		RunFenceKeeper(ctx, hb, func() (int, error) { kills.Add(1); return 1, nil })
		close(done)
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(1500 * time.Millisecond)
	if n := kills.Load(); n != 0 {
		t.Fatalf("killed %d times with no heartbeat yet (not armed)", n)
	}
	if err := hb.Beat(time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := kills.Load(); n != 0 {
		t.Fatalf("killed %d times with a fresh heartbeat", n)
	}
	if err := hb.Beat(time.Now().Add(-FenceAfter - time.Second)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for kills.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if kills.Load() == 0 {
		t.Fatal("a stale heartbeat did not fence")
	}
}

func TestNodeFencedAfterItsLeaseLapses(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	n := &Node{cfg: Config{Heartbeat: "x"}, now: func() time.Time { return now }}
	if n.Fenced() {
		t.Fatal("fenced before any renewal")
	}
	n.lastRenewal.Store(now.UnixNano())
	now = now.Add(FenceAfter - time.Second)
	if n.Fenced() {
		t.Fatal("fenced within FenceAfter of a renewal")
	}
	now = now.Add(2 * time.Second)
	if !n.Fenced() {
		t.Fatal("not fenced past FenceAfter")
	}
	n.cfg.Heartbeat = ""
	if n.Fenced() {
		t.Fatal("a node without fencing fenced")
	}
}

// A fenced node starts nothing; once unfenced, a pod synced while fenced
// runs again only if the API server itself still has it on this node.
func TestPodManagerHoldsContainersWhileFenced(t *testing.T) {
	for _, tc := range []struct {
		name             string
		deletedMeanwhile bool
		wantStarts       int
	}{
		{"the pod is still this node's: restarted", false, 2},
		{"the server deleted the pod meanwhile: never restarted", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPodHarness(t, podWith("web-0", nil, "main"))
			h.sync("web-0")
			fenced := true
			h.m.FenceWith(func() bool { return fenced })
			h.rt.exit(t, "main", 137) // the fence keeper's kill

			ctx := context.Background()
			for range 3 {
				if _, err := h.m.sync(ctx, "default/web-0"); err != nil {
					t.Fatal(err)
				}
				h.clock.Step(time.Minute) // past any back-off
			}
			if n := countOf(h.rt.calls(), "start main"); n != 1 {
				t.Fatalf("%d starts while fenced, want the first only: %v", n, h.rt.calls())
			}
			if tc.deletedMeanwhile {
				// Deleted by the server; the informer has not seen it yet.
				if err := h.client.CoreV1().Pods("default").Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			fenced = false
			for range 2 {
				if _, err := h.m.sync(ctx, "default/web-0"); err != nil {
					t.Fatal(err)
				}
			}
			if n := countOf(h.rt.calls(), "start main"); n != tc.wantStarts {
				t.Errorf("%d starts in all, want %d: %v", n, tc.wantStarts, h.rt.calls())
			}
		})
	}
}
