package agent

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/steadhq/stead/pkg/fsutil"
)

// Self-fencing is what makes failover safe. An agent that has not renewed
// its Lease for FenceAfter kills its pods, whether it lost the API server
// or died itself; the server, once the Lease has been expired for longer
// than that, knows the pods are gone and may delete them, so that their
// controllers recreate them elsewhere, never two of one identity at once.
// Upstream cannot know it, and leaves such pods Terminating until a person
// says the node is down (the out-of-service taint of KEP-2268).
const (
	// FenceAfter is how long after its last Lease renewal a node kills its
	// pods: before the Lease (leaseDuration) expires, with a margin for
	// the kill itself.
	FenceAfter = leaseDuration - 5*time.Second
	// FencingAnnotation on a Node says that its agent fences itself, and
	// after how many seconds without a renewal.
	FencingAnnotation = "stead.io/self-fencing-seconds"
)

// Heartbeat is the file where the agent writes the time of its last
// successful Lease renewal, for the fence keeper.
type Heartbeat string

// Beat records a renewal at t.
func (h Heartbeat) Beat(t time.Time) error {
	return fsutil.WriteFile(string(h), []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
}

// Last is the last renewal recorded, if any.
func (h Heartbeat) Last() (time.Time, bool) {
	data, err := os.ReadFile(string(h))
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	return t, err == nil
}

// RunFenceKeeper kills every container (with kill) whenever the heartbeat
// is older than FenceAfter, until ctx ends. It runs in a process of its
// own beside the agent, so that a node whose agent was killed fences
// itself too; an agent restarted in time beats again and nothing is
// killed. A node that never beat (no heartbeat file) is not armed.
func RunFenceKeeper(ctx context.Context, hb Heartbeat, kill func() (int, error)) {
	fenced := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		last, ok := hb.Last()
		stale := ok && time.Since(last) > FenceAfter
		if !stale {
			if fenced {
				klog.InfoS("lease renewed again: no longer fenced", "renewed", last)
			}
			fenced = false
			continue
		}
		n, err := kill()
		if err != nil {
			klog.ErrorS(err, "fence: kill containers")
		}
		if n > 0 || !fenced {
			klog.InfoS("fenced: the node's lease was not renewed in time; its containers are killed", "lastRenewal", last, "fenceAfter", FenceAfter, "killed", n)
		}
		fenced = true
	}
}

// fencingAnnotationValue is FencingAnnotation's value for this agent.
func fencingAnnotationValue() string { return strconv.Itoa(int(FenceAfter.Seconds())) }
