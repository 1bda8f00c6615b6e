package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// quickElection keeps the test short. The Lease keeps its duration in
// whole seconds and its renewal time to the second as other servers see
// it, so a lease under 2 s would lapse between renewals.
var quickElection = election{lease: 2 * time.Second, renewDeadline: 1500 * time.Millisecond, retry: 300 * time.Millisecond}

type server struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// journal records what the elected servers did, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func (j *journal) add(line string) {
	j.mu.Lock()
	j.lines = append(j.lines, line)
	j.mu.Unlock()
	select {
	case j.added <- struct{}{}:
	default:
	}
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return fmt.Sprint(j.lines)
}

func (j *journal) waitFor(t *testing.T, line string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		j.mu.Lock()
		for _, l := range j.lines {
			if l == line {
				j.mu.Unlock()
				return
			}
		}
		j.mu.Unlock()
		select {
		case <-j.added:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %q after 10s; journal %v", line, j)
		}
	}
}

// leaseClient is a fake clientset whose Leases have the API server's
// optimistic concurrency, which the fake's tracker lacks: an update of a
// Lease read before another's update fails with a conflict. A leader
// renews with the Lease it last wrote, and learns so that it lost it.
func leaseClient() *fake.Clientset {
	client := fake.NewClientset()
	var mu sync.Mutex
	versions := map[string]int{}
	client.PrependReactor("*", "leases", func(action clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		var lease *coordinationv1.Lease
		switch action.GetVerb() {
		case "create":
			lease = action.(clienttesting.CreateAction).GetObject().(*coordinationv1.Lease)
			if versions[lease.Name] != 0 {
				return false, nil, nil // the tracker says it exists
			}
		case "update":
			lease = action.(clienttesting.UpdateAction).GetObject().(*coordinationv1.Lease)
			if lease.ResourceVersion != strconv.Itoa(versions[lease.Name]) {
				return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), lease.Name, errors.New("the object has been modified"))
			}
		default:
			return false, nil, nil
		}
		versions[lease.Name]++
		lease.ResourceVersion = strconv.Itoa(versions[lease.Name])
		return false, nil, nil
	})
	return client
}

func TestOneServerRunsTheControllersAtATime(t *testing.T) {
	client := leaseClient()
	j := &journal{added: make(chan struct{}, 1)}
	start := func(name string) *server {
		ctx, cancel := context.WithCancel(context.Background())
		s := &server{name: name, cancel: cancel, done: make(chan error, 1)}
		go func() {
			s.done <- runElected(ctx, client, "test-controllers", quickElection, func(ctx context.Context) error {
				j.add(name + " started")
				<-ctx.Done()
				time.Sleep(100 * time.Millisecond) // a controller's last sync
				j.add(name + " stopped")
				return nil
			})
		}()
		return s
	}
	a := start("a")
	j.waitFor(t, "a started")
	b := start("b")
	// b waits as long as a holds the Lease: two lease durations here.
	time.Sleep(2 * quickElection.lease)
	if got := j.String(); got != "[a started]" {
		t.Fatalf("while a leads: journal %s, want only a started", got)
	}

	// a stops: it gives the Lease up once its controllers have stopped,
	// and b takes over.
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("a, stopped: %v", err)
	}
	j.waitFor(t, "b started")
	if got := j.String(); got != "[a started a stopped b started]" {
		t.Fatalf("journal %s, want a started, a stopped, b started", got)
	}

	// b loses its Lease to another holder: its controllers stop and it
	// says so, for the server to stop with it.
	leases := client.CoordinationV1().Leases(metav1.NamespaceSystem)
	lease, err := leases.Get(context.Background(), "test-controllers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec.HolderIdentity = ptr.To("another server")
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](60)
	lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := leases.Update(context.Background(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.done:
		if !errors.Is(err, errLostLease) {
			t.Fatalf("b, its Lease taken: %v, want errLostLease", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b still runs 10s after its Lease was taken")
	}
	j.waitFor(t, "b stopped")
	b.cancel()
}

func TestStoppedBeforeLeading(t *testing.T) {
	client := leaseClient()
	holder := &server{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	holder.cancel = cancel
	led := make(chan struct{})
	go func() {
		holder.done <- runElected(ctx, client, "test-controllers", quickElection, func(ctx context.Context) error {
			close(led)
			<-ctx.Done()
			return nil
		})
	}()
	<-led
	defer func() { holder.cancel(); <-holder.done }()

	waiting, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runElected(waiting, client, "test-controllers", quickElection, func(context.Context) error {
			t.Error("the second server ran while the first led")
			return nil
		})
	}()
	time.Sleep(2 * quickElection.retry)
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopped while waiting to lead: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a server waiting to lead did not stop with its context")
	}
}
